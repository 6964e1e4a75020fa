"""Validity checks for a DPO-loss candidate, cheap enough to run before any training.

`check_candidate(code)` never raises for any candidate: every problem becomes a CheckResult whose
message says what went wrong, where, and with which numbers, so a model can repair the code. Checks
run in a fixed order; once the policy, the signature or the output shape fails, or a call times out,
the later checks are reported as skipped (info level) with the reason.
"""

from __future__ import annotations

import contextlib
import io
import math
import signal
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import torch

from targets.dpo.candidate import (
    CandidateError,
    CandidateLoss,
    LossContext,
    error_line,
    format_candidate_traceback,
    load_candidate,
)
from targets.dpo.loss_policy import check_loss_policy
from targets.results import CheckReport, CheckResult

T = TypeVar("T")

BETAS: tuple[float, ...] = (0.01, 0.1, 0.5, 1.0, 5.0)
"""β values every numeric check sweeps: the range used in the DiscoPOP paper and beyond."""
EXTREME_RHOS: tuple[float, ...] = (-1e3, -1e2, -10.0, -1.0, 0.0, 1.0, 10.0, 1e2, 1e3)
"""Margins ρ for `finite_extreme`. |ρ| = 1e3 is a summed-log-prob gap that long completions do reach."""
SHAPE_BATCHES: tuple[int, ...] = (1, 3, 8)
PER_CALL_LIMIT_S = 2.0
"""A loss on a few dozen pairs takes milliseconds; two seconds means a loop or a pathological graph."""
CHECK_NAMES: tuple[str, ...] = (
    "policy", "signature", "output_shape", "finite_ordinary", "finite_extreme", "finite_bfloat16",
    "gradients", "preference_direction", "batch_dependence", "deterministic", "time_budget",
)  # fmt: skip


class CallTimeout(BaseException):
    """Raised by SIGALRM inside a candidate call. A BaseException so `except Exception` cannot swallow it
    (the policy forbids bare `except:` and naming BaseException)."""


class _Fail(Exception):
    """A candidate call failed; becomes the current check's failure."""

    def __init__(self, message: str, line: int | None = None, tb: str | None = None) -> None:
        super().__init__(message)
        self.message, self.line, self.traceback = message, line, tb


class _Stop(_Fail):
    """Time ran out: the current check fails and the rest are skipped."""


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Interrupt the block with CallTimeout after `seconds`, via SIGALRM.

    Only possible in the main thread of a POSIX process; elsewhere the block runs to completion and the
    overall budget is enforced between calls. A candidate stuck inside one long C++ op is not
    interrupted either: hard isolation (a killable subprocess or container) is the sandbox's job.
    """
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
        yield
        return
    armed = [True]

    def on_alarm(signum: int, frame: Any) -> None:
        if armed[0]:
            raise CallTimeout

    previous = signal.signal(signal.SIGALRM, on_alarm)
    outer_delay, outer_interval = signal.setitimer(signal.ITIMER_REAL, max(seconds, 1e-3))
    started = time.monotonic()
    try:
        yield
    finally:
        armed[0] = False
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if outer_delay:  # someone else's timer was running: give back what is left of it
            remaining = max(outer_delay - (time.monotonic() - started), 1e-3)
            signal.setitimer(signal.ITIMER_REAL, remaining, outer_interval)


class _Runner:
    """Calls the candidate under the time limits, with its output and warnings captured."""

    def __init__(self, code: str, deadline: float, per_call_s: float) -> None:
        self.code, self.deadline, self.per_call_s = code, deadline, per_call_s
        self.loss: CandidateLoss | None = None

    def guarded(self, what: str, fn: Callable[[], T]) -> T:
        limit = min(self.per_call_s, self.deadline - time.monotonic())
        if limit <= 0:
            raise _Stop("the time budget for all checks ran out before this check could finish")
        try:
            with (
                time_limit(limit),
                contextlib.redirect_stdout(io.StringIO()),
                contextlib.redirect_stderr(io.StringIO()),
                warnings.catch_warnings(),
                torch.enable_grad(),
            ):
                warnings.simplefilter("ignore")
                return fn()
        except CallTimeout as exc:
            raise _Stop(
                f"{what} did not return within {limit:.2g} s (an infinite loop or a very slow computation; "
                "a loss on a few dozen pairs should take milliseconds)",
                error_line(exc),
                format_candidate_traceback(exc, self.code),
            ) from None
        except CandidateError:
            raise
        except (Exception, SystemExit) as exc:  # anything the candidate raises is the candidate's fault
            raise _Fail(
                f"{what} raised {type(exc).__name__}: {exc}",
                error_line(exc),
                format_candidate_traceback(exc, self.code),
            ) from None

    def __call__(self, beta: float, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        assert self.loss is not None
        loss = self.loss
        # Clones: an in-place op in the candidate must not corrupt the inputs of later calls.
        args = [t.clone() for t in inputs]
        out = self.guarded("calling the loss", lambda: loss(LossContext(beta=beta), *args))
        if not isinstance(out, torch.Tensor):
            raise _Fail(f"the loss returned {type(out).__name__}; expected a tensor of shape (B,)")
        if not out.is_floating_point():
            raise _Fail(f"the loss returned a {out.dtype} tensor; expected floating-point losses")
        return out

    def grads(self, out: torch.Tensor, leaves: Sequence[torch.Tensor]) -> list[torch.Tensor] | None:
        """d(sum of losses)/d(leaves), zeros where unused; None when the loss has no graph at all."""
        if not out.requires_grad:
            return None
        got = self.guarded(
            "back-propagating through the loss",
            lambda: torch.autograd.grad(out.float().sum(), list(leaves), allow_unused=True),
        )
        return [torch.zeros_like(leaf) if g is None else g for g, leaf in zip(got, leaves, strict=True)]


# Inputs ------------------------------------------------------------------------------------------
def _ordinary(batch: int, seed: int, dtype: torch.dtype = torch.float32) -> list[torch.Tensor]:
    """Realistic summed log-probs: -20…-200 per completion, policy within a few nats of the reference."""
    g = torch.Generator().manual_seed(seed)
    pc = -(20 + 180 * torch.rand(batch, generator=g))
    pr = -(20 + 180 * torch.rand(batch, generator=g))
    rc = pc + 3 * torch.randn(batch, generator=g)
    rr = pr + 3 * torch.randn(batch, generator=g)
    out = [t.to(dtype) for t in (pc, pr, rc, rr)]
    out[0].requires_grad_(True)
    out[1].requires_grad_(True)
    return out


def _with_margin(rho: float) -> list[torch.Tensor]:
    """Four pairs with margins ρ·(0.25, 0.5, 0.75, 1); every log-prob ≤ -50, references equal."""
    r = rho * torch.tensor([0.25, 0.5, 0.75, 1.0])
    pc = (-50 - torch.relu(-r)).requires_grad_(True)
    pr = (-50 - torch.relu(r)).requires_grad_(True)
    ref = -50 - r.abs() / 2
    return [pc, pr, ref, ref.clone()]


def _rho(inputs: Sequence[torch.Tensor]) -> torch.Tensor:
    pc, pr, rc, rr = (t.detach().float() for t in inputs)
    return (pc - pr) - (rc - rr)


def _bad(t: torch.Tensor) -> str | None:
    if torch.isnan(t).any():
        return "NaN"
    if torch.isinf(t).any():
        return "inf"
    return None


def _fmt(x: float) -> str:
    return f"{x:.4g}"


# Checks ------------------------------------------------------------------------------------------
def _output_shape(run: _Runner) -> CheckResult:
    for batch in SHAPE_BATCHES:
        out = run(0.1, _ordinary(batch, seed=batch))
        if tuple(out.shape) != (batch,):
            shape = tuple(out.shape)
            if out.dim() == 0:
                hint = "a scalar: return per-example losses; drop the final .mean()/.sum() over the batch"
            elif shape == (batch, 1):
                hint = "(B, 1): squeeze the trailing dimension"
            elif out.numel() == 2 * batch:
                hint = "2B values: combine the chosen and rejected terms per pair instead of concatenating"
            else:
                hint = "one loss per preference pair is expected"
            return CheckResult(
                name="output_shape",
                passed=False,
                message=f"for a batch of {batch} pairs the loss has shape {shape}, expected ({batch},); "
                f"{hint}",
                numbers={"batch": batch, "numel": out.numel()},
            )
    batches = ", ".join(map(str, SHAPE_BATCHES))
    return CheckResult(name="output_shape", passed=True, message=f"shape (B,) for B = {batches}")


def _finite(run: _Runner, name: str, dtype: torch.dtype) -> CheckResult:
    for beta in BETAS:
        inputs = _ordinary(32, seed=11, dtype=dtype)
        out = run(beta, inputs)
        grads = run.grads(out, inputs[:2])
        for what, t in [("loss", out), *[("gradient", g) for g in grads or []]]:
            kind = _bad(t)
            if kind:
                rho = _rho(inputs)
                mask = ~torch.isfinite(t)
                idx = int(mask.nonzero()[0, 0]) if t.dim() else 0
                r = float(rho[idx]) if t.dim() else float("nan")
                return CheckResult(
                    name=name,
                    passed=False,
                    message=f"with {str(dtype).removeprefix('torch.')} inputs at β={beta} the {what} is "
                    f"{kind} "
                    f"for {int(mask.sum())} of {mask.numel()} values (e.g. ρ={_fmt(r)}, βρ={_fmt(beta * r)}) "
                    "on ordinary log-probs (-20…-200, |ρ| of a few nats)",
                    numbers={"beta": beta, "rho": r, "count": float(mask.sum())},
                )
    return CheckResult(
        name=name,
        passed=True,
        message=f"loss and gradient finite on ordinary {str(dtype).removeprefix('torch.')} inputs, "
        f"β in {list(BETAS)}",
    )


def _finite_ordinary(run: _Runner) -> CheckResult:
    return _finite(run, "finite_ordinary", torch.float32)


def _finite_bfloat16(run: _Runner) -> CheckResult:
    return _finite(run, "finite_bfloat16", torch.bfloat16)


def _finite_extreme(run: _Runner) -> CheckResult:
    settings = sorted(((b, r) for b in BETAS for r in EXTREME_RHOS), key=lambda s: (abs(s[0] * s[1]), s[1]))
    failures: list[tuple[float, float, str]] = []
    for beta, rho in settings:
        inputs = _with_margin(rho)
        out = run(beta, inputs)
        grads = run.grads(out, inputs[:2]) or []
        for what, t in [
            ("loss", out),
            ("gradient", torch.cat([g.flatten() for g in grads]) if grads else None),
        ]:
            kind = _bad(t) if t is not None else None
            if kind:
                failures.append((beta, rho, f"{what} is {kind}"))
    if not failures:
        return CheckResult(
            name="finite_extreme",
            passed=True,
            message="loss and gradient finite in float32 for ρ in ±{1, 10, 100, 1000} and "
            f"β in {list(BETAS)}",
        )
    beta, rho, what = failures[0]
    examples = "; ".join(f"{w} at ρ={_fmt(r)}, β={b}" for b, r, w in failures[1:4])
    return CheckResult(
        name="finite_extreme",
        passed=False,
        message=f"in float32, the {what} at ρ={_fmt(rho)} with β={beta} (βρ={_fmt(beta * rho)}), "
        "the smallest "
        f"|βρ| that fails; non-finite in {len(failures)} of {len(settings)} (ρ, β) settings"
        + (f" (also: {examples})" if examples else "")
        + ". Typical causes: exp() of a large -βρ overflows (float32 overflows above exp(88)), or inf·0; "
        "compute in log space (F.logsigmoid, F.softplus, exp(a + logsigmoid(b))) or clamp the exponent.",
        numbers={
            "rho": rho,
            "beta": beta,
            "beta_rho": beta * rho,
            "failures": len(failures),
            "settings": len(settings),
        },
    )


def _policy_grads(run: _Runner, seed: int) -> dict[float, tuple[float, float]]:
    """Mean dL/d(policy_chosen_logps) and dL/d(policy_rejected_logps) per β; raises _Fail without a graph."""
    means = {}
    for beta in BETAS:
        inputs = _ordinary(64, seed=seed)
        grads = run.grads(run(beta, inputs), inputs[:2])
        if grads is None:
            raise _Fail(
                "the loss has no gradient with respect to the policy log-probs (it is a constant or "
                "detached): "
                "it cannot train the policy"
            )
        means[beta] = (float(grads[0].mean()), float(grads[1].mean()))
        if all(float(g.abs().max()) == 0 for g in grads):
            raise _Fail(
                f"at β={beta} the gradient with respect to the policy log-probs is exactly zero for all 64 "
                "pairs: the loss cannot train the policy (constant, detached, or flat like round()/sign())"
            )
        if not all(bool(torch.isfinite(g).all()) for g in grads):
            raise _Fail(f"at β={beta} the gradient with respect to the policy log-probs is not finite")
    return means


def _gradients(run: _Runner) -> CheckResult:
    means = _policy_grads(run, seed=21)
    return CheckResult(
        name="gradients",
        passed=True,
        message=f"gradients w.r.t. the policy log-probs are finite and non-zero at every β in {list(BETAS)}",
        numbers={f"mean_dL_dchosen@beta={b}": c for b, (c, _) in means.items()},
    )


def _preference_direction(run: _Runner) -> CheckResult:
    """Error when the mean gradient points the wrong way at every β; a warning when only at some.

    Published losses are not all monotone: LRML (DiscoPOP) and AQL rise with ρ near ρ = 0, so at
    β = 0.01, where every βρ is tiny, their mean gradient has the wrong sign (the DiscoPOP paper also
    reports LRML struggling at small β). That is worth knowing, not disqualifying; a loss that is wrong
    at every β is a sign error.
    """
    means = _policy_grads(run, seed=31)
    numbers: dict[str, float] = {}
    wrong = []
    for beta, (dc, dr) in means.items():
        numbers[f"mean_dL_dchosen@beta={beta}"] = dc
        numbers[f"mean_dL_drejected@beta={beta}"] = dr
        if not (dc < 0 and dr > 0):
            wrong.append(f"β={beta}: mean dL/dπ_chosen={_fmt(dc)}, mean dL/dπ_rejected={_fmt(dr)}")
    numbers["wrong_betas"] = len(wrong)
    if not wrong:
        return CheckResult(
            name="preference_direction",
            passed=True,
            message="raising the chosen log-prob (or lowering the rejected one) lowers the loss on average "
            "at every β; the mean gradients are in `numbers`",
            numbers=numbers,
        )
    everywhere = len(wrong) == len(means)
    what = "at every β" if everywhere else f"at {len(wrong)} of {len(means)} β values"
    advice = (
        "Check the sign of the margin ρ = (π_c - π_r) - (ref_c - ref_r), e.g. -logσ(βρ), not -logσ(-βρ)."
        if everywhere
        else "The loss is not monotone in ρ: training at these β may not move the policy towards the "
        "chosen responses."
    )
    return CheckResult(
        name="preference_direction",
        passed=False,
        level="error" if everywhere else "warning",
        message=f"{what} the loss does not decrease as the chosen log-ratio grows (expected mean "
        f"dL/dπ_chosen < 0 and dL/dπ_rejected > 0 over 64 ordinary pairs): {'; '.join(wrong)}. {advice}",
        numbers=numbers,
    )


def _batch_dependence(run: _Runner) -> CheckResult:
    inputs = [t.detach() for t in _ordinary(8, seed=41)]
    full = run(0.1, inputs).detach().float()
    halves = (
        torch.cat([run(0.1, [t[:4] for t in inputs]), run(0.1, [t[4:] for t in inputs])]).detach().float()
    )
    singles = torch.cat([run(0.1, [t[i : i + 1] for t in inputs]).reshape(-1) for i in range(8)]).detach()
    scale = 1e-5 * (1 + float(full.abs().max()))
    d_halves = float((full - halves).abs().nan_to_num(nan=math.inf).max())
    single_bad = int((~torch.isfinite(singles)).sum())
    d_singles = float((full - singles.float()).abs().max()) if single_bad == 0 else math.inf
    numbers = {"max_abs_diff_halves": d_halves, "nonfinite_batch_of_1": single_bad}
    if d_singles != math.inf:
        numbers["max_abs_diff_batch_of_1"] = d_singles
    if d_halves <= scale and d_singles <= scale:
        return CheckResult(
            name="batch_dependence",
            passed=True,
            level="warning",
            numbers=numbers,
            message="each pair's loss is independent of the rest of its batch",
        )
    parts = [f"max |Δ| = {_fmt(d_halves)} between a batch of 8 and two batches of 4"]
    if single_bad:
        parts.append(
            f"with a batch of 1 the loss is non-finite for {single_bad} of 8 pairs "
            "(e.g. .std()/.var() of a single element)"
        )
    else:
        parts.append(f"max |Δ| = {_fmt(d_singles)} against batches of 1")
    return CheckResult(
        name="batch_dependence",
        passed=False,
        level="warning",
        numbers=numbers,
        message="each pair's loss depends on the other pairs in its batch (batch statistics such as .mean(), "
        ".std()): " + "; ".join(parts) + ". Allowed, but results will depend on the batch size.",
    )


def _deterministic(run: _Runner) -> CheckResult:
    inputs = [t.detach() for t in _ordinary(16, seed=51)]
    a, b = run(0.1, inputs).detach(), run(0.1, inputs).detach()
    if a.shape == b.shape and torch.allclose(a, b, rtol=0, atol=0, equal_nan=True):
        return CheckResult(
            name="deterministic", passed=True, message="two calls on the same inputs agree exactly"
        )
    diff = (
        float((a.float() - b.float()).abs().nan_to_num(nan=math.inf).max())
        if a.shape == b.shape
        else math.inf
    )
    return CheckResult(
        name="deterministic",
        passed=False,
        numbers={"max_abs_diff": diff},
        message=f"two calls on the same inputs gave different losses (max |Δ| = {_fmt(diff)}): "
        "a loss must be a "
        "pure function of its inputs (no random numbers, no state kept between calls)",
    )


_NUMERIC_CHECKS: tuple[tuple[str, Callable[[_Runner], CheckResult]], ...] = (
    ("output_shape", _output_shape),
    ("finite_ordinary", _finite_ordinary),
    ("finite_extreme", _finite_extreme),
    ("finite_bfloat16", _finite_bfloat16),
    ("gradients", _gradients),
    ("preference_direction", _preference_direction),
    ("batch_dependence", _batch_dependence),
    ("deterministic", _deterministic),
)


# Driver ------------------------------------------------------------------------------------------
def _policy(code: str) -> CheckResult:
    violations = check_loss_policy(code)
    if not violations:
        return CheckResult(name="policy", passed=True, message="no forbidden imports, names or attributes")
    return CheckResult(
        name="policy",
        passed=False,
        line=violations[0].line,
        message="; ".join(v.message for v in violations[:5])
        + (f"; and {len(violations) - 5} more" if len(violations) > 5 else ""),
        numbers={"violations": len(violations)},
    )


def _failed(name: str, exc: _Fail | CandidateError) -> CheckResult:
    return CheckResult(name=name, passed=False, message=exc.message, line=exc.line, traceback=exc.traceback)


def _skipped(name: str, reason: str) -> CheckResult:
    return CheckResult(name=name, passed=False, level="info", message=f"skipped: {reason}")


def check_candidate(
    code: str, *, time_budget_s: float = 10.0, per_call_s: float | None = None
) -> CheckReport:
    """Run every check on candidate source and return the report; never raises for any candidate.

    Each call into the candidate is limited to `per_call_s` (default PER_CALL_LIMIT_S) and the whole run
    to `time_budget_s`, using SIGALRM when called from the main thread; from another thread the limits
    are only enforced between calls. This is a guard against accidents such as `while True: pass`, not
    isolation: running untrusted code in a killable process with memory and network limits is the
    sandbox's job.
    """
    start = time.monotonic()
    per_call = min(per_call_s or PER_CALL_LIMIT_S, time_budget_s)
    run = _Runner(code, deadline=start + time_budget_s, per_call_s=per_call)
    results: list[CheckResult] = []
    stop: str | None = None
    timed_out: _Stop | None = None
    try:
        results.append(_policy(code))
        if not results[-1].passed:
            stop = "the code breaks the static policy (see `policy`)"
        else:
            try:
                run.loss = run.guarded("defining the candidate", lambda: load_candidate(code))
            except (CandidateError, _Fail) as exc:
                timed_out = exc if isinstance(exc, _Stop) else None
                results.append(_failed("signature", exc))
                stop = "the candidate could not be loaded (see `signature`)"
            else:
                message = f"one function, {run.loss.name}, with the expected parameters"
                results.append(CheckResult(name="signature", passed=True, message=message))
        for name, check in _NUMERIC_CHECKS:
            if stop:
                results.append(_skipped(name, stop))
                continue
            try:
                results.append(check(run))
            except _Fail as exc:
                results.append(_failed(name, exc))
                if isinstance(exc, _Stop):
                    timed_out, stop = exc, f"the candidate ran out of time in `{name}`"
            except Exception as exc:  # the output broke the check's own arithmetic (odd shapes, layouts)
                message = f"the loss's output could not be checked: {type(exc).__name__}: {exc}"
                results.append(CheckResult(name=name, passed=False, message=message))
            if name == "output_shape" and not results[-1].passed and not stop:
                stop = "the output shape is wrong (see `output_shape`)"
    except Exception as exc:  # a bug in the checker itself: report it as a failure, never as a pass
        results.append(
            CheckResult(
                name="internal", passed=False, message=f"the checker failed: {type(exc).__name__}: {exc}"
            )
        )
    results.append(_time_budget(time.monotonic() - start, time_budget_s, per_call, timed_out))
    # Every check is listed, in CHECK_NAMES order; one never reached is reported as skipped.
    by_name = {r.name: r for r in results}
    ordered = [by_name.get(n) or _skipped(n, stop or "not reached") for n in CHECK_NAMES]
    results = ordered + [r for r in results if r.name not in CHECK_NAMES]
    return CheckReport.from_checks(results)


def _time_budget(elapsed: float, budget: float, per_call: float, timed_out: _Stop | None) -> CheckResult:
    numbers = {"elapsed_s": elapsed, "budget_s": budget, "per_call_limit_s": per_call}
    if timed_out is not None:
        return CheckResult(
            name="time_budget",
            passed=False,
            numbers=numbers,
            line=timed_out.line,
            message=f"{timed_out.message}; the checks stopped after {elapsed:.2f} s",
        )
    return CheckResult(
        name="time_budget",
        passed=elapsed <= budget,
        numbers=numbers,
        message=f"all checks took {elapsed:.2f} s of the {budget:g} s budget (per-call limit {per_call:g} s)",
    )
