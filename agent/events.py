"""The run's append-only event log (`events.jsonl`): what the TUI, the report and `disco resume` read.

One JSON object per line, flushed and fsync'd before `append` returns, so that an event that was
written survives a `kill -9`. A kill in the middle of a write leaves a torn last line: readers skip it
and the next writer cuts it off before appending, so the log stays one object per line.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from sandbox.redact import redact_obj

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


class Event(BaseModel):
    seq: int
    time: datetime = Field(default_factory=lambda: datetime.now(UTC))
    run: str
    kind: EventKind
    candidate: str | None = None
    payload: dict[str, Any] = Field(default_factory=dict)


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

    def append(self, kind: EventKind, candidate: str | None = None, **payload: Any) -> Event:
        # Payloads quote candidates (errors, check messages, reasons): the log, the TUI and the report
        # read them, so every string is redacted and capped here, once for every writer.
        payload = redact_obj(payload, MAX_PAYLOAD_CHARS)
        with self._lock:
            event = Event(seq=self._seq, run=self.run_id, kind=kind, candidate=candidate, payload=payload)
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
