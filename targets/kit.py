"""The plumbing every target repeats, written once: a policy's violations as a `CheckResult`, a sandbox
opened on first use and a caller of one module's functions in it, a check run in the sandbox that comes
back as a `CheckReport` with the candidate's fingerprint, and defaults for the optional members.

A convenience, not the contract: the contract is `targets.base.Target`, which a plain class satisfies
without any of this. The DPO target, the ADAS target and `examples/optimizer_target` use it.

The sandbox side of a check returns `sandboxed_check(report, fingerprint)`; the target's side runs it with
`TargetKit.check_in_sandbox`, which keeps the fingerprint for `fingerprint(code)` and puts it on the report.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from targets.base import EvaluatorInfo
from targets.results import CheckReport, CheckResult

if TYPE_CHECKING:
    from sandbox.base import Sandbox
    from sandbox.models import SandboxResult
    from sandbox.policy import PolicyViolation

MAX_VIOLATIONS = 3
"""Violations a policy result quotes: the first few are what a repair needs."""


def policy_result(violations: Sequence[PolicyViolation], passed: str) -> CheckResult:
    """The `policy` check: passed with `passed` as its message, or failed at the first violation's line
    quoting the first few (sandbox.policy.check_policy and the loss policy give such violations)."""
    if not violations:
        return CheckResult(name="policy", passed=True, message=passed)
    message = "; ".join(v.message for v in violations[:MAX_VIOLATIONS])
    return CheckResult(name="policy", passed=False, message=message, line=violations[0].line)


def open_sandbox(backend: str) -> Sandbox:
    """A sandbox of `backend`; the local one keeps a warm worker, so that a check pays no start-up."""
    from sandbox.registry import get_sandbox

    return get_sandbox(backend, warm=1) if backend == "local" else get_sandbox(backend)


class SandboxCaller:
    """Calls of `module:function` in a sandbox opened on first use and kept until `close`. With
    `ship_sources`, the module's package travels with each request (targets.sources): a user target's
    files are not inside the sandbox."""

    def __init__(
        self,
        backend: str,
        module: str,
        *,
        preload: tuple[str, ...] = (),
        memory_mb: int = 2048,
        ship_sources: bool = False,
    ) -> None:
        self.backend = backend
        self.module = module
        self.preload = preload
        self.memory_mb = memory_mb
        self.ship_sources = ship_sources
        self.sandbox: Sandbox | None = None

    def call(
        self, function: str, kwargs: dict[str, Any], timeout_s: float, cpu_s: float | None = None
    ) -> SandboxResult:
        """`module.function(**kwargs)` in the sandbox; `result.value` is its return value when
        `result.status == "ok"`. Never raises for anything the called code does."""
        from sandbox.models import SandboxLimits, SandboxRequest
        from targets.sources import package_sources

        if self.sandbox is None:
            self.sandbox = open_sandbox(self.backend)
        files: dict[str, str | bytes] = {}
        if self.ship_sources:
            files.update(package_sources(self.module))
        request = SandboxRequest(
            call=f"{self.module}:{function}",
            kwargs=kwargs,
            files=files,
            preload=self.preload,
            limits=SandboxLimits(timeout_s=timeout_s, cpu_s=cpu_s, memory_mb=self.memory_mb),
        )
        return self.sandbox.run(request)

    def close(self) -> None:
        if self.sandbox is not None:
            self.sandbox.close()
            self.sandbox = None


class SandboxedCheck(BaseModel):
    """What a check function in the sandbox returns (JSON): its report, and the fingerprint of a
    candidate that passed."""

    report: CheckReport
    fingerprint: list[float] | None = None


def sandboxed_check(report: CheckReport, fingerprint: list[float] | None = None) -> dict[str, Any]:
    """The return value of a check function run in the sandbox (the sandbox side of `check_in_sandbox`);
    a failing report carries no fingerprint."""
    return {"report": report.model_dump(mode="json"), "fingerprint": fingerprint if report.passed else None}


def sandbox_failure(result: SandboxResult) -> CheckResult:
    """A failed `sandbox` check for a check run that did not return (timeout, memory, crash): what the
    repair prompt shows, with the run's stderr as its traceback."""
    message = f"the checks did not complete in the sandbox: {result.status}, {result.reason}"
    return CheckResult(name="sandbox", passed=False, message=message, traceback=result.stderr or None)


class TargetKit:
    """A base a target may use: the defaults of the optional members (the values the `*_of` readers of
    targets.base take for a target that declares none), its sandbox (`self.sandbox`, a SandboxCaller, or
    None for a target that runs candidates otherwise), the fingerprints its passing checks computed, and
    `close`. A subclass declares the rest of `targets.base.Target`."""

    summary: str = ""
    """Empty: `disco targets list` shows the description's first sentence."""
    baseline: str | None = None
    evaluators: Sequence[EvaluatorInfo | dict[str, Any]] = ()
    """Empty: one undeclared CPU evaluator."""
    models_used: tuple[str, ...] = ()
    evaluate_seeds_first: bool = False

    def __init__(self, sandbox: SandboxCaller | None = None) -> None:
        self.sandbox = sandbox
        self.fingerprints: dict[str, list[float] | None] = {}
        """Per code, the fingerprint its last check computed (None for a failing one)."""

    def not_ready(self) -> str | None:
        return None

    def call_in_sandbox(
        self, function: str, kwargs: dict[str, Any], timeout_s: float, cpu_s: float | None = None
    ) -> SandboxResult:
        """`function(**kwargs)` of the sandbox caller's module, in the sandbox (SandboxCaller.call)."""
        if self.sandbox is None:
            raise RuntimeError(f"{type(self).__name__} has no sandbox caller (TargetKit(sandbox=...))")
        return self.sandbox.call(function, kwargs, timeout_s, cpu_s)

    def check_in_sandbox(
        self, code: str, function: str, timeout_s: float, cpu_s: float | None = None, **kwargs: Any
    ) -> CheckReport:
        """Run the check function `function(code=code, **kwargs)` of the sandbox caller's module (it
        returns `sandboxed_check(...)`); a run that returns nothing usable is a failed `sandbox` check."""
        result = self.call_in_sandbox(function, {"code": code, **kwargs}, timeout_s, cpu_s)
        if result.status != "ok" or not isinstance(result.value, dict):
            return CheckReport.from_checks([sandbox_failure(result)])
        try:
            checked = SandboxedCheck.model_validate(result.value)
        except ValidationError as exc:  # what the check function returned is not what it should return
            message = f"the checks returned no valid report: {exc.errors()[0]['msg']}"
            return CheckReport.from_checks([CheckResult(name="sandbox", passed=False, message=message)])
        fingerprint = checked.fingerprint if checked.report.passed else None
        self.fingerprints[code] = fingerprint
        checked.report.fingerprint = fingerprint
        return checked.report

    def fingerprint(self, code: str) -> list[float] | None:
        """The fingerprint computed by `check` (None before a passing check)."""
        return self.fingerprints.get(code)

    def close(self) -> None:
        if self.sandbox is not None:
            self.sandbox.close()
