"""What a DPO-loss candidate may use: the allow-lists of the loss policy.

`targets.dpo.loss_policy.check_loss_policy(code)` is the static policy for losses, which walks with them.
Every list is explicit and was written from torch's documentation of pure operations: each entry takes
tensors or numbers and returns tensors, numbers, dtypes or tuples of tensors, never a module, a function,
a storage or a file, and none touches the autograd graph, hooks, the RNG or a process-wide switch.
Random operations are left out too (a loss must be deterministic, and drawing moves the global RNG).
`tests/test_attacks_policy.py` checks these properties against the installed torch.

`LOSS_ALLOWED_IMPORTS` is what the generic deny-list backstop lets a loss import: `typing` because the
DiscoPOP paper's appendix code annotates with `torch.FloatTensor` and imports from typing.
"""

from __future__ import annotations

LOSS_ALLOWED_IMPORTS: frozenset[str] = frozenset({"torch", "math", "typing"})


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


_ELEMENTWISE = """
    abs absolute neg negative sign sgn signbit exp exp2 expm1 log log2 log10 log1p sqrt rsqrt square pow
    float_power reciprocal sigmoid logit tanh sinh cosh asinh acosh atanh arcsinh sin cos tan asin acos atan
    atan2 arctan erf erfc erfinv lgamma digamma xlogy logaddexp logaddexp2 hypot sinc relu selu celu floor
    ceil round trunc frac fmod remainder clamp clip clamp_min clamp_max nan_to_num heaviside lerp addcmul
    addcdiv add sub subtract mul multiply div divide true_divide rsub maximum minimum fmax fmin where
    eq ne lt le gt ge greater greater_equal less less_equal isnan isinf isfinite isclose
    logical_and logical_or logical_not logical_xor masked_fill
"""
_REDUCTIONS = """
    sum nansum mean nanmean std var std_mean var_mean prod max min amax amin aminmax argmax argmin median
    nanmedian quantile nanquantile logsumexp cumsum cumprod cummax cummin logcumsumexp count_nonzero all any
    softmax log_softmax sort argsort topk kthvalue msort
"""
_SHAPES = """
    stack cat concat concatenate hstack vstack reshape flatten squeeze unsqueeze transpose t permute flip roll
    narrow gather index_select take_along_dim broadcast_to diff tril triu diag outer matmul mm mv dot einsum
    chunk split unbind detach clone numel is_floating_point
"""
_CREATION = "tensor as_tensor zeros ones full zeros_like ones_like full_like arange linspace eye finfo iinfo"

TORCH_FUNCTIONS: frozenset[str] = _words(_ELEMENTWISE + _REDUCTIONS + _SHAPES + _CREATION)
"""`torch.<name>(...)`: pure elementwise, reduction, shape and creation operations (`finfo`/`iinfo`
describe a dtype: `torch.finfo(x.dtype).eps`)."""

TORCH_VALUES: frozenset[str] = _words(
    "float float32 float64 double float16 half bfloat16 int int32 int64 long bool uint8 pi e inf nan"
)
"""`torch.<name>` read as a value: dtypes and constants."""

F_FUNCTIONS: frozenset[str] = _words("""
    logsigmoid softplus relu relu6 leaky_relu elu selu celu gelu silu mish softsign tanhshrink hardtanh
    hardsigmoid hardswish hardshrink softshrink threshold sigmoid tanh softmax log_softmax softmin normalize
    cosine_similarity mse_loss l1_loss smooth_l1_loss huber_loss binary_cross_entropy
    binary_cross_entropy_with_logits margin_ranking_loss soft_margin_loss kl_div
    """)
"""`F.<name>(...)` (torch.nn.functional): activations and losses of tensors; no dropout (random)."""

F_POSITIONAL_LIMIT: dict[str, int] = {
    "relu": 1, "relu6": 1, "selu": 1, "silu": 1, "mish": 1, "hardsigmoid": 1, "hardswish": 1,
    "leaky_relu": 2, "elu": 2, "celu": 2, "hardtanh": 3, "threshold": 3, "normalize": 4,
}  # fmt: skip
"""How many positional arguments these F functions may get: the next one is `inplace` (or `out`)."""

MATH_NAMES: frozenset[str] = _words("""
    pi e tau inf nan exp expm1 log log1p log2 log10 sqrt pow tanh sinh cosh atanh asinh acosh sin cos tan
    atan atan2 asin acos erf erfc lgamma gamma fabs floor ceil trunc copysign isfinite isinf isnan isclose
    hypot fsum prod fmod
    """)
"""`math.<name>`: every entry is a number or a function of numbers."""

TENSOR_METHODS: frozenset[str] = _words("""
    abs neg sign sgn exp exp2 expm1 log log2 log10 log1p sqrt rsqrt square pow reciprocal sigmoid logit tanh
    sinh cosh asinh atanh sin cos tan atan erf erfc lgamma digamma xlogy logaddexp relu floor ceil round
    trunc frac fmod remainder clamp clip clamp_min clamp_max nan_to_num lerp add sub mul div true_divide
    maximum minimum fmax fmin where masked_fill eq ne lt le gt ge isnan isinf isfinite logical_and
    logical_or logical_not logical_xor
    sum nansum mean nanmean std var prod max min amax amin aminmax argmax argmin median quantile nanquantile
    logsumexp cumsum cumprod cummax cummin logcumsumexp count_nonzero all any softmax log_softmax sort
    argsort topk kthvalue norm
    reshape reshape_as view view_as flatten squeeze unsqueeze transpose t permute flip roll narrow gather
    index_select expand expand_as broadcast_to diff tril triu diag outer matmul mm mv dot chunk split unbind
    contiguous clone detach
    float double half bfloat16 long int bool to type_as item tolist size dim numel nelement
    is_floating_point new_zeros new_ones new_full new_tensor
    """)
"""`<tensor>.<name>(...)`: out-of-place tensor methods (never one ending in `_`, which works in place)."""

TENSOR_ATTRIBUTES: frozenset[str] = _words(
    "shape dtype device ndim T mT values indices eps tiny smallest_normal resolution bits "
)
"""Plain attribute reads on a value: a tensor's shape and type, the `values`/`indices` of `sort`, `max`,
`topk`..., and the fields of `torch.finfo`/`torch.iinfo`."""

BUILTINS: frozenset[str] = _words("""
    abs min max sum len range float int bool round pow divmod enumerate zip list tuple dict reversed
    sorted any all str ValueError RuntimeError ArithmeticError
    """)
"""Builtins a loss may name (the exceptions so that it can `raise ValueError(...)`)."""

FORBIDDEN_WORDS: frozenset[str] = _words("""
    exec eval getattr setattr delattr hasattr vars globals locals dir open compile type object super
    breakpoint input help exit quit memoryview classmethod staticmethod property
    """)
"""Never allowed, as a name, an attribute (`x.eval`) or `self.<name>`: reflection, dynamic code, I/O."""

TYPING_NAMES: frozenset[str] = _words(
    "Any Callable Dict Final Iterable List Literal Mapping Optional Sequence Tuple Union "
)
"""What `from typing import ...` may import; usable in annotations only."""

ANNOTATION_TENSOR_TYPES: frozenset[str] = _words(
    "Tensor FloatTensor DoubleTensor HalfTensor BFloat16Tensor LongTensor BoolTensor "
)
"""`torch.<name>` in annotations only (the paper's code annotates with `torch.FloatTensor`)."""

ANNOTATION_BUILTINS: frozenset[str] = _words("float int bool str list tuple dict None")
