"""`JobQueue`: what the agent's tools and the `disco jobs` CLI call.

One queue per directory (`disco_home()/jobs`). It holds jobs of both backends; `backend` is where new
jobs go unless their spec says otherwise, and its settings (`**backend_config`) are stored with the
queue, so that runners started later — and queues opened later without settings — schedule alike.
Every call first brings the store up to date (`refresh`): finished runners recorded, queued jobs
started, Ray jobs' news pulled in. Nothing runs in the background of the calling process.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from tools.jobs.local import LocalBackend, LocalSettings
from tools.jobs.models import BACKENDS, Job, JobCursor, JobError, JobSpec, JobUpdate
from tools.jobs.store import JobStore
from tools.jobs.streams import read_jsonl, read_lines

SETTINGS = {"local": LocalSettings}
Backend = Any  # LocalBackend | RayBackend: both have check, schedule, cancel, settle, describe


def _settings_model(name: str) -> type:
    if name == "ray":
        from tools.jobs.ray_backend import RaySettings

        return RaySettings
    return SETTINGS[name]


class JobQueue:
    """A durable queue of DPO training jobs; safe to open from several processes at once."""

    def __init__(self, root: Path, backend: str = "local", **backend_config: Any) -> None:
        if backend not in BACKENDS:
            raise JobError(f"unknown job backend {backend!r}; known: {', '.join(BACKENDS)}")
        self.store = JobStore(root)
        self.backend = backend
        stored = self.store.get_setting(backend)
        if backend_config or stored is None:
            merged = {**(stored or {}), **{k: v for k, v in backend_config.items() if v is not None}}
            try:
                settings = _settings_model(backend).model_validate(merged)
            except ValidationError as exc:
                first = exc.errors()[0]
                raise JobError(f"bad {backend} backend setting {first['loc'][0]}: {first['msg']}") from None
            self.store.put_setting(backend, settings.model_dump(mode="json"))
        self._explicit = {backend: {k: v for k, v in backend_config.items() if v is not None}}
        """Settings given to this constructor: they beat the environment (flags > env > stored)."""
        self._backends: dict[str, Backend] = {}
        self.warnings: list[str] = []
        """Why the last refresh could not update some jobs (e.g. an unreachable Ray cluster)."""

    @property
    def root(self) -> Path:
        return self.store.root

    def _backend(self, name: str) -> Backend:
        if name not in self._backends:
            stored = self.store.get_setting(name) or {}
            if name == "local":
                self._backends[name] = LocalBackend(self.store, LocalSettings.model_validate(stored))
            else:
                from tools.jobs.ray_backend import RayBackend, RaySettings

                env = (
                    {"address": os.environ["DISCO_RAY_ADDRESS"]}
                    if os.environ.get("DISCO_RAY_ADDRESS")
                    else {}
                )
                settings = RaySettings.model_validate(stored | env | self._explicit.get(name, {}))
                self._backends[name] = RayBackend(self.store, settings)
        return self._backends[name]

    # ------------------------------------------------------------------ the API
    def submit(self, spec: JobSpec) -> Job:
        """The job for `spec`: created and started if new, the existing one (whatever its state) if not.

        Raises JobError for a spec that is bad or could never run on the backend; a candidate that
        fails while training is a failed job, not an error.
        """
        from targets.dpo.loss_policy import check_loss_policy

        existing = self.store.get(spec.job_id())
        if existing is None:
            violations = check_loss_policy(spec.candidate_code)
            if violations:
                raise JobError("the candidate breaks the sandbox policy: " + violations[0].message)
            spec = spec.normalized()
            existing = self.store.get(spec.job_id())
        if existing is not None:
            self.refresh()
            return self.store.require(existing.id)
        name = spec.backend or self.backend
        backend = self._backend(name)
        backend.check(spec)
        job, _created = self.store.insert(spec, name)
        backend.schedule()
        return self.store.require(job.id)

    def get(self, job_id: str) -> Job | None:
        self.refresh()
        return self.store.get(self.store.resolve(job_id)) if self._known(job_id) else None

    def list(self) -> list[Job]:
        self.refresh()
        return self.store.list()

    def cancel(self, job_id: str) -> Job:
        """Cancel a queued or running job (a finished one is returned as it is)."""
        job = self.store.require(self.store.resolve(job_id))
        if not job.terminal:
            backend = self._backend(job.backend)
            backend.cancel(job)
            backend.settle(job.id)
        return self.store.require(job.id)

    def logs(self, job_id: str, since: int = 0) -> tuple[list[str], int]:
        """The job's log lines after byte offset `since`, and the offset to pass next time."""
        job = self.store.require(self.store.resolve(job_id))
        if job.backend != "local" and not job.terminal:
            self.refresh()
        return read_lines(self.store.log_path(job.id), since)

    def metrics(self, job_id: str, since: int = 0) -> tuple[list[dict[str, Any]], int]:
        """The training log steps (step, loss, margins, accuracies...) streamed after `since`."""
        job = self.store.require(self.store.resolve(job_id))
        if job.backend != "local" and not job.terminal:
            self.refresh()
        return read_jsonl(self.store.job_dir(job.id) / "metrics.jsonl", since)

    def poll(self, job_id: str, cursor: JobCursor | None = None) -> JobUpdate:
        """Everything new about a job since `cursor`: its state, log lines and metrics (for the event log)."""
        cursor = cursor or JobCursor()
        self.refresh()
        job = self.store.require(self.store.resolve(job_id))
        lines, log_next = read_lines(self.store.log_path(job.id), cursor.log)
        metrics, metrics_next = read_jsonl(self.store.job_dir(job.id) / "metrics.jsonl", cursor.metrics)
        return JobUpdate(
            job=job, log_lines=lines, metrics=metrics, cursor=JobCursor(log=log_next, metrics=metrics_next)
        )

    def wait(self, job_id: str, timeout_s: float | None = None, poll_s: float = 0.5) -> Job:
        """The job once it has ended, or as it is when `timeout_s` runs out (check `job.terminal`)."""
        job_id = self.store.resolve(job_id)
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            self.refresh()
            job = self.store.require(job_id)
            if job.terminal or (deadline is not None and time.monotonic() >= deadline):
                return job
            time.sleep(poll_s if deadline is None else max(0.0, min(poll_s, deadline - time.monotonic())))

    def refresh(self) -> None:
        """Record what finished, start what fits, pull Ray jobs' news.

        A backend that cannot be reached (a Ray cluster that is down) leaves its jobs as they were and
        says so in `self.warnings`: the other jobs, and what is already recorded, stay readable.
        """
        self.warnings = []
        live = {job.backend for job in self.store.list(states=("queued", "running"))}
        for name in sorted(live):
            try:
                self._backend(name).schedule()
            except JobError as exc:
                self.warnings.append(f"{name} jobs not updated: {exc}")

    def close(self) -> None:
        self.store.close()

    def _known(self, job_id: str) -> bool:
        try:
            self.store.resolve(job_id)
        except JobError:
            return False
        return True
