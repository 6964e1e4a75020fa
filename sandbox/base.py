"""The sandbox seam and the result handling that every backend shares (written once, here).

A backend only reports raw facts (`RawOutcome`: exit status, captured bytes, what it had to kill and
why); `finish` turns them into a `SandboxResult` the same way for all of them.
"""

from __future__ import annotations

import asyncio
import fnmatch
import signal
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

from sandbox.models import BackendReport, SandboxLimits, SandboxRequest, SandboxResult, Status
from sandbox.policy import check_policy
from sandbox.redact import redact

Killed = Literal["timeout", "output", "cancelled", "cpu", "oom"]


@runtime_checkable
class Sandbox(Protocol):
    """Runs a request and reports what happened; never raises for anything the code does."""

    name: str

    def run(self, request: SandboxRequest, cancel: threading.Event | None = None) -> SandboxResult: ...

    def doctor(self) -> BackendReport: ...

    def close(self) -> None: ...


async def arun(sandbox: Sandbox, request: SandboxRequest) -> SandboxResult:
    """Run from async code in a worker thread; cancelling the awaiting task kills the run."""
    cancel = threading.Event()
    task = asyncio.ensure_future(asyncio.to_thread(sandbox.run, request, cancel))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        cancel.set()
        await asyncio.wait({task}, timeout=10)
        raise


def policy_refusal(request: SandboxRequest, backend: str) -> SandboxResult | None:
    """The `policy` result when the request's code breaks its allow-list; None when it may run."""
    if request.allowed_imports is None or request.code is None:
        return None
    violations = check_policy(request.code, request.allowed_imports)
    if not violations:
        return None
    return SandboxResult(
        status="policy",
        stderr="\n".join(v.message for v in violations),
        reason=f"refused by the static policy before running: {violations[0].message}",
        backend=backend,
        policy=violations,
    )


class OutputCapture:
    """Keeps the head and the tail of a stream within `cap` bytes and counts the rest."""

    def __init__(self, cap: int) -> None:
        self.head_cap, self.tail_cap = cap - cap // 4, cap // 4
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0

    def feed(self, chunk: bytes) -> None:
        self.total += len(chunk)
        room = self.head_cap - len(self.head)
        if room > 0:
            self.head += chunk[:room]
            chunk = chunk[room:]
        if chunk:
            self.tail = (self.tail + chunk)[-self.tail_cap :]

    def text(self) -> str:
        dropped = self.total - len(self.head) - len(self.tail)
        head = self.head.decode("utf-8", "replace")
        if dropped <= 0:
            return head + self.tail.decode("utf-8", "replace")
        marker = f"\n[... {dropped} bytes dropped by the sandbox ...]\n"
        return head + marker + self.tail.decode("utf-8", "replace")


@dataclass
class RawOutcome:
    """What a backend observed; `finish` interprets it."""

    exit_code: int | None
    """Exit status, negative for a signal."""
    stdout: OutputCapture
    stderr: OutputCapture
    duration_s: float
    killed: Killed | None = None
    peak_memory_mb: float | None = None
    oom_reported: bool = False
    """The engine itself says the memory limit was hit (Docker's OOMKilled)."""
    files: dict[str, bytes] = field(default_factory=dict)
    value: object = None


def finish(raw: RawOutcome, limits: SandboxLimits, backend: str, isolation: list[str]) -> SandboxResult:
    """Classify a raw outcome: the one place where statuses and reasons are decided."""
    code = raw.exit_code
    stderr = raw.stderr.text()
    tail = raw.stderr.tail.decode("utf-8", "replace") or stderr[-4000:]
    status: Status
    if raw.killed == "cancelled":
        status, reason = "killed", "cancelled by the caller; the whole process tree was killed"
    elif raw.killed == "timeout":
        status, reason = "timeout", f"wall-clock limit of {limits.timeout_s:g} s reached; process tree killed"
    elif raw.killed == "output":
        status = "killed"
        reason = f"wrote more than {limits.output_kill_bytes} bytes of output; process tree killed"
    elif raw.killed == "cpu" or code in (-signal.SIGXCPU, 128 + signal.SIGXCPU):
        status, reason = "timeout", f"CPU-time limit of {limits.cpu_seconds:g} s reached"
    elif raw.oom_reported or raw.killed == "oom" or (code not in (0, None) and "MemoryError" in tail):
        status, reason = "oom", f"memory limit of {limits.memory_mb} MB reached"
    elif code == 0:
        status, reason = "ok", "exited with status 0"
    elif code is not None and code < 0:
        name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else str(-code)
        status, reason = "killed", f"ended by signal {name}"
    else:
        status, reason = "error", f"exited with status {code}"
    return SandboxResult(
        status=status,
        exit_code=code,
        stdout=redact(raw.stdout.text()),  # untrusted text: no secret leaves the sandbox in it
        stderr=redact(stderr),
        duration_s=round(raw.duration_s, 4),
        peak_memory_mb=None if raw.peak_memory_mb is None else round(raw.peak_memory_mb, 1),
        reason=redact(reason),
        backend=backend,
        isolation=isolation,
        files=raw.files,
        value=raw.value,
    )


def collect_files(workdir: Path, patterns: list[str], max_bytes: int) -> dict[str, bytes]:
    """Files under `workdir` matching `patterns` (regular files only, symlinks never followed)."""
    found: dict[str, bytes] = {}
    if not patterns:
        return found
    budget = max_bytes
    for path in sorted(workdir.rglob("*")):
        rel = path.relative_to(workdir).as_posix()
        if path.is_symlink() or not path.is_file() or not any(fnmatch.fnmatch(rel, p) for p in patterns):
            continue
        data = path.read_bytes()[: max(budget, 0)]
        budget -= len(data)
        found[rel] = data
    return found


def write_files(workdir: Path, request: SandboxRequest) -> None:
    """The request's files (and its code as main.py) into the work dir."""
    files: dict[str, str | bytes] = dict(request.files)
    if request.code is not None:
        files["main.py"] = request.code
    for name, content in files.items():
        path = workdir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)


def job_payload(request: SandboxRequest) -> dict[str, object]:
    """The job as `sandbox.worker` reads it (the same for every backend that runs the worker)."""
    limits = request.limits
    return {
        "kind": request.kind, "code": request.code, "command": request.command, "call": request.call,
        "kwargs": request.kwargs, "env": request.env,
        "limits": {**limits.model_dump(), "cpu_seconds": limits.cpu_seconds},
    }  # fmt: skip


def signal_code(code: int) -> int:
    """Wrappers (bwrap, unshare, container engines) report a child killed by signal N as 128 + N; turn
    that back into -N as Python's subprocess does."""
    return 128 - code if 128 < code < 128 + 65 else code
