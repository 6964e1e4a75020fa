"""The news of a run's GPU jobs (state, log lines, metrics, seconds used) copied from the job queue into
the run's event log, so that the TUI, the report and the budgets see them; the open jobs and their
cursors come from the log itself (agent.run_state), so a resumed run goes on polling where it was."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from agent.events import EventLog, JobPayload
from agent.run_state import RunState


def job_seconds(job: Any) -> tuple[float, float, float]:
    """The seconds, CPU seconds and GPU seconds of a job record (tools.jobs.Job) so far: a CPU job counts
    its cores, a GPU job its GPUs."""
    seconds = job.seconds or 0.0
    gpus = job.spec.resources.gpus
    cpu_s = 0.0 if gpus else seconds * job.spec.resources.cpus
    return round(seconds, 2), round(cpu_s, 2), round(seconds * gpus, 2)


class JobWatch:
    def __init__(self, state: RunState, events: EventLog, every_s: float = 10.0) -> None:
        self.state = state
        self.events = events
        self.every_s = every_s
        self.open_queue: Callable[[], Any] | None = None
        """Opens the job queue (tools.jobs.JobQueue) on first use, once the services are open."""
        self._last = 0.0

    def poll(self, force: bool = False) -> None:
        """Copy the news of this run's open jobs into the event log (at most every `every_s`)."""
        jobs = self.state.open_jobs()
        if not jobs or self.open_queue is None:
            return
        if not force and time.monotonic() - self._last < self.every_s:
            return
        self._last = time.monotonic()
        from tools.jobs import JobCursor, JobError

        queue = self.open_queue()
        for job_id, info in jobs.items():
            try:
                update = queue.poll(job_id, JobCursor.model_validate(info.cursor))
            except JobError as exc:
                self.events.append(
                    JobPayload(job=job_id, state="failed:crash", message=str(exc), cursor={}), info.candidate
                )
                continue
            if update.log_lines or update.metrics or update.job.state != info.state:
                seconds, cpu_s, gpu_s = job_seconds(update.job)
                news = JobPayload(
                    job=job_id,
                    state=update.job.state,
                    reason=update.job.reason,
                    log=update.log_lines[-20:],
                    metrics=update.metrics[-20:],
                    cursor=update.cursor.model_dump(),
                    seconds=seconds,
                    cpu_s=cpu_s,
                    gpu_s=gpu_s,
                )
                self.events.append(news, info.candidate)
