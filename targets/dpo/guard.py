"""Call a candidate loss so that it can reach neither the model nor the process's shared state.

Two ways a policy-clean loss once moved scores without training honestly (issue 15):
- through autograd: `policy_chosen_logps.grad_fn.next_functions` leads to the model's parameters, whose
  gradients or weights a loss could hook, zero or overwrite;
- through process-wide state: `torch.log_softmax = ...` stays set for the evaluator and every later job.

So the candidate is called on detached leaves (no autograd path to any parameter), its gradients with
respect to those leaves are taken, and they are back-propagated into the model by trusted code
(`surrogate`). And a snapshot of the modules it can name (`torch`, `F`, `math`, `torch.Tensor`, the global
module hooks) and of the switches and RNG is compared before and after each call: any change fails the run.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
import torch.nn.modules.module as nn_module

_WATCHED: tuple[tuple[str, Any], ...] = (
    ("torch", torch),
    ("F", F),
    ("math", math),
    ("torch.Tensor", torch.Tensor),
    ("torch.nn.Module", torch.nn.Module),
    ("torch.autograd", torch.autograd),
    ("torch.nn.modules.module", nn_module),
)


class StateTampered(Exception):
    """The candidate changed something every later computation in this process would see."""

    def __init__(self, changes: list[str]) -> None:
        self.changes = changes
        shown = ", ".join(changes[:5]) + (f" and {len(changes) - 5} more" if len(changes) > 5 else "")
        super().__init__(f"the candidate changed process-wide state: {shown}")


def _switches() -> dict[str, Any]:
    """Global numerics switches a loss could flip to change how everything else computes."""
    return {
        "grad enabled": torch.is_grad_enabled(),
        "inference mode": torch.is_inference_mode_enabled(),
        "default dtype": torch.get_default_dtype(),
        "deterministic algorithms": torch.are_deterministic_algorithms_enabled(),
        "anomaly detection": torch.is_anomaly_enabled(),
        "threads": torch.get_num_threads(),
        "float32 matmul precision": torch.get_float32_matmul_precision(),
        "mkldnn": torch.backends.mkldnn.enabled,
    }


class ProcessState:
    """An identity snapshot of what a candidate can name, cheap enough to take around every call."""

    def __init__(self) -> None:
        self.attrs = {name: _identity(obj) for name, obj in _WATCHED}
        self.containers = _container_sizes()
        self.switches = _switches()
        self.rng = torch.get_rng_state()

    def changes(self) -> list[str]:
        """What differs now from the snapshot, named so that a model can tell what it did."""
        found: list[str] = []
        for name, obj in _WATCHED:
            before, after = self.attrs[name], _identity(obj)
            for key in sorted(set(before) | set(after)):
                if before.get(key) != after.get(key):
                    found.append(f"{name}.{key}")
        now = _container_sizes()
        found += [f"{key} (global hooks)" for key in sorted(now) if now[key] != self.containers.get(key)]
        switches = _switches()
        found += [f"torch {key}" for key in switches if switches[key] != self.switches[key]]
        if not torch.equal(torch.get_rng_state(), self.rng):
            found.append("torch's global RNG state (a loss must be deterministic)")
        return found


def _identity(obj: Any) -> dict[str, int]:
    return {key: id(value) for key, value in vars(obj).items()}


def _container_sizes() -> dict[str, int]:
    """Sizes of the dicts of global hooks (adding a hook mutates a dict without rebinding it)."""
    return {
        f"torch.nn.modules.module.{key}": len(value)
        for key, value in vars(nn_module).items()
        if key.startswith("_global") and isinstance(value, dict)
    }


def call_on_leaves(
    fn: Any, context: Any, chosen: torch.Tensor, rejected: torch.Tensor, ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
) -> tuple[Any, torch.Tensor, torch.Tensor]:  # fmt: skip
    """Call `fn` on detached copies of its inputs; the policy's two become leaves that require grad.

    Returns (what fn returned, the two leaves). Raises StateTampered when the call changed shared state;
    exceptions of the candidate's own propagate unchanged (the caller reports them as the candidate's)."""
    leaf_chosen = chosen.detach().clone().requires_grad_(chosen.requires_grad)
    leaf_rejected = rejected.detach().clone().requires_grad_(rejected.requires_grad)
    state = ProcessState()
    out = fn(context, leaf_chosen, leaf_rejected, ref_chosen.detach().clone(), ref_rejected.detach().clone())
    changed = state.changes()
    if changed:
        raise StateTampered(changed)
    return out, leaf_chosen, leaf_rejected


def surrogate(
    loss: torch.Tensor, leaves: tuple[torch.Tensor, torch.Tensor], inputs: tuple[torch.Tensor, torch.Tensor]
) -> torch.Tensor:
    """A scalar equal to `loss` whose gradient w.r.t. the model is the candidate's, by the chain rule:
    ∂loss/∂θ = Σ_b ∂loss/∂chosen_b · ∂chosen_b/∂θ + (same for rejected). The candidate's part (the
    leaf gradients) is computed on its own graph; the model's part by trusted code only."""
    state = ProcessState()  # the backward of the candidate's graph runs its code too (e.g. a hook)
    grads = torch.autograd.grad(loss, leaves, allow_unused=True)
    changed = state.changes()
    if changed:
        raise StateTampered(changed)
    chosen, rejected = (
        (x * (torch.zeros_like(x) if g is None else g.detach().to(x.dtype))).sum()
        for x, g in zip(inputs, grads, strict=True)
    )
    link = chosen + rejected
    return loss.detach() + (link - link.detach())  # value: loss exactly; gradient: the link's
