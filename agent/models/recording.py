"""Every model exchange of a run, on disk: the resume cache and the source of replays.

`runs/<id>/exchanges.jsonl` holds one JSON line per `ask`, flushed and fsync'd before the answer is
used, so a run killed with -9 keeps every answer it acted on. A torn last line (killed mid-write) is
skipped when the file is read, and the next append starts on a fresh line.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, Field, ValidationError

from agent.models.base import CallUsage, ErrorKind, ModelError
from sandbox.redact import redact_obj

T = TypeVar("T", bound=BaseModel)


class Exchange(BaseModel):
    """One `ask`: what was sent, what came back, what it cost, and how it failed if it did."""

    key: str
    """The step this answers (e.g. "cand-0007/design"): what a resumed run looks it up by."""
    model: str
    messages: list[dict[str, Any]]
    """The conversation of the last attempt, fix rounds included."""
    reply: str
    """The model's last raw reply (the tool-call arguments in function-calling mode)."""
    parsed: dict[str, Any] | None = None
    """The validated answer; None for a failed ask."""
    usage: CallUsage
    error: str | None = None
    error_kind: ErrorKind | None = None
    at: datetime = Field(default_factory=lambda: datetime.now(UTC))

    @property
    def ok(self) -> bool:
        return self.error is None and self.parsed is not None


class ExchangeLog:
    """An append-only JSONL file of exchanges, indexed by key in memory."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.skipped_lines = 0
        """Lines that did not parse (a torn write); they are ignored, never repaired in place."""
        self._lock = threading.Lock()
        self._exchanges: list[Exchange] = []
        self._ends_clean = True  # False when the file ends inside a line: the next append adds "\n" first
        self._load()

    def _load(self) -> None:
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        self._ends_clean = not data or data.endswith(b"\n")
        for line in data.splitlines():
            if not line.strip():
                continue
            try:
                self._exchanges.append(Exchange.model_validate_json(line))
            except ValidationError:
                self.skipped_lines += 1

    def append(self, ex: Exchange) -> None:
        """Write one exchange, redacted, and make it durable before returning. The prompts were redacted
        when rendered; this is the net for anything else that quotes a candidate (a model echoing one)."""
        ex = redact_obj(ex)
        line = ex.model_dump_json() + "\n"
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as f:
                if not self._ends_clean:
                    f.write("\n")
                    self._ends_clean = True
                f.write(line)
                f.flush()
                os.fsync(f.fileno())
            self._exchanges.append(ex)

    def get(self, key: str) -> Exchange | None:
        """The latest successful exchange for `key`; failed ones are never reused."""
        with self._lock:
            return next((ex for ex in reversed(self._exchanges) if ex.key == key and ex.ok), None)

    def latest(self, key: str) -> Exchange | None:
        """The latest exchange for `key`, successful or not."""
        with self._lock:
            return next((ex for ex in reversed(self._exchanges) if ex.key == key), None)

    def __iter__(self) -> Iterator[Exchange]:
        with self._lock:
            return iter(list(self._exchanges))

    def __len__(self) -> int:
        return len(self._exchanges)


def cached_answer(ex: Exchange, schema: type[T]) -> T | None:
    """The recorded answer validated against today's schema; None when the schema has changed since."""
    try:
        return schema.model_validate(ex.parsed)
    except ValidationError:
        return None


class ReplayModel:
    """Answers `ask` from another run's exchange log by key: deterministic re-runs without an LLM.

    A key whose recorded ask failed raises the recorded error again; a key that was never recorded
    raises ModelError(kind="replay_missing"). Usage is reported with `cached=True` and no tokens.
    """

    def __init__(self, log: ExchangeLog | Path) -> None:
        self.log = log if isinstance(log, ExchangeLog) else ExchangeLog(log)

    def fits(self, messages: list[dict[str, str]]) -> bool:
        """A replay answers whatever was asked: a prompt never needs cutting to be replayed."""
        return True

    def ask(self, key: str, messages: list[dict[str, str]], schema: type[T]) -> tuple[T, CallUsage]:
        started = time.perf_counter()
        ex = self.log.get(key) or self.log.latest(key)
        if ex is None:
            raise ModelError("replay_missing", f"The recorded run has no exchange for step {key}.")
        usage = CallUsage(model=ex.model, cached=True, latency_s=time.perf_counter() - started)
        if not ex.ok:
            raise ModelError(
                ex.error_kind or "malformed", ex.error or f"Step {key} failed when recorded.", usage
            )
        answer = cached_answer(ex, schema)
        if answer is None:
            raise ModelError(
                "replay_missing",
                f"The recorded answer for step {key} does not match {schema.__name__} any more.",
                usage,
            )
        return answer, usage
