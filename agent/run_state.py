"""The one fold from a run's event log to what is known of the run: the runner on resume, the TUI, the
console, the report and `disco resume` all read it instead of each walking the log its own way.

`RunState.apply(event)` takes one event (in log order); `RunState.of(events)` folds a whole log. It holds
facts, not presentation: which commands were applied, what each candidate got to, the jobs and their
latest state, the resources used, the step running now. Views (the TUI's lines, the console's, the
report's tables) are built from it and from the event at hand.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from agent.control import Command, parse_budget
from agent.events import (
    CandidatePayload,
    CheckPayload,
    EvaluationPayload,
    Event,
    EvidencePayload,
    HumanPayload,
    JobPayload,
    LlmPayload,
    NodePayload,
    ProgressPayload,
    RunPayload,
)
from tools.jobs.models import TERMINAL

EVALUATOR_NODES = ("check", "confirm")
"""Nodes whose whole duration is evaluator work (sandboxed checks; the extra seeds of evidence); the
`evaluate` node's share comes from its `evaluation` event instead."""
_STEP_RE = re.compile(r"step (\d+)/(\d+)")


@dataclass
class JobInfo:
    """A GPU job as its events tell it: the submission, then the latest news of the queue's poll."""

    id: str
    candidate: str | None
    state: str
    submitted: Event
    cursor: dict[str, Any] = field(default_factory=dict)
    message: str = ""
    step: int | None = None
    total: int | None = None
    """The trainer's `step n/N`, from the latest log line that says it."""

    @property
    def finished(self) -> bool:
        return self.state in TERMINAL


@dataclass
class RunState:
    commands: list[Command] = field(default_factory=list)
    """The control commands applied, in order."""
    consumed: list[str] = field(default_factory=list)
    """approve / deny decisions that a GPU-job approval used."""
    question: Any = None
    """What the run waits for the person to approve or deny (None once a decision is used)."""
    known: list[str] = field(default_factory=list)
    """Candidate ids in the order they first appeared."""
    names: dict[str, str] = field(default_factory=dict)
    recorded: set[str] = field(default_factory=set)
    """Candidate ids with a `candidate` event (a re-run of `record` logs once)."""
    evaluated: set[str] = field(default_factory=set)
    """Candidate ids with an `evaluation` event."""
    evidenced: set[str] = field(default_factory=set)
    """`candidate#round` keys of the `evidence` events (agent.confirm.evidence_key)."""
    jobs: dict[str, JobInfo] = field(default_factory=dict)
    job_news: list[tuple[Event, JobPayload]] = field(default_factory=list)
    """Every job event, including those of jobs never launched (denied, refused)."""
    evaluator_s: float = 0.0
    job_seconds: dict[str, tuple[float, float]] = field(default_factory=dict)
    """Job id → (CPU seconds, GPU seconds) so far: a CPU job counts its cores, a GPU job its GPUs."""
    tokens: int = 0
    """Every model token spent (cached replies cost nothing)."""
    usd: float = 0.0
    failed_tokens: tuple[int, int] = (0, 0)
    """(prompt, completion) tokens of model calls that failed (timeouts, server errors, unusable output):
    the loop's state counts the answered steps only, the budget and status count both."""
    failed_usd: float = 0.0
    model_calls: int = 0
    setup_s: float = 0.0
    """What the run paid once (the task, the workers, the baseline's runs), from progress events."""
    node: str | None = None
    """The step entered last (kept after it is left, until the run ends)."""
    node_candidate: str | None = None
    node_since: datetime | None = None
    in_step: bool = False
    """Between a node's enter and leave events."""
    doing: str = ""
    """What the step running now is doing (its latest progress event)."""
    node_seconds: dict[str, list[float]] = field(default_factory=dict)
    """node → how long each finished run of it took."""
    resumes_at: tuple[str, str] | None = None
    """(candidate, node) of a candidate entered but not recorded: where a resume goes on."""
    baseline: str | None = None
    """What the target pairs candidates against (carried by evaluation and candidate events)."""
    ended: RunPayload | None = None
    events: int = 0
    unreadable: int = 0

    @classmethod
    def of(cls, events: Iterable[Event]) -> RunState:
        state = cls()
        for event in events:
            state.apply(event)
        return state

    # ------------------------------------------------------------------ what the control commands add up to
    def _args(self, action: str) -> list[str]:
        out: list[str] = []
        for c in self.commands:
            if c.action == action and c.arg not in out:
                out.append(c.arg)
        return out

    @property
    def hints(self) -> list[str]:
        return self._args("hint")

    @property
    def pinned(self) -> list[str]:
        return self._args("pin")

    @property
    def vetoed(self) -> list[str]:
        return self._args("veto")

    @property
    def budget_changes(self) -> dict[str, float | None]:
        out: dict[str, float | None] = {}
        for c in self.commands:
            if c.action == "budget":
                out.update(parse_budget(c.arg))
        return out

    # ------------------------------------------------------------------ resources
    @property
    def cpu_s(self) -> float:
        return self.evaluator_s + sum(c for c, _ in self.job_seconds.values())

    @property
    def gpu_s(self) -> float:
        return sum(g for _, g in self.job_seconds.values())

    # ------------------------------------------------------------------ the fold
    def apply(self, event: Event) -> None:
        self.events += 1
        cid = event.candidate
        if cid and cid not in self.known:
            self.known.append(cid)
        try:
            data = event.data
        except ValueError:  # a line that does not fit its kind (hand-edited): skipped, like a torn one
            self.unreadable += 1
            return
        match data:
            case NodePayload():
                self._node(event, data)
            case ProgressPayload():
                self.doing = data.what
                self.setup_s += data.setup_s or 0.0
            case LlmPayload():
                self.model_calls += 1
                if not data.cached:
                    self.tokens += data.prompt_tokens + data.completion_tokens
                    self.usd += data.usd or 0.0
                    if data.error:
                        prompt, completion = self.failed_tokens
                        self.failed_tokens = (
                            prompt + data.prompt_tokens,
                            completion + data.completion_tokens,
                        )
                        self.failed_usd += data.usd or 0.0
            case CheckPayload():
                pass
            case EvaluationPayload():
                self.evaluator_s += data.seconds
                self.baseline = data.baseline or self.baseline
                if cid:
                    self.evaluated.add(cid)
            case EvidencePayload():
                if cid:
                    self.evidenced.add(f"{cid}#{data.round}")
            case CandidatePayload():
                self.baseline = data.baseline or self.baseline
                if cid:
                    self.recorded.add(cid)
                    self.names[cid] = data.name or self.names.get(cid, "")
                    if self.resumes_at and self.resumes_at[0] == cid:
                        self.resumes_at = None  # recorded: the next candidate starts afresh
            case JobPayload():
                self._job(event, data)
            case HumanPayload():
                if data.command is not None:
                    self.commands.append(data.command)
                if data.question is not None:
                    self.question = data.question
                if data.consumed:
                    self.consumed.append(data.consumed)
                    self.question = None
            case RunPayload():
                if data.phase == "end":
                    self.ended, self.node, self.in_step = data, None, False
                elif data.phase == "session":
                    self.ended = None

    def _node(self, event: Event, data: NodePayload) -> None:
        if data.phase in ("enter", "leave"):
            self.doing = ""
        if data.phase == "enter":
            self.node, self.node_candidate, self.node_since, self.in_step = (
                data.node,
                event.candidate,
                event.time,
                True,
            )
            if event.candidate:
                self.resumes_at = (event.candidate, data.node)
        elif data.phase == "leave":
            self.in_step = False
            if data.seconds is not None:
                self.node_seconds.setdefault(data.node, []).append(data.seconds)
                if data.node in EVALUATOR_NODES:
                    self.evaluator_s += data.seconds
        elif data.node == "design" and event.candidate and data.name:
            self.names[event.candidate] = data.name

    def _job(self, event: Event, data: JobPayload) -> None:
        self.job_news.append((event, data))
        if not data.job:
            return
        if data.gpu_s is not None:
            self.job_seconds[data.job] = (data.cpu_s or 0.0, data.gpu_s)
        known = self.jobs.get(data.job)
        if known is None:
            known = self.jobs[data.job] = JobInfo(data.job, event.candidate, data.state, event)
        known.state = data.state or known.state
        known.cursor = data.cursor or known.cursor
        known.message = data.message or data.reason or known.message
        for line in data.log:
            if m := _STEP_RE.search(line):
                known.step, known.total = int(m[1]), int(m[2])

    def open_jobs(self) -> dict[str, JobInfo]:
        """The jobs not yet finished: whose news a runner still has to poll."""
        return {k: j for k, j in self.jobs.items() if not j.finished}
