"""What the runner does while the model endpoint fails: back off, then pause and retry the step now and
then, and give up (a stop, with the reason) after the configured total wait. Never a crash, never an
endless retry; the person's commands work throughout (the runner's waits apply them)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

from agent.config import EndpointWaitConfig
from agent.events import ErrorPayload, EventLog, HumanPayload
from agent.models import ModelError
from agent.models.base import EndpointState
from agent.stop import StopRun


@dataclass
class Wait:
    """What the runner shows while it waits for the endpoint, and for how long it waits."""

    state: Literal["waiting", "paused"]
    reason: str
    seconds: float


def minutes(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


class EndpointWatch:
    def __init__(self, config: EndpointWaitConfig, backoff_s: tuple[float, ...], events: EventLog) -> None:
        self.config = config
        self.backoff_s = backoff_s
        self.events = events
        self.down_since: float | None = None
        """When the endpoint started failing (monotonic), while it is down."""
        self.outage = ""
        """Why the run is paused for the endpoint, while it is."""
        self.state: EndpointState = "ok"
        """ok | slow | down | rate-limited: what status.json says of the endpoint."""

    def down(self, exc: ModelError, failures: int, run_id: str) -> Wait:
        """The `failures`-th failure in a row: log it, and say how long to wait before the step is retried;
        raises StopRun once the endpoint has failed for longer than the configured wait."""
        w = self.config
        now = time.monotonic()
        if self.down_since is None:
            self.down_since = now
        down_s = now - self.down_since
        self.state = state = exc.endpoint_state
        self.events.append(
            ErrorPayload(
                error_kind=exc.kind,
                endpoint=state,
                message=str(exc),
                attempt=failures,
                down_s=round(down_s, 1),
            )
        )
        limit_s = None if w.max_wait_hours is None else w.max_wait_hours * 3600
        if limit_s is not None and down_s >= limit_s:
            raise StopRun(
                "stopped",
                f"the model endpoint has been failing for {minutes(down_s)} (limit {w.max_wait_hours:g} h): "
                f"{exc}; `disco resume {run_id}` when it answers again",
            )
        left = float("inf") if limit_s is None else limit_s - down_s
        if failures <= len(self.backoff_s):
            wait = self.backoff_s[failures - 1]
            return Wait("waiting", f"model endpoint {state}, retrying in {wait:g} s: {exc}", min(wait, left))
        if not self.outage:
            self.events.append(
                HumanPayload(message=f"paused: the model endpoint is {state}; retrying it", auto=True)
            )
        until = "for ever" if limit_s is None else f"up to {w.max_wait_hours:g} h"
        self.outage = (
            f"model endpoint {state} for {minutes(down_s)}: {exc}; the step is retried every "
            f"{w.probe_every_s:g} s {until}, and the run goes on by itself when it answers"
        )
        return Wait("paused", self.outage, min(w.probe_every_s, left))

    def back(self) -> None:
        """A step went through: if the endpoint was failing, say it answers again."""
        if self.down_since is None:
            return
        down_s = time.monotonic() - self.down_since
        self.events.append(
            HumanPayload(message=f"the model endpoint answers again after {minutes(down_s)}", auto=True)
        )
        self.down_since, self.outage, self.state = None, "", "ok"
