"""Why a job failed, as one of four states the agent acts on differently.

- failed:oom — out of memory: `torch.cuda.OutOfMemoryError`, `MemoryError`, torch's CPU allocator refusing
  (RLIMIT_AS), or a SIGKILL disco did not send (the kernel's OOM killer). Retry smaller or elsewhere.
- failed:nan — the loss or its gradient went non-finite, or a finite loss passed the hopeless mark.
  The candidate's fault; the step and the reason are recorded for the repair prompt.
- failed:timeout — the job's wall-clock limit was reached (a candidate that hangs, or a job too big).
- failed:crash — anything else, with the tail of the traceback.

Candidate code raises whatever it likes, and the trainer wraps it (`CandidateFailure`): the verdict is read
from the exception's type where there is one, and from the message otherwise, never from where it
happened.
"""

from __future__ import annotations

import signal
import traceback as tb_module
from typing import Any

from tools.jobs.models import JobState

OOM_MARKERS = (
    "OutOfMemoryError",
    "MemoryError",
    "CUDA out of memory",
    "can't allocate memory",
    "Cannot allocate memory",
    "CUBLAS_STATUS_ALLOC_FAILED",
)
TRACEBACK_TAIL_CHARS = 4000


def is_oom(text: str) -> bool:
    return any(marker in text for marker in OOM_MARKERS)


def tail(text: str, chars: int = TRACEBACK_TAIL_CHARS) -> str:
    return text if len(text) <= chars else "…" + text[-chars:]


def from_exception(exc: BaseException) -> tuple[JobState, str, str]:
    """State, one sentence and the traceback tail for an exception that ended the training process."""
    text = "".join(tb_module.format_exception(exc))
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    summary = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError" or is_oom(summary):
        return "failed:oom", f"out of memory ({summary[:300]})", tail(text)
    return "failed:crash", summary[:500], tail(text)


def from_outcome(outcome: dict[str, Any]) -> tuple[JobState, str, str | None]:
    """State for a `TrainOutcome` (as JSON): ok → succeeded, diverged → failed:nan, a candidate error →
    failed:oom when it ran out of memory, else failed:crash with the candidate's traceback."""
    status = outcome.get("status")
    reason = outcome.get("reason") or ""
    if status == "ok":
        return "succeeded", "", None
    if status == "diverged":
        return "failed:nan", reason or "the loss became non-finite", None
    traceback = outcome.get("traceback")
    if is_oom(reason) or is_oom(traceback or ""):
        return "failed:oom", f"out of memory in the candidate: {reason[:300]}", traceback
    return "failed:crash", reason or "the candidate failed", traceback


def from_exit(returncode: int | None, killed_for: str | None, time_limit_s: float) -> tuple[JobState, str]:
    """State for a training process that ended without writing its verdict.

    `killed_for` is why the supervisor killed it ("timeout", "cancel", "shutdown"), None if it did not.
    """
    if killed_for == "timeout":
        return "failed:timeout", f"the job exceeded its time limit of {time_limit_s:g} s and was killed"
    if killed_for == "cancel":
        return "cancelled", "cancelled on request"
    if killed_for == "shutdown":
        return "failed:crash", "the job's supervisor was told to stop (SIGTERM) and killed the training"
    if returncode is not None and returncode < 0:
        sig = -returncode
        name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else f"signal {sig}"
        if sig == signal.SIGKILL:
            return (
                "failed:oom",
                "the training process was killed by SIGKILL, which disco did not send: most likely the "
                "kernel's out-of-memory killer",
            )
        return "failed:crash", f"the training process was killed by {name}"
    return "failed:crash", f"the training process exited with status {returncode} without a result"


def from_child(
    kind: str, message: str, detail: str | None, sig: int | None, time_limit_s: float
) -> tuple[JobState, str]:
    """State for a jailed training child that ended without a usable result (`targets.dpo.real.ChildFailed`:
    refused, timeout, killed, crash or rejected); `detail` is its untrusted output, read for OOM markers."""
    if kind == "timeout":
        return from_exit(None, "timeout", time_limit_s)
    if kind == "killed" and sig is not None:
        return from_exit(-sig, None, time_limit_s)
    if kind == "crash" and (is_oom(message) or is_oom(detail or "")):
        return "failed:oom", f"out of memory ({message[:300]})"
    return "failed:crash", message[:500]
