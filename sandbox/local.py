"""The default backend: a local, daemon-free sandbox (bubblewrap or unshare, rlimits, a separate uid).

Each run takes a warm worker (see `sandbox.pool`), hands it the job, and supervises it from the calling
thread: output drained and capped, the wall clock, the output flood limit and cancellation enforced by
SIGKILL of the whole tree, peak memory sampled from /proc and taken from wait4's rusage.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import IO, Any, Literal

from pydantic import BaseModel

from sandbox.base import (
    OutputCapture,
    RawOutcome,
    collect_files,
    finish,
    job_payload,
    policy_refusal,
    signal_code,
    write_files,
)
from sandbox.isolation import UNSAFE_HINT, Level, best_level, can_drop_uid, describe, probe, unsafe_opted_in
from sandbox.jail import probe_jail
from sandbox.models import RESULT_FILE, BackendReport, SandboxRequest, SandboxResult
from sandbox.pool import WarmPool, Worker, WorkerStartError, discard, kill_tree
from sandbox.registry import SandboxUnavailable

POLL_S = 0.02


class LocalConfig(BaseModel):
    """Settings of the local backend."""

    isolation: Literal["auto", "bwrap", "unshare", "none"] = "auto"
    """`auto` takes the strongest level that works on this host (see `sandbox.isolation`)."""
    warm: int = 1
    """Workers kept ready per preload set (0: every run starts cold)."""
    uid_base: int = 61_000
    """First uid of the range given to sandboxes when running as root."""


class LocalSandbox:
    """Runs requests in local sandboxed processes; thread-safe, one warm pool per instance."""

    name = "local"

    def __init__(self, config: LocalConfig | None = None, **settings: Any) -> None:
        self.config = config or LocalConfig(**settings)
        self._pool: WarmPool | None = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ set-up
    @property
    def level(self) -> Level:
        """The level runs get; only bubblewrap unless the user opted in to weaker isolation."""
        if self.config.isolation == "auto":
            level = best_level()
        else:
            level = self.config.isolation
            ok, why = probe()[level]
            if not ok:
                raise SandboxUnavailable(f"isolation level {level!r} is unavailable here: {why}")
        if level != "bwrap" and not unsafe_opted_in():
            why = probe()["bwrap"][1] or f"isolation level {level!r} was configured"
            raise SandboxUnavailable(
                "the local sandbox runs candidate code only inside bubblewrap with namespaces, seccomp and "
                f"an allow-list of mounts, which is unavailable here ({why}); to accept weaker isolation "
                f"anyway, opt in with {UNSAFE_HINT}"
            )
        return level

    def pool(self) -> WarmPool:
        with self._lock:
            if self._pool is None:
                level = self.level
                self._pool = WarmPool(level, can_drop_uid(level)[0], self.config.uid_base, self.config.warm)
            return self._pool

    def isolation(self) -> list[str]:
        level = self.level
        return [f"level: {level}", *describe(level, can_drop_uid(level)[0])]

    def prewarm(self, preload: tuple[str, ...] = (), wait: bool = False) -> None:
        """Start workers for `preload` now so that the first run is already warm."""
        self.pool().prewarm(preload, wait)

    # ------------------------------------------------------------------ running
    def run(self, request: SandboxRequest, cancel: threading.Event | None = None) -> SandboxResult:
        refused = policy_refusal(request, self.name)
        if refused is not None:
            return refused
        try:
            worker = self.pool().take(request.preload, request.shared_dirs)
        except WorkerStartError as exc:
            raise SandboxUnavailable(f"the local sandbox could not start a worker: {exc}") from None
        try:
            write_files(worker.workdir, request)
            if worker.uid is not None:
                _chown_tree(worker.workdir, worker.uid)
            raw = _supervise(worker, request, cancel)
            limit = request.limits.max_output_bytes * 16
            raw.files = collect_files(worker.workdir, request.return_files, limit)
            result_file = worker.workdir / RESULT_FILE
            if request.kind == "call" and result_file.is_file() and not result_file.is_symlink():
                try:
                    raw.value = json.loads(result_file.read_text(encoding="utf-8"))
                except (ValueError, UnicodeDecodeError):
                    raw.value = None
        finally:
            discard(worker)
        return finish(raw, request.limits, self.name, self.isolation())

    def doctor(self) -> BackendReport:
        level = self.level
        uid_ok, uid_why = can_drop_uid(level)
        warnings = [f"{lvl}: {why}" for lvl, (ok, why) in probe().items() if not ok]
        if not uid_ok:
            warnings.append(uid_why)
        warnings += [w.removeprefix("WARNING: ") for w in describe(level, uid_ok) if w.startswith("WARNING")]
        jail_ok, jail_why = probe_jail()
        jail = (
            "training jail (forked children): works, with the same allow-list, namespaces, seccomp and no "
            "capabilities"
            if jail_ok
            else f"training jail (forked children): REFUSED here ({jail_why})"
        )
        if not jail_ok:
            warnings.append(jail)
        limits = ["wall clock", "cpu seconds", "address space", "file size", "open files", "output"]
        nproc = uid_ok or (level == "bwrap" and os.geteuid() != 0)  # per uid, or per user namespace
        return BackendReport(
            backend=self.name,
            available=True,
            detail=f"isolation level {level}: " + "; ".join([*describe(level, uid_ok), jail]),
            network_isolated=level in ("bwrap", "unshare"),
            filesystem_readonly=level == "bwrap",
            pid_namespace=level in ("bwrap", "unshare"),
            separate_uid=uid_ok,
            limits_enforced=[*limits, "processes"] if nproc else limits,
            warnings=warnings,
        )

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()


def _chown_tree(root: Path, uid: int) -> None:
    """Hand the request's files to the sandbox's uid (the work dir itself stays group root, see
    `sandbox.pool.start_worker`)."""
    for path in root.rglob("*"):
        os.lchown(path, uid, uid)


def _drain(stream: IO[bytes], capture: OutputCapture, total: list[int]) -> None:
    fd = stream.fileno()
    try:
        while chunk := os.read(fd, 65536):
            capture.feed(chunk)
            total[0] += len(chunk)
    except OSError:  # closed under us by `discard` after a run whose leftovers held the pipe
        return


def _tree_rss_mb(pid: int) -> float:
    """Resident memory of `pid` and its descendants, from /proc (best effort)."""
    total, stack = 0, [pid]
    while stack:
        p = stack.pop()
        try:
            with open(f"/proc/{p}/statm", encoding="ascii") as fh:
                total += int(fh.read().split()[1])
            with open(f"/proc/{p}/task/{p}/children", encoding="ascii") as fh:
                stack.extend(int(c) for c in fh.read().split())
        except (OSError, ValueError):
            continue
    return total * os.sysconf("SC_PAGE_SIZE") / 2**20


def _supervise(worker: Worker, request: SandboxRequest, cancel: threading.Event | None) -> RawOutcome:
    """Send the job and watch it until it ends or must be killed."""
    proc, limits = worker.proc, request.limits
    out, err = OutputCapture(limits.max_output_bytes), OutputCapture(limits.max_output_bytes)
    total = [0]
    readers = [
        threading.Thread(target=_drain, args=(proc.stdout, out, total), daemon=True),
        threading.Thread(target=_drain, args=(proc.stderr, err, total), daemon=True),
    ]
    for t in readers:
        t.start()
    status: list[tuple[int, int, object]] = []
    waiter = threading.Thread(target=lambda: status.append(os.wait4(proc.pid, 0)), daemon=True)
    job = job_payload(request)
    assert proc.stdin is not None
    begin = time.monotonic()
    try:
        proc.stdin.write(json.dumps(job).encode() + b"\n")
        proc.stdin.close()
    except BrokenPipeError:
        pass
    waiter.start()
    killed, peak, deadline = None, 0.0, begin + limits.timeout_s
    while waiter.is_alive():
        waiter.join(POLL_S)
        if not waiter.is_alive():
            break
        if cancel is not None and cancel.is_set():
            killed = "cancelled"
        elif total[0] > limits.output_kill_bytes:
            killed = "output"
        elif time.monotonic() > deadline:
            killed = "timeout"
        if killed:
            kill_tree(worker)
            waiter.join()
            break
        peak = max(peak, _tree_rss_mb(proc.pid))
    duration = time.monotonic() - begin
    kill_tree(worker)  # whatever the run left behind (daemons included) dies with it
    for t in readers:
        t.join(timeout=2.0)
    _, wstatus, usage = status[0]
    proc.returncode = code = os.waitstatus_to_exitcode(wstatus)
    if worker.level != "none":
        code = signal_code(code)
    peak = max(peak, getattr(usage, "ru_maxrss", 0) / 1024)
    return RawOutcome(
        exit_code=code,
        stdout=out,
        stderr=err,
        duration_s=duration,
        killed=killed,
        peak_memory_mb=peak,
    )
