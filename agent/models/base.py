"""Types shared by the live client and the recorder: what one call cost, and how a call failed."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

ErrorKind = Literal[
    "unreachable",  # nothing answers at the endpoint (connection refused, DNS): a run state, back off
    "timeout",  # no token for timeout_s (a stall): the endpoint is slow or stuck, not down; never re-sent
    "rate_limited",  # 429 after the SDK's retries
    "server",  # 5xx after the SDK's retries
    "empty",  # the model answered nothing, fix rounds included
    "malformed",  # the answer never validated against the schema, fix rounds included
    "refused",  # the server rejected the request (400) or the model refused to answer
    "auth",  # 401/403: a bad or missing key
    "not_found",  # 404: an unknown model name, or a base_url without /v1
    "replay_missing",  # a replayed run has no exchange for this step
    "too_long",  # the prompt does not fit the server's context window with room for a reply
]
Actor = Literal["candidate", "endpoint", "person"]
"""Who must act on a model failure: the candidate fails with the reason and the run goes on; the runner
waits for the endpoint (backs off, pauses, probes); or the person must fix the configuration (the run
stops, saying what to fix)."""
WHO_ACTS: dict[str, Actor] = {
    "malformed": "candidate",
    "empty": "candidate",
    "refused": "candidate",
    "replay_missing": "candidate",
    "timeout": "endpoint",
    "unreachable": "endpoint",
    "server": "endpoint",
    "rate_limited": "endpoint",
}
EndpointState = Literal["ok", "slow", "down", "rate-limited"]
ENDPOINT_STATES: dict[str, EndpointState] = {
    "timeout": "slow",  # it took the request and then sent no token for timeout_s
    "unreachable": "down",
    "server": "down",
    "rate_limited": "rate-limited",
}
"""How the endpoint is, for a person, after a failure the runner waits out."""


class CallUsage(BaseModel):
    """Tokens, cost and time of one `ask`, summed over its attempts (fix rounds included)."""

    model: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    usd: float | None = None
    """None when the settings carry no prices (a local server, or prices unknown)."""
    latency_s: float = 0.0
    attempts: int = 0
    """HTTP calls made for this ask; the SDK's own retries of one call are not counted."""
    cached: bool = False
    """True when the answer came from an exchange log (resume or replay): nothing new was spent."""
    estimated_tokens: int = 0
    """Of the tokens above, those counted here because the server said nothing: calls that failed or were
    abandoned after the server took the prompt (a timeout: it may have generated up to the cap)."""


class UsageTotals(BaseModel):
    """Running totals of one model instance, for budgets and the report."""

    calls: int = 0
    cached_calls: int = 0
    failed_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    usd: float | None = None
    latency_s: float = 0.0

    def add(self, usage: CallUsage, *, failed: bool = False) -> None:
        self.calls += 1
        self.cached_calls += usage.cached
        self.failed_calls += failed
        self.prompt_tokens += usage.prompt_tokens
        self.completion_tokens += usage.completion_tokens
        if usage.usd is not None:
            self.usd = (self.usd or 0.0) + usage.usd
        self.latency_s += usage.latency_s


class ModelError(Exception):
    """A model call that failed in a way the run must handle: `kind` says how, the message in a sentence.

    Carries the usage spent before the failure (failed fix rounds still cost tokens).
    """

    def __init__(self, kind: ErrorKind, message: str, usage: CallUsage | None = None) -> None:
        super().__init__(message)
        self.kind: ErrorKind = kind
        self.message = message
        self.usage = usage

    @property
    def who_acts(self) -> Actor:
        return WHO_ACTS.get(self.kind, "person")

    @property
    def endpoint_state(self) -> EndpointState:
        """slow | down | rate-limited for a failure the runner waits out ("ok" for any other)."""
        return ENDPOINT_STATES.get(self.kind, "ok")

    def __reduce__(self) -> tuple[type[ModelError], tuple[ErrorKind, str, CallUsage | None]]:
        # Keeps the error picklable across processes (LangGraph checkpoints, worker pools).
        return (type(self), (self.kind, self.message, self.usage))
