"""The local backend: jobs run as sandboxed processes on this machine, admitted by free GPU memory.

There is no daemon. `schedule()` is one store transaction that any process may run — the agent, the CLI,
and every job's runner when its job ends: it marks runners that died as failed, asks `admission.admit`
which queued jobs fit now, moves them to running and starts a detached runner for each
(tools/jobs/runner.py). A job that waits for GPU memory held by someone else's process starts at the next
`schedule()` (any queue call, or the end of another job).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from tools.jobs.admission import AdmissionConfig, admit, never_fits
from tools.jobs.gpu import probe_gpus
from tools.jobs.models import Job, JobError, JobSpec, WorkerResult
from tools.jobs.store import JobStore
from tools.processes import process_start

REPO_ROOT = Path(__file__).resolve().parents[2]
_LAUNCHED: list[subprocess.Popen[bytes]] = []
"""Runners this process started: polled now and then so that finished ones do not linger as zombies."""


class LocalSettings(BaseModel):
    """Settings of the local backend, stored with the queue so that every runner schedules alike."""

    cpu_slots: int = Field(default_factory=lambda: max(1, os.cpu_count() or 1), ge=1)
    """CPU cores that CPU jobs may use together (the CPU fallback's concurrency limit)."""
    max_jobs_per_gpu: int = Field(default=4, ge=1)
    gpu_headroom_gb: float = Field(default=1.0, ge=0)
    """Kept free on every GPU (CUDA context, allocator fragmentation)."""
    cache_dir: str | None = None
    """Shared cache of the jobs (reference log-probs, data set Arrow files); default `<root>/cache`."""

    def cache_path(self, root: Path) -> Path:
        return Path(self.cache_dir).expanduser().resolve() if self.cache_dir else root / "cache"

    def admission(self) -> AdmissionConfig:
        return AdmissionConfig(
            cpu_slots=self.cpu_slots,
            max_jobs_per_gpu=self.max_jobs_per_gpu,
            gpu_headroom_gb=self.gpu_headroom_gb,
        )


def runner_alive(runner: dict[str, Any] | None) -> bool:
    if not runner or "pid" not in runner:
        return False
    if runner.get("host") not in (None, socket.gethostname()):
        return True  # another machine's process: not ours to judge
    return process_start(runner["pid"]) == runner.get("start")


def _reap() -> None:
    _LAUNCHED[:] = [p for p in _LAUNCHED if p.poll() is None]


class LocalBackend:
    """Schedules and launches the local jobs of one store."""

    name = "local"

    def __init__(self, store: JobStore, settings: LocalSettings | None = None) -> None:
        self.store = store
        self.settings = settings or LocalSettings()

    def check(self, spec: JobSpec) -> None:
        """Refuse at submission a job that could never start here (one sentence)."""
        gpus = probe_gpus() if spec.resources.gpus else []
        why = never_fits(spec.resources, gpus, self.settings.admission())
        if why:
            raise JobError(why)

    def schedule(self) -> None:
        """Reconcile dead runners, then start every queued job that fits now."""
        _reap()
        queued_gpu = self.store.list(states=("queued",), backend="local")
        gpus = probe_gpus() if any(j.spec.resources.gpus for j in queued_gpu) else []
        with self.store.transaction() as db:
            running = self.store.list(states=("running",), backend="local")
            for job in running:
                if not runner_alive(self.store.runner(job.id)):
                    self._runner_died(db, job)
            running = self.store.list(states=("running",), backend="local")
            queued = self.store.list(states=("queued",), backend="local")
            for job, assignment in admit(queued, running, gpus, self.settings.admission()):
                try:
                    runner = self._launch(job)
                except OSError as exc:
                    self.store.finish(db, job.id, "failed:crash", f"the job's runner could not start: {exc}")
                    continue
                self.store.mark_running(db, job.id, assignment, runner)

    def _launch(self, job: Job) -> dict[str, Any]:
        """Start the job's runner in a new session; it waits for this transaction to commit."""
        log = open(self.store.log_path(job.id), "ab")  # noqa: SIM115 — handed to the child
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
        with log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "tools.jobs.runner", str(self.store.root), job.id],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.store.root,
                start_new_session=True,  # survives the submitter, its terminal and its process group
            )
        _LAUNCHED.append(proc)
        return {"pid": proc.pid, "start": process_start(proc.pid), "host": socket.gethostname()}

    def _runner_died(self, db: Any, job: Job) -> None:
        """A runner that is gone without recording a verdict: take the worker's, if it left one."""
        path = self.store.job_dir(job.id) / "result.json"
        try:
            result = WorkerResult.model_validate_json(path.read_text())
        except (OSError, ValueError):
            result = WorkerResult(
                state="failed:crash",
                reason="the job's runner process died (a machine restart, or it was killed) mid-job",
            )
        self.store.finish(db, job.id, result.state, result.reason, result.traceback, result.metrics)

    def cancel(self, job: Job) -> None:
        with self.store.transaction() as db:
            current = self.store.require(job.id)
            if current.state == "queued":
                self.store.finish(db, job.id, "cancelled", "cancelled before it started")
            elif current.state == "running":
                self.store.request_cancel(db, job.id)
                self.store.append_log(job.id, "cancel requested")

    def settle(self, job_id: str, timeout_s: float = 10.0) -> None:
        """Wait (briefly) for a running job's runner to act on a cancel request."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            job = self.store.require(job_id)
            if job.terminal:
                return
            if not runner_alive(self.store.runner(job_id)):
                self.schedule()
            time.sleep(0.1)

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, **json.loads(self.settings.model_dump_json())}
