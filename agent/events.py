"""The run's append-only event log (`events.jsonl`): what the TUI, the report and `disco resume` read.

One JSON object per line, flushed and fsync'd before `append` returns, so that an event that was
written survives a `kill -9`. A kill in the middle of a write leaves a torn last line: readers skip it
and the next writer cuts it off before appending, so the log stays one object per line.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from agent.control import Command
from memory.records import VsBaseline
from sandbox.redact import redact_obj
from targets.base import Interval

MAX_PAYLOAD_CHARS = 20_000
"""Cap on each string of an event's payload (a candidate's output can be megabytes)."""

EventKind = Literal[
    "run",  # run created / session started / finished, with the final status and why
    "node",  # a graph node entered or left, with its duration
    "llm",  # a model exchange, with tokens, cost and latency
    "tool",  # a tool call and its result
    "check",  # a candidate's check results
    "evaluation",  # a candidate's fitness (or why evaluation failed)
    "evidence",  # the paired bootstrap of a candidate against the incumbent: best, promising or not
    "candidate",  # a candidate recorded, with its final status
    "job",  # a GPU job submitted / updated
    "human",  # a control command applied (pause, hint, veto, …)
    "budget",  # a budget reached, or changed
    "error",  # a system error the run recovered from or stopped on
    "progress",  # what a long step (an evaluation, a race's extra seeds) is doing now, n of N
]


class Payload(BaseModel):
    """What an event says, one model per kind. Every field has a default and unknown fields are kept: a log
    written by an older or newer disco still loads. Producers set only what they know (`exclude_unset`
    on writing), so a line holds what was said, not a page of defaults; fields are declared in the order
    the producers have always written them, so a line is what it was, byte for byte."""

    model_config = ConfigDict(extra="allow")
    kind: ClassVar[EventKind]


class RunPayload(Payload):
    kind: ClassVar[EventKind] = "run"
    phase: Literal["session", "end", ""] = ""
    resumed: bool = False
    model: str = ""
    pid: int | None = None
    unsafe_sandbox: bool = False
    state: str = ""
    """phase end: the run's final state (stopped | finished | failed) and why."""
    reason: str = ""
    candidates: int = 0


class NodePayload(Payload):
    """A node entered or left (`phase`), or what a design / reflection / repair produced (no phase)."""

    kind: ClassVar[EventKind] = "node"
    node: str = ""
    phase: Literal["enter", "leave", ""] = ""
    seconds: float | None = None
    # reflect (its round first; the revised draft's name last)
    round: int = 0
    skipped: bool = False
    why: str = ""
    reflection: str = ""
    # design
    name: str = ""
    thought: str = ""
    hints_used: list[str] = Field(default_factory=list)
    hints_ignored: list[str] = Field(default_factory=list)
    parents: list[str] = Field(default_factory=list)
    model: str = ""
    # repair
    attempt: int = 0
    fed: list[str] = Field(default_factory=list)


class LlmPayload(Payload):
    kind: ClassVar[EventKind] = "llm"
    key: str = ""
    model: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    usd: float | None = None
    """None when the settings carry no prices."""
    latency_s: float = 0.0
    attempts: int = 1
    cached: bool = False
    error: str | None = None
    estimated_tokens: int = 0


class ToolPayload(Payload):
    kind: ClassVar[EventKind] = "tool"
    tool: str = ""
    args: dict[str, Any] = Field(default_factory=dict)
    result: str = ""
    chat: bool = False


class CheckPayload(Payload):
    kind: ClassVar[EventKind] = "check"
    passed: bool = False
    repairs: int = 0
    failures: list[str] = Field(default_factory=list)


class EvaluationPayload(Payload):
    kind: ClassVar[EventKind] = "evaluation"
    status: str = ""
    fitness: Interval | None = None
    vs_baseline: Interval | None = None
    baseline: str | None = None
    reason: str = ""
    seconds: float = 0.0


class EvidencePayload(Payload):
    kind: ClassVar[EventKind] = "evidence"
    verdict: str = ""
    incumbent: str | None = None
    diff: Interval | None = None
    p_better: float | None = None
    p_value: float | None = None
    rule: str = "bootstrap"
    confidence: float | None = None
    seeds: list[int] = Field(default_factory=list)
    round: int = 0
    final: bool = False
    reason: str = ""


class CandidatePayload(Payload):
    kind: ClassVar[EventKind] = "candidate"
    name: str = ""
    status: str = ""
    error: str | None = None
    fitness: Interval | None = None
    vs_baseline: VsBaseline | None = None
    baseline: str | None = None
    repairs: int = 0
    parents: list[str] = Field(default_factory=list)
    tokens: int = 0
    verdict: str | None = None


class JobPayload(Payload):
    """A GPU job submitted, denied or not launched (no `job` then), or a poll's news of it (`cursor`)."""

    kind: ClassVar[EventKind] = "job"
    job: str | None = None
    state: str = ""
    message: str = ""
    reason: str | None = None
    log: list[str] = Field(default_factory=list)
    metrics: list[dict[str, Any]] = Field(default_factory=list)
    cursor: dict[str, Any] | None = None
    seconds: float | None = None
    cpu_s: float | None = None
    gpu_s: float | None = None


class HumanPayload(Payload):
    """A control command applied (`command`), a question waiting for approve / deny, a decision used,
    or a note the runner addresses to the person (`auto`)."""

    kind: ClassVar[EventKind] = "human"
    command: Command | None = None
    consumed: str | None = None
    message: str = ""
    question: Any = None
    auto: bool = False


class BudgetPayload(Payload):
    kind: ClassVar[EventKind] = "budget"
    reason: str = ""


class ErrorPayload(Payload):
    kind: ClassVar[EventKind] = "error"
    step: str | None = None
    """The loop step whose model output was unusable (a candidate's failure, not the run's)."""
    error_kind: str | None = None
    endpoint: str | None = None
    """slow | down | rate-limited: the runner's word on the model endpoint."""
    message: str = ""
    attempt: int | None = None
    down_s: float | None = None
    traceback: str | None = None


class ProgressPayload(Payload):
    kind: ClassVar[EventKind] = "progress"
    what: str = ""
    done: int | None = None
    total: int | None = None
    setup_s: float | None = None


PAYLOADS: dict[str, type[Payload]] = {
    m.kind: m
    for m in (RunPayload, NodePayload, LlmPayload, ToolPayload, CheckPayload, EvaluationPayload,
              EvidencePayload, CandidatePayload, JobPayload, HumanPayload, BudgetPayload, ErrorPayload,
              ProgressPayload)
}  # fmt: skip


P = TypeVar("P", bound=Payload)


class Event(BaseModel):
    seq: int
    time: datetime = Field(default_factory=lambda: datetime.now(UTC))
    run: str
    kind: EventKind
    candidate: str | None = None
    payload: dict[str, Any] = Field(default_factory=dict)
    """As written (JSON); read it as `data`."""

    @cached_property
    def data(self) -> Payload:
        """The payload as its kind's model; a line that does not fit it raises (ValueError)."""
        return PAYLOADS[self.kind].model_validate(self.payload)


def of_kind(events: Iterable[Event], model: type[P]) -> Iterator[tuple[Event, P]]:
    """The events of one kind with their payloads as that kind's model; one that does not fit is skipped
    (a hand-edited line), like a torn one."""
    for event in events:
        if event.kind != model.kind:
            continue
        try:
            data = event.data
        except ValueError:
            continue
        if isinstance(data, model):
            yield event, data


def _cut_torn_tail(path: Path) -> None:
    """Drop a last line that a killed writer left without its newline."""
    if not path.exists() or path.stat().st_size == 0:
        return
    with path.open("rb+") as handle:
        handle.seek(-1, os.SEEK_END)
        if handle.read(1) == b"\n":
            return
        handle.seek(0)
        data = handle.read()
        handle.truncate(data.rfind(b"\n") + 1)


def read_events(path: Path, since: int = 0) -> Iterator[Event]:
    """Events with seq ≥ since; a torn or unreadable line is skipped, never fatal."""
    if not path.exists():
        return
    with path.open("rb") as handle:
        for raw in handle:
            if not raw.endswith(b"\n"):
                break  # torn by a kill mid-write
            try:
                event = Event.model_validate_json(raw)
            except ValueError:
                continue
            if event.seq >= since:
                yield event


class EventLog:
    """Appends events of one run; safe for the threads of one process (one runner per run)."""

    def __init__(self, path: Path, run_id: str, listener: Callable[[Event], None] | None = None) -> None:
        self.path = path
        self.run_id = run_id
        self.listener = listener
        """Called with every event after it is written (the console's progress lines)."""
        self._lock = threading.Lock()
        _cut_torn_tail(path)
        self._seq = sum(1 for _ in read_events(path))

    def append(self, data: Payload, candidate: str | None = None) -> Event:
        # Payloads quote candidates (errors, check messages, reasons): the log, the TUI and the report
        # read them, so every string is redacted and capped here, once for every writer.
        payload = redact_obj(data.model_dump(mode="json", exclude_unset=True), MAX_PAYLOAD_CHARS)
        with self._lock:
            event = Event(
                seq=self._seq, run=self.run_id, kind=data.kind, candidate=candidate, payload=payload
            )
            line = event.model_dump_json() + "\n"
            with self.path.open("a", encoding="utf-8") as handle:
                handle.write(line)
                handle.flush()
                os.fsync(handle.fileno())
            self._seq += 1
        if self.listener is not None:
            self.listener(event)
        return event

    def __iter__(self) -> Iterator[Event]:
        return read_events(self.path)


class EventTail:
    """New events of a log since the last read, by byte offset: each poll reads only what was appended. A
    line without its newline is being written (or was torn by a kill): it is read again next time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0

    def read(self) -> list[Event]:
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return []
        if size < self.offset:  # a writer cut a torn tail that we had not consumed anyway
            self.offset = size
        if size == self.offset:
            return []
        with self.path.open("rb") as handle:
            handle.seek(self.offset)
            data = handle.read(size - self.offset)
        end = data.rfind(b"\n") + 1
        self.offset += end
        out = []
        for raw in data[:end].splitlines():
            try:
                out.append(Event.model_validate_json(raw))
            except ValueError:
                continue
        return out
