"""Structured results of a target's checks: what a model reads to repair a candidate."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from sandbox.redact import redact

MAX_MESSAGE_CHARS = 4000
MAX_TRACEBACK_CHARS = 8000


class CheckResult(BaseModel):
    """One validity check on one candidate.

    `message` is written for the model that must repair the candidate: it says what went wrong and
    where, not only that something did.
    """

    # A check may measure inf or NaN (a loss that overflows): JSON has no such numbers, and pydantic's
    # default writes them as null, which then fails to load; as strings they survive the round trip.
    model_config = ConfigDict(ser_json_inf_nan="strings")

    name: str
    passed: bool
    message: str
    level: Literal["error", "warning", "info"] = "error"
    """`error` fails the candidate; `warning` is reported but does not (e.g. batch dependence)."""
    numbers: dict[str, float] = Field(default_factory=dict)
    """Figures behind the verdict, e.g. the margin at which the loss went NaN."""
    line: int | None = None
    """1-based line of the candidate's code that the message is about, when known."""
    traceback: str | None = None
    cause: Literal["candidate", "infrastructure"] = "candidate"
    """`infrastructure`: what failed is not the candidate's code but what it runs on (the inner model down,
    every call it made failed): no repair is asked for; the run waits for it and checks again."""

    # A message or traceback may quote what the candidate printed or raised: untrusted text, redacted and
    # capped whenever a result is made or loaded (in the sandbox, and again in the parent, which knows the
    # secrets that the sandbox's scrubbed environment does not).
    @field_validator("message")
    @classmethod
    def _redact_message(cls, value: str) -> str:
        return redact(value, MAX_MESSAGE_CHARS)

    @field_validator("traceback")
    @classmethod
    def _redact_traceback(cls, value: str | None) -> str | None:
        return None if value is None else redact(value, MAX_TRACEBACK_CHARS)


class CheckReport(BaseModel):
    """All checks on one candidate; `passed` is true when no error-level check failed."""

    passed: bool
    checks: list[CheckResult]
    fingerprint: list[float] | None = None
    """The candidate's behavioural fingerprint, where its target computes one, from the check that passed:
    the graph carries it to the record, so a run resumed after a kill still has it."""

    @classmethod
    def from_checks(cls, checks: list[CheckResult]) -> CheckReport:
        passed = all(c.passed or c.level != "error" for c in checks)
        return cls(passed=passed, checks=checks)

    def failures(self) -> list[CheckResult]:
        return [c for c in self.checks if not c.passed and c.level == "error"]
