"""What runs inside the sandbox: a candidate's validity checks and fingerprint, and its scores.

The target calls these with `SandboxRequest(call="optimizer_target.sandboxed:...")`, shipping this
package's sources with the request (targets.sources), so the candidate's code never runs in disco's
process. Every check result says what went wrong in words a model can act on.
"""

from __future__ import annotations

import ast
import math
import time
import traceback
from typing import Any

import numpy as np

from targets.kit import sandboxed_check
from targets.results import CheckReport, CheckResult

from .problems import LRS, PROBLEM_NAMES, STEPS, Hyper, Update, quadratic, run, score


class CandidateError(Exception):
    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.line = line


def load_update(code: str) -> Update:
    """The candidate's one top-level function, defined with `np` and `math` in scope."""
    try:
        tree = ast.parse(code)
    except SyntaxError as exc:
        raise CandidateError(f"syntax error: {exc.msg}", exc.lineno) from None
    functions = [n for n in tree.body if isinstance(n, ast.FunctionDef)]
    if len(functions) != 1:
        raise CandidateError(f"define exactly one top-level function, found {len(functions)}")
    params = [a.arg for a in functions[0].args.args]
    if len(params) != 4 or params[0] != "self":
        raise CandidateError(f"the function takes (self, param, grad, state), not ({', '.join(params)})", 1)
    namespace: dict[str, Any] = {"np": np, "math": math}
    exec(compile(code, "<candidate>", "exec"), namespace)
    return namespace[functions[0].name]


def _failed(name: str, exc: BaseException) -> CheckResult:
    """A check that the candidate's own exception failed, pointing at the candidate's line."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == "<candidate>"]
    return CheckResult(
        name=name,
        passed=False,
        message=f"the update raised {type(exc).__name__}: {exc}",
        line=frames[-1].lineno if frames else None,
        traceback="".join(traceback.format_exception(type(exc), exc, exc.__traceback__))[-1500:],
    )


def _interface(update: Update) -> CheckResult:
    param, grad = np.linspace(-1.0, 1.0, 5), np.linspace(0.5, -0.5, 5)
    out = update(Hyper(0.01), param.copy(), grad.copy(), {})
    if not (isinstance(out, tuple) and len(out) == 2):
        return CheckResult(name="interface", passed=False, message="return a pair (new_param, state)")
    new, state = out
    if not isinstance(new, np.ndarray) or new.shape != param.shape:
        shape = getattr(new, "shape", type(new).__name__)
        return CheckResult(
            name="interface", passed=False, message=f"new_param must be an array of shape (5,), got {shape}"
        )
    if not isinstance(state, dict):
        return CheckResult(name="interface", passed=False, message="state must be a dict")
    return CheckResult(name="interface", passed=True, message="returns (new_param of param's shape, dict)")


def _finite(update: Update) -> CheckResult:
    """Finite parameters for zero, tiny and huge gradients (Adagrad without ε divides 0 by 0)."""
    for label, g in (("zero", 0.0), ("tiny", 1e-12), ("huge", 1e6)):
        param, state = np.ones(4), {}
        with np.errstate(all="ignore"):
            for step in range(30):
                grad = np.full(4, g) * (-1.0) ** step
                param, state = update(Hyper(0.01), param, grad, state)
        if not np.all(np.isfinite(param)):
            return CheckResult(
                name="finite", passed=False, numbers={"gradient": g, "steps": 30},
                message=f"with {label} gradients (|g| = {g:g}) the parameters became non-finite: guard every "
                "division and square root (an ε outside the root), and bound exponentials",
            )  # fmt: skip
    return CheckResult(name="finite", passed=True, message="finite for zero, tiny and huge gradients")


def _descends(update: Update) -> CheckResult:
    problem = quadratic("check", 123, cond=10.0)
    start = problem.loss(problem.x0)
    best = min(run(update, problem, lr, steps=100) for lr in LRS)
    if best < 0.5 * start:
        return CheckResult(
            name="descends", passed=True, message="lowers a quadratic", numbers={"ratio": best / start}
        )
    return CheckResult(
        name="descends", passed=False, numbers={"start": start, "best": best},
        message=f"at no learning rate in {list(LRS)} did 100 steps halve ½xᵀAx (from {start:.3g}, best "
        f"{best:.3g}): the update must move against the gradient, param − lr·direction",
    )  # fmt: skip


def _deterministic(update: Update) -> CheckResult:
    problem = quadratic("check", 7, cond=100.0)
    trajectories, rng = [], np.random.default_rng(0)
    for _ in range(2):
        x, state = problem.x0.copy(), {}
        for _ in range(20):
            x, state = update(Hyper(0.01), x, problem.grad(x, rng), state)
        trajectories.append(np.asarray(x))
    same = np.array_equal(trajectories[0], trajectories[1])
    message = (
        "same inputs, same outputs" if same else "two runs from the same start differ: use no randomness"
    )
    return CheckResult(name="deterministic", passed=bool(same), message=message)


def _fast(update: Update, budget_s: float, steps: int = 2000) -> CheckResult:
    """2000 steps on 100 parameters within the budget; a slow rule is stopped as soon as it is over."""
    problem = quadratic("check", 3, cond=10.0, dim=100)
    rng = np.random.default_rng(0)
    x, state = problem.x0.copy(), {}
    start = time.perf_counter()
    for step in range(1, steps + 1):
        x, state = update(Hyper(1e-3), x, problem.grad(x, rng), state)
        seconds = time.perf_counter() - start
        if seconds > budget_s:
            message = f"only {step} of {steps} steps on 100 parameters in the {budget_s:g} s budget"
            return CheckResult(name="fast", passed=False, message=message + ": vectorise the update")
    message = f"{steps} steps on 100 parameters took {seconds:.2f} s (budget {budget_s:g} s)"
    return CheckResult(name="fast", passed=True, message=message)


def fingerprint(update: Update) -> list[float]:
    """What the rule does, as numbers: the displacement per unit lr over the first steps, for gradients
    of two scales (a scale-invariant rule moves alike in both), asinh-compressed."""
    rng = np.random.default_rng(2024)
    grads = rng.normal(size=(6, 4))
    out: list[float] = []
    for scale in (1.0, 1e3):
        x0 = np.linspace(-1.0, 1.0, 4)
        x, state = x0.copy(), {}
        for g in grads:
            x, state = update(Hyper(0.01), x, scale * g, state)
            out += np.arcsinh((np.asarray(x) - x0) / 0.01).tolist()
    return [float(v) if math.isfinite(v) else 0.0 for v in out]


def check_and_fingerprint(code: str, time_budget_s: float = 2.0) -> dict[str, Any]:
    """The validity checks, then (for a passing rule) its fingerprint: the target's `check` reads them
    (targets.kit.TargetKit.check_in_sandbox)."""
    try:
        update = load_update(code)
    except CandidateError as exc:
        failed = CheckResult(name="loads", passed=False, message=str(exc), line=exc.line)
        return sandboxed_check(CheckReport.from_checks([failed]))
    except Exception as exc:  # the candidate's module-level code raised
        return sandboxed_check(CheckReport.from_checks([_failed("loads", exc)]))
    checks = [CheckResult(name="loads", passed=True, message="one function with the interface's parameters")]
    steps = [("interface", _interface), ("finite", _finite), ("descends", _descends)]
    steps += [("deterministic", _deterministic), ("fast", lambda u: _fast(u, time_budget_s))]
    for name, check in steps:
        try:
            with np.errstate(all="ignore"):  # a NaN is reported by the checks, not warned about
                result = check(update)
        except Exception as exc:
            result = _failed(name, exc)
        checks.append(result)
        if not result.passed:
            break  # the later checks would fail for the same reason
    report = CheckReport.from_checks(checks)
    return sandboxed_check(report, fingerprint(update) if report.passed else None)


def score_codes(codes: dict[str, str], seeds: list[int], steps: int = STEPS) -> dict[str, Any]:
    """Per label and seed: the per-problem scores, best learning rates and errors of each rule."""
    out: dict[str, Any] = {}
    for label, code in codes.items():
        update = load_update(code)
        per_seed = {str(s): score(update, s, steps) for s in seeds}
        out[label] = {
            "scores": {k: v[0] for k, v in per_seed.items()},
            "lrs": {k: v[1] for k, v in per_seed.items()},
            "errors": [e for v in per_seed.values() for e in v[2]][:20],
        }
    out["problems"] = PROBLEM_NAMES
    return out
