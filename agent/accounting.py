"""What a long run must keep track of besides its candidates: CPU and GPU seconds, and a full disk.

The seconds are rebuilt from the event log when a run resumes, so that a `kill -9` loses none of them:
the log is the record, `status.json` only shows it. A full disk is recognised through the exception chain
(the OS's ENOSPC, SQLite's "database or disk is full", Chroma wrapping either), and a small reserve file
in the run directory is given back at that moment so that the runner can still write why it stopped.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from agent.events import Event

DISK_FULL_MARKERS = ("No space left on device", "database or disk is full", "Disk quota exceeded")
EVALUATOR_NODES = ("check", "confirm")
"""Nodes whose whole duration is evaluator work (sandboxed checks; the extra seeds of evidence); the
`evaluate` node's share comes from its `evaluation` event instead."""
RESERVE_BYTES = 256 * 1024
"""Enough for the final status, the last events and SQLite's journal of a read."""


class ResourceMeter:
    """CPU and GPU seconds of one run: evaluators' time from the events, jobs' time from their records."""

    def __init__(self) -> None:
        self.evaluator_s = 0.0
        """Seconds inside the target's evaluators, checks and confirmations (on this machine's CPUs)."""
        self.jobs: dict[str, tuple[float, float]] = {}
        """Job id → (CPU seconds, GPU seconds) so far: a CPU job counts its cores, a GPU job its GPUs."""
        self.failed_tokens = (0, 0)
        """(prompt, completion) tokens of model calls that failed (timeouts, server errors, unusable
        output): the loop's state counts the answered steps only, the budget and status count both."""
        self.failed_usd = 0.0

    def add(self, event: Event) -> None:
        p = event.payload
        measured = event.kind == "node" and p.get("node") in EVALUATOR_NODES and p.get("phase") == "leave"
        if event.kind == "evaluation" or measured:
            self.evaluator_s += float(p.get("seconds") or 0.0)
        elif event.kind == "llm" and p.get("error") and not p.get("cached"):
            prompt, completion = self.failed_tokens
            self.failed_tokens = (
                prompt + int(p.get("prompt_tokens") or 0),
                completion + int(p.get("completion_tokens") or 0),
            )
            self.failed_usd += float(p.get("usd") or 0.0)
        elif event.kind == "job" and p.get("job") and "gpu_s" in p:
            self.jobs[p["job"]] = (float(p.get("cpu_s") or 0.0), float(p["gpu_s"]))

    def restore(self, events: Iterable[Event]) -> None:
        for event in events:
            self.add(event)

    def job_seconds(self, job: Any) -> dict[str, float]:
        """The `cpu_s` / `gpu_s` of a job record (tools.jobs.Job) so far, as put into its job events."""
        seconds = job.seconds or 0.0
        gpus = job.spec.resources.gpus
        cpu_s = 0.0 if gpus else seconds * job.spec.resources.cpus
        out = {"seconds": round(seconds, 2), "cpu_s": round(cpu_s, 2), "gpu_s": round(seconds * gpus, 2)}
        self.jobs[job.id] = (out["cpu_s"], out["gpu_s"])
        return out

    @property
    def cpu_s(self) -> float:
        return self.evaluator_s + sum(c for c, _ in self.jobs.values())

    @property
    def gpu_s(self) -> float:
        return sum(g for _, g in self.jobs.values())


def disk_full(exc: BaseException) -> str | None:
    """The first line of the error if `exc` (or what caused it) says the disk is full, else None."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in (errno.ENOSPC, errno.EDQUOT):
            return f"{type(current).__name__}: {current.strerror or current}"
        text = str(current)
        if any(marker in text for marker in DISK_FULL_MARKERS):
            return f"{type(current).__name__}: {text.splitlines()[0][:200]}"
        current = current.__cause__ or current.__context__
    return None


class Reserve:
    """A few hundred KiB held in the run directory and released when the disk is full, so that the final
    status and events can still be written (the ballast-file trick)."""

    def __init__(self, root: Path) -> None:
        self.path = root / "reserve.bin"

    def hold(self) -> None:
        """(Re)create the reserve; raises OSError(ENOSPC) when even that does not fit."""
        if self.path.exists() and self.path.stat().st_size >= RESERVE_BYTES:
            return
        try:
            with self.path.open("wb") as handle:
                handle.write(b"\xa5" * RESERVE_BYTES)  # real bytes: a sparse file would reserve nothing
                handle.flush()
                os.fsync(handle.fileno())
        except OSError:
            self.path.unlink(missing_ok=True)
            raise

    def release(self) -> None:
        self.path.unlink(missing_ok=True)
