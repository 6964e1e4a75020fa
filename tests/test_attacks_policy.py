"""The loss policy is an allow-list (issue 15.5): attacks on it, one row each, and proof that they were real.

Every row is a complete loss that would otherwise look plausible; the policy must refuse it with a message
that names the offending construct and its line. Some of them passed the deny-list that came before; those
are replayed without any policy in a subprocess to show they reach what they aim at (a file, pickle,
a module attribute, the model's weights), so that it is the policy, not luck, that stops them.
"""

from __future__ import annotations

import ast
import inspect
import json
import math
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from discopop_appendix import APPENDIX_LOSSES
from escapes.table import LOSS_TRICKS, loss_trick_code

import targets.dpo.loss_policy as loss_policy
from sandbox.policy import FORBIDDEN_ATTRIBUTES, check_policy
from targets.dpo import policy as lists
from targets.dpo.candidate import LossContext, load_candidate
from targets.dpo.genome import SEEDS, render
from targets.dpo.loss_policy import check_loss_policy
from targets.dpo.policy import LOSS_ALLOWED_IMPORTS
from targets.dpo.target import INTERFACE
from targets.dpo.zoo import list_zoo

ROOT = Path(__file__).resolve().parents[1]
SIG = (
    "def attack(self, policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, "
    "reference_rejected_logps):"
)
RHO = (
    "    rho = (policy_chosen_logps - policy_rejected_logps) - "
    "(reference_chosen_logps - reference_rejected_logps)"
)
RETURN = "    return -F.logsigmoid(self.beta * rho)"


def loss(*body: str, head: tuple[str, ...] = ()) -> str:
    """A complete loss: `head` lines, the signature, ρ, `body` (from line len(head) + 3), DPO's return."""
    lines = [*head, SIG, RHO, *(f"    {line}" for line in body), RETURN]
    return "\n".join(lines) + "\n"


DECORATED = "@torch.no_grad()\n" + loss("pass")
ANNOTATED = (
    "import typing\n"
    "def attack(self: typing.stdlib_re.enum.bltns.exec('x = 1'), policy_chosen_logps, "
    "policy_rejected_logps, reference_chosen_logps, reference_rejected_logps):\n" + RHO + "\n" + RETURN + "\n"
)
CLASS_DEL = (
    "class Sneaky:\n    def __del__(self):\n        pass\n\n" + loss("x = Sneaky()")
)  # fmt: skip

# (id, code, a phrase one violation's message must contain, that violation's line)
ATTACKS: list[tuple[str, str, str, int]] = [
    # Routes to builtins through typing's re-exports (typing.stdlib_re.enum.bltns is `builtins`).
    ("typing-bltns-exec", loss("typing.stdlib_re.enum.bltns.exec('x = 1')", head=("import typing",)),
     "`typing.stdlib_re` may only be used in annotations", 4),
    ("typing-sys", loss("typing.sys.modules['os'].system('id')", head=("import typing",)),
     "`typing.sys` may only be used in annotations", 4),
    ("typing-re", loss("t = typing.re", head=("import typing",)), "`typing.re`", 4),
    ("typing-collections", loss("c = typing.collections.abc", head=("import typing",)),
     "`typing.collections`", 4),
    ("typing-in-annotation", ANNOTATED, "annotation `typing.stdlib_re", 2),
    ("string-annotation", loss("x: 'typing.sys.modules' = 1", head=("import typing",)), "annotation", 4),
    # torch functions that return collections of torch functions (torch.load, torch.from_file among them).
    ("overrides-ignored", loss("fs = torch.overrides.get_ignored_functions()"),
     "`torch.overrides` is not an allowed operation", 3),
    ("overrides-testing", loss("fs = torch.overrides.get_testing_overrides()"), "`torch.overrides`", 3),
    ("overrides-module-walk", loss("m = torch.overrides.get_overridable_functions()"),
     "`torch.overrides`", 3),
    # Files and pickle.
    ("torch-load-pickle", loss("obj = torch.load('/tmp/x.pt', weights_only=False)"),
     "`torch.load` is not an allowed operation; it reads or writes files", 3),
    ("torch-from-file", loss("t = torch.from_file('/etc/passwd', size=8)"), "`torch.from_file`", 3),
    ("F-np-fromfile", loss("a = F.np.fromfile('/etc/passwd')"), "`F.np` is not an allowed operation", 3),
    ("F-importlib", loss("m = F.importlib.import_module('os')"), "`F.importlib`", 3),
    ("F-dataclasses", loss("m = F.dataclasses"), "`F.dataclasses`", 3),
    ("F-long-form-torch", loss("m = torch.nn.functional.torch.os"), "`F.torch`", 3),
    ("tunable-multiprocessing", loss("p = torch.cuda.tunable.mp"), "`torch.cuda`", 3),
    ("profiler-json-codecs", loss("c = torch.autograd.profiler_util.json.codecs"), "`torch.autograd`", 3),
    ("numpy-tofile", loss("rho.detach().numpy().tofile('/tmp/x')"), "`.numpy` reaches", 3),
    ("storage", loss("s = rho.untyped_storage()"), "`.untyped_storage`", 3),
    # Attribute reads hidden in strings and frames.
    ("format-dunder", loss("s = '{0.__class__}'.format(rho)"), "`.format` is not an allowed", 3),
    ("format-frame", loss("g = (x for x in [rho])", "s = '{0.gi_frame.f_back}'.format(g)"), "`.format`", 4),
    ("format-map", loss("s = str.format_map('{x.gi_frame}', {})"), "`.format_map`", 3),
    ("generator-frame", loss("g = (x for x in [rho])", "f = g.gi_frame.f_back.f_globals"), "`.gi_frame`", 4),
    ("exception-traceback", loss("try:", "    1 / 0", "except Exception as e:", "    t = e.__traceback__"),
     "`try` is not allowed", 3),
    ("type-mro", loss("m = type(rho).__mro__"), "`type` is not allowed", 3),
    ("subclasses", loss("s = ().__class__.__base__.__subclasses__()"), "dunder attribute `.__class__`", 3),
    ("getattr-string", loss("f = getattr(torch, 'lo' + 'ad')"), "`getattr` is not allowed", 3),
    ("globals-builtins", loss("b = globals()['__builtins__']"), "`globals` is not allowed", 3),
    ("eval-attribute", loss("e = rho.eval"), "`.eval` is not allowed", 3),
    # Stores: modules, self, tensors.
    ("store-torch", loss("torch.log_softmax = torch.sigmoid"),
     "assigning to or deleting an attribute (`torch.log_softmax`)", 3),
    ("store-F", loss("F.logsigmoid = F.relu"), "(`F.logsigmoid`)", 3),
    ("store-math", loss("math.pi = 3.0"), "(`math.pi`)", 3),
    ("augmented-store", loss("torch.e += 1"), "(`torch.e`)", 3),
    ("delete-attribute", loss("del torch.exp"), "(`torch.exp`)", 3),
    ("store-self", loss("self.beta = 0.0"), "(`self.beta`)", 3),
    ("item-store", loss("rho[0] = 0.0"), "item assignment (`rho[0] = ...`)", 3),
    # The autograd graph: from the inputs to the model's parameters.
    ("grad-fn-walk", loss("fn = policy_chosen_logps.grad_fn"), "`.grad_fn` reaches autograd internals", 3),
    ("next-functions", loss("fn = rho", "n = fn.next_functions"), "`.next_functions` reaches", 4),
    ("register-hook", loss("policy_chosen_logps.register_hook(lambda g: g * 0)"), "`.register_hook`", 3),
    ("data-copy", loss("policy_chosen_logps.data.copy_(rho)"), "`.data` reaches autograd internals", 3),
    # In-place changes to the inputs.
    ("inplace-method", loss("policy_chosen_logps.mul_(2)"), "`.mul_()` changes a tensor in place", 3),
    ("inplace-augassign", loss("policy_chosen_logps += 1"), "changes the input tensor in place", 3),
    ("out-keyword", loss("torch.exp(rho, out=policy_chosen_logps)"), "`out=` writes into", 3),
    ("inplace-keyword", loss("F.relu(policy_chosen_logps, inplace=True)"), "`inplace=` writes into", 3),
    ("inplace-positional", loss("F.relu(policy_chosen_logps, True)"), "at most 1 positional", 3),
    ("inplace-splat", loss("F.relu(*[policy_chosen_logps, True])"), "`*args` in a call", 3),
    ("apply-callable", loss("rho.apply_(abs)"), "`.apply_()` changes a tensor in place", 3),
    # Process-wide switches and the RNG.
    ("set-grad-enabled", loss("torch.set_grad_enabled(False)"), "changes process-wide state", 3),
    ("manual-seed", loss("torch.manual_seed(0)"), "`torch.manual_seed` is not an allowed operation", 3),
    ("default-dtype", loss("torch.set_default_dtype(torch.float64)"), "`torch.set_default_dtype`", 3),
    ("deterministic-switch", loss("torch.use_deterministic_algorithms(True)"), "process-wide state", 3),
    ("random-draw", loss("rho = rho + torch.randn_like(rho)"), "a loss must be deterministic", 3),
    ("generator", loss("g = torch.Generator()"), "`torch.Generator` is not an allowed operation", 3),
    ("no-grad-block", loss("with torch.no_grad():", "    rho = rho * 2"), "`with` is not allowed", 3),
    # Code that runs behind the policy's back: classes, decorators, lambdas, generators.
    ("class-del", CLASS_DEL, "class definitions are not allowed", 1),
    ("class-eq", loss("class Eq:", "    def __eq__(self, other):", "        return True"),
     "class definitions are not allowed", 3),
    ("decorator", DECORATED, "decorators are not allowed (`@torch.no_grad()`)", 1),
    ("lambda-default-module", loss("f = lambda t=torch: t.overrides"), "`torch` may only be used as", 3),
    ("lambda-globals", loss("g = (lambda: 0).__globals__"), "dunder attribute `.__globals__`", 3),
    ("yield", loss("yield rho"), "`yield` is not allowed", 3),
    ("self-call", loss("self.scale(rho)"), "a loss may read self's values, not call", 3),
    ("self-state", loss("self.running.update(rho)"), "`.update` is not an allowed tensor method", 3),
    # Imports and names.
    ("import-alias", loss("t.load('x.pt')", head=("import torch as t",)), "importing `torch` as `t`", 1),
    ("import-inside", loss("import os"), "importing `os` is not allowed", 3),
    ("star-import", loss("pass", head=("from torch import *",)), "`from torch import *` is not allowed", 1),
    ("from-import-alias", loss("xx('x.pt')", head=("from torch import load as xx",)),
     "`from torch import load as xx` is not allowed", 1),
    ("import-torch-nn", loss("pass", head=("import torch.nn as nn",)), "importing `torch.nn` as `nn`", 1),
    ("walrus-module", loss("f = (t := torch).load"), "`torch` may only be used as", 3),
    ("walrus-rebind", loss("(F := torch)"), "rebinding `F` is not allowed", 3),
    ("rebind-self", loss("self = rho"), "rebinding `self`", 3),
    ("match-class", loss("match rho:", "    case torch.Tensor(grad_fn=g):", "        pass"),
     "`match` is not allowed", 3),
    ("global", loss("global counter"), "`global counter` is not allowed", 3),
    ("tensor-type-value", loss("ok = isinstance(rho, torch.Tensor)"),
     "`isinstance` is not an allowed builtin", 3),
    ("undefined-name", loss("a = np.load('x')"), "`.load` is not an allowed tensor method", 3),
    ("other-builtin", loss("it = iter([rho])"), "`iter` is not an allowed builtin", 3),
    ("builtins-name", loss("b = __builtins__"), "dunder name `__builtins__`", 3),
    ("tensor-type-method", loss("r = rho.type('torch.DoubleTensor')"), "`.type` is not allowed", 3),
]  # fmt: skip


@pytest.mark.parametrize(("code", "phrase", "line"), [r[1:] for r in ATTACKS], ids=[r[0] for r in ATTACKS])
def test_the_loss_policy_refuses_the_attack(code: str, phrase: str, line: int) -> None:
    violations = check_loss_policy(code)
    assert violations, "the policy let the attack through"
    assert all(v.message.startswith(f"line {v.line}: ") for v in violations)
    hits = [v for v in violations if phrase in v.message]
    assert hits, [v.message for v in violations]
    assert hits[0].line == line, hits[0].message


# Holes of the deny-list the policy used to be (sandbox.policy at c267980): each was clean under it.
ADDED_IN_ISSUE_15 = frozenset(
    {
        "gi_yieldfrom", "cr_await", "ag_await", "f_trace", "exec", "getattr", "setattr", "delattr",
        "globals", "locals", "vars", "breakpoint", "bltns", "stdlib_re", "overrides", "tunable",
        "profiler_util", "codecs", "copyreg", "grad_fn", "next_functions",
    }
)  # fmt: skip
NEW_GENERIC_RULES = {"module-store", "format-string"}
OLD_HOLES = [
    "typing-bltns-exec", "typing-re", "typing-collections", "typing-in-annotation", "overrides-ignored",
    "overrides-testing", "F-dataclasses", "tunable-multiprocessing", "profiler-json-codecs", "format-frame",
    "store-torch", "store-F", "store-math", "store-self", "grad-fn-walk", "next-functions", "register-hook",
    "data-copy", "inplace-method", "out-keyword", "set-grad-enabled", "manual-seed", "default-dtype",
    "random-draw", "no-grad-block", "decorator", "self-call", "self-state", "lambda-default-module",
]  # fmt: skip
_BY_ID = {r[0]: r[1] for r in ATTACKS}


def _old_deny_list(code: str) -> list[str]:
    old = FORBIDDEN_ATTRIBUTES - ADDED_IN_ISSUE_15
    found = check_policy(code, LOSS_ALLOWED_IMPORTS, forbidden_attributes=old)
    return [v.message for v in found if v.rule not in NEW_GENERIC_RULES]


@pytest.mark.parametrize("name", OLD_HOLES)
def test_an_old_hole_of_the_deny_list_is_closed_for_losses(name: str) -> None:
    assert ADDED_IN_ISSUE_15 <= FORBIDDEN_ATTRIBUTES
    assert _old_deny_list(_BY_ID[name]) == [], "not a hole of the old deny-list: move it out of OLD_HOLES"
    assert check_loss_policy(_BY_ID[name])


@pytest.mark.parametrize("name", sorted(LOSS_TRICKS))
def test_every_sandbox_loss_trick_is_refused(name: str) -> None:
    assert check_loss_policy(loss_trick_code(name))


# The attacks were real: the same code, exec'd with no policy, reaches what it aims at --------------------
PROOF_SCRIPT = r"""
import json, sys, torch
from targets.dpo.candidate import LossContext, load_candidate
codes, out = json.loads(sys.stdin.read()), {}
def inputs(params):
    x = torch.ones(4, 3)
    pc = (x @ params).sum(-1)
    return pc, pc * 0.5, torch.zeros(4), torch.zeros(4)
for name, code in codes.items():
    layer = torch.nn.Linear(3, 1, bias=False)
    torch.nn.init.constant_(layer.weight, 0.5)
    before = torch.log_softmax
    try:
        loss = load_candidate(code)
        loss(LossContext(beta=0.1), *inputs(layer.weight.T))
        result = "returned"
    except Exception as exc:
        result = str(getattr(exc, "message", exc))
    out[name] = {"result": result, "log_softmax_replaced": torch.log_softmax is not before,
                 "weights_zeroed": bool((layer.weight == 0).all())}
    torch.log_softmax = before
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def secrets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bait")
    secret = root / "secret.txt"
    secret.write_text("BAIT-7f3a-not-a-real-key")
    pickle_file = root / "payload.pt"
    # A pickle whose loading calls print: any callable would run the same way (arbitrary code).
    script = (
        "import torch, sys\n"
        "class P:\n    def __reduce__(self):\n        return (print, ('PICKLE-RAN',))\n"
        f"torch.save(P(), {str(pickle_file)!r})\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, cwd=ROOT)
    return {"secret": secret, "pickle": pickle_file}


def proofs(paths: dict[str, Path]) -> dict[str, str]:
    secret, pickle_file = str(paths["secret"]), str(paths["pickle"])
    return {
        "typing-bltns-exec": loss(
            f'typing.stdlib_re.enum.bltns.exec("raise RuntimeError(open({secret!r}).read())")',
            head=("import typing",),
        ),
        "overrides-from-file": loss(
            "ff = [f for f in torch.overrides.get_ignored_functions() if 'from_file' in str(f)][0]",
            f"data = ff({secret!r}, size=24, dtype=torch.uint8)",
            "raise RuntimeError(bytes(data.tolist()).decode())",
        ),
        "overrides-torch-load-pickle": loss(
            "loads = [f for f in torch.overrides.get_ignored_functions() if 'function load ' in str(f)]",
            "for f in loads:",
            "    try:",
            f"        f({pickle_file!r}, weights_only=False)",
            "    except TypeError:",
            "        pass",
        ),
        "store-torch": loss("torch.log_softmax = torch.sigmoid"),
        "grad-fn-walk": loss(
            "stack = [policy_chosen_logps.grad_fn]",
            "while stack:",
            "    fn = stack.pop()",
            "    if 'AccumulateGrad' in str(fn):",
            "        fn.variable.data.zero_()",
            "    stack.extend(n for n, _ in fn.next_functions if n is not None)",
        ),
    }


def test_the_attacks_were_real_without_the_policy(secrets: dict[str, Path]) -> None:
    codes = proofs(secrets)
    for name, code in codes.items():  # the deny-list let each through; the allow-list does not
        assert _old_deny_list(code) == [], name
        assert check_loss_policy(code), name
    run = subprocess.run(
        [sys.executable, "-c", PROOF_SCRIPT],
        input=json.dumps(codes),
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
        check=True,
    )
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["typing-bltns-exec"]["result"].endswith("BAIT-7f3a-not-a-real-key"), out
    assert out["overrides-from-file"]["result"].endswith("BAIT-7f3a-not-a-real-key"), out
    assert "PICKLE-RAN" in run.stdout  # torch.load(weights_only=False) ran code from the file
    assert out["store-torch"]["log_softmax_replaced"], out
    assert out["grad-fn-walk"]["weights_zeroed"], out


# What must still pass, unchanged --------------------------------------------------------------------------
def _readme_losses() -> list[str]:
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(encoding="utf-8"), re.S)
    docs = sorted((ROOT / "docs").glob("*.md"))
    for doc in docs:
        blocks += re.findall(r"```python\n(.*?)```", doc.read_text(encoding="utf-8"), re.S)
    return [b for b in blocks if "policy_chosen_logps" in b and "def " in b]


CLEAN = (
    [(f"zoo-{z.name}", z.code) for z in list_zoo()]
    + [(f"appendix-{name}", code) for name, code in APPENDIX_LOSSES.items()]
    + [(f"genome-{name}", render(genome)) for name, genome in SEEDS.items()]
    + [(f"readme-{i}", code) for i, code in enumerate(_readme_losses())]
    + [("interface", textwrap.dedent(INTERFACE.split("\n", 2)[2].split("\n\n`self.beta`")[0]))]
)


@pytest.mark.parametrize("code", [c for _, c in CLEAN], ids=[n for n, _ in CLEAN])
def test_published_and_documented_losses_pass_unchanged(code: str) -> None:
    assert check_loss_policy(code) == []


@pytest.mark.parametrize("name", list(APPENDIX_LOSSES))
def test_appendix_losses_load_and_give_one_loss_per_pair(name: str) -> None:
    fn = load_candidate(APPENDIX_LOSSES[name])
    pc = torch.tensor([-3.0, -2.0, -4.0])
    out = fn(LossContext(beta=0.1), pc, pc - 1, pc + 0.5, pc - 0.5)
    assert out.shape == (3,)


def test_a_plausible_loss_with_the_usual_tools_passes() -> None:
    """The features a model reaches for: helpers, lambdas, loops, comprehensions, stats, where, finfo."""
    code = loss(
        "def soft_hinge(x, k=2.0):",
        "    return F.softplus(k * (1 - x)) / k",
        "square = lambda t: t * t",
        "eps = torch.finfo(rho.dtype).eps",
        "z = self.beta * rho.float()",
        "parts = [soft_hinge(z), square(z).clamp(max=10.0)]",
        "total = sum(p.mean() for p in parts)",
        "for i in range(2):",
        "    z = z * 0.5 if i else z",
        "top = z.sort(descending=True).values[: max(1, len(z) // 2)]",
        "mask = torch.where(z < 0, torch.ones_like(z), torch.zeros_like(z))",
        "acc = torch.zeros_like(z)",
        "acc += mask * math.log(2.0) + eps",
        "if z.shape[0] == 0:",
        "    raise ValueError(f'empty batch: {z.shape}')",
        "rho = rho + 0 * (total + top.sum() + acc.sum()).detach()",
    )
    assert check_loss_policy(code) == []


# The allow-lists, against the installed torch ---------------------------------------------------------------
def test_every_allowed_torch_f_and_math_name_is_a_pure_function_or_a_value() -> None:
    for module, names in ((torch, lists.TORCH_FUNCTIONS), (F, lists.F_FUNCTIONS), (math, lists.MATH_NAMES)):
        for name in names:
            value = getattr(module, name)
            assert not inspect.ismodule(value), f"{module.__name__}.{name} is a module"
            assert not name.endswith("_"), f"{module.__name__}.{name} works in place"
            assert callable(value) or isinstance(value, (int, float)), f"{module.__name__}.{name}"
    for name in lists.TORCH_VALUES:
        assert isinstance(getattr(torch, name), (torch.dtype, float)), name
    for name in lists.TENSOR_METHODS:
        assert callable(getattr(torch.Tensor, name)) and not name.endswith("_"), name
    for name in lists.ANNOTATION_TENSOR_TYPES:
        assert isinstance(getattr(torch, name), type), name


def test_no_allowed_name_is_a_known_escape_or_state_switch() -> None:
    allowed = (
        lists.TORCH_FUNCTIONS | lists.TORCH_VALUES | lists.F_FUNCTIONS | lists.MATH_NAMES
        | lists.TENSOR_METHODS | lists.TENSOR_ATTRIBUTES | lists.BUILTINS
    )  # fmt: skip
    assert not allowed & (FORBIDDEN_ATTRIBUTES | lists.FORBIDDEN_WORDS | loss_policy._AUTOGRAD)
    torch_calls = lists.TORCH_FUNCTIONS | lists.F_FUNCTIONS
    assert not {n for n in torch_calls if loss_policy._RANDOM.match(n) or loss_policy._STATEFUL.match(n)}
    assert not {n for n in torch_calls if "dropout" in n or n.startswith(("rand", "empty"))}


def test_f_positional_limits_stop_before_inplace_and_out() -> None:
    expected = {}
    for name in lists.F_FUNCTIONS:
        try:
            params = list(inspect.signature(getattr(F, name)).parameters.values())
        except (TypeError, ValueError):  # a C function: out/inplace are keyword-only there
            continue
        for i, p in enumerate(params):
            if p.name in ("inplace", "out") and p.kind != p.KEYWORD_ONLY:
                expected[name] = i
                break
    assert expected == lists.F_POSITIONAL_LIMIT


def test_the_interface_and_the_policy_agree_on_what_is_provided() -> None:
    from targets.dpo.candidate import candidate_globals

    provided = {k for k in candidate_globals() if not k.startswith("__")}
    walker = loss_policy._LossWalker(ast.parse("pass\n"))
    assert provided == set(walker.aliases)


def test_allow_list_sizes(capsys: pytest.CaptureFixture[str]) -> None:
    sizes = {
        name: len(getattr(lists, name))
        for name in ("TORCH_FUNCTIONS", "TORCH_VALUES", "F_FUNCTIONS", "MATH_NAMES", "TENSOR_METHODS",
                     "TENSOR_ATTRIBUTES", "BUILTINS", "TYPING_NAMES", "ANNOTATION_TENSOR_TYPES")
    }  # fmt: skip
    with capsys.disabled():
        print(f"\nloss allow-list sizes: {sizes}")
    assert all(0 < n < 200 for n in sizes.values())


# The generic deny-list (ADAS agents, user targets): hardened where it cannot break them ----------------
GENERIC = [
    ("import json\njson.loads = None\n", "module-store"),
    ("torch.log_softmax = torch.sigmoid\n", "module-store"),
    ("del math.pi\n", "module-store"),
    ("self.answer = 1\nself.calls += 1\n", None),
    ("s = '{0.gi_frame.f_back}'.format(g)\n", "format-string"),
    ("s = 'Answer in the form {\"answer\": x.y} please.'\n", None),
    ("import typing\nb = typing.stdlib_re.enum.bltns\n", "forbidden-attribute"),
    ("f = x.grad_fn.next_functions\n", "forbidden-attribute"),
    ("m = torch.overrides.get_ignored_functions()\n", "forbidden-attribute"),
]


@pytest.mark.parametrize(("code", "rule"), GENERIC, ids=[f"{i}-{r}" for i, (_, r) in enumerate(GENERIC)])
def test_generic_policy_hardening(code: str, rule: str | None) -> None:
    found = check_policy(code, frozenset({"json", "math", "typing"}))
    assert [v.rule for v in found][:1] == ([rule] if rule else [])


def test_adas_seed_agents_still_pass_the_generic_policy() -> None:
    from targets.agents.seeds import seed_archive
    from targets.agents.target import ALLOWED_IMPORTS

    seeds = seed_archive("mgsm")
    assert seeds
    for seed in seeds:
        assert check_policy(seed.code, ALLOWED_IMPORTS) == [], seed.name
