"""The seam between the agent and what it discovers: a target's prompt material, rules, checks,
evaluators, seed archive and offline proposer. The agent only ever talks to a target through this."""

from __future__ import annotations

from typing import Literal, Protocol

from pydantic import BaseModel, Field

from targets.results import CheckReport, CheckResult


class Interval(BaseModel):
    value: float
    ci_low: float
    ci_high: float


class Evaluation(BaseModel):
    """What an evaluator says of one candidate; a failed evaluation is data, never an exception."""

    status: Literal["ok", "failed"]
    fitness: Interval | None = None
    """The scalar fitness with its confidence interval (None when failed)."""
    vs_baseline: Interval | None = None
    """The paired difference to the target's baseline on the same seeds and items, when it has one."""
    metrics: dict[str, float] = Field(default_factory=dict)
    reason: str = ""
    """Why it failed (diverged at β=…, every run errored, …), in words a model can act on."""
    seconds: float = 0.0
    """Time spent inside the evaluator (training and scoring), for the agent's overhead accounting."""
    details: dict = Field(default_factory=dict)
    """Target-specific results (per-β frontier, per-seed runs) kept in the candidate's folder."""


class SeedCandidate(BaseModel):
    """A known candidate of the target (for the DPO target: a zoo loss)."""

    name: str
    thought: str
    code: str


class ParentInfo(BaseModel):
    """What a proposer may know of an earlier candidate."""

    id: str
    name: str
    code: str
    fitness: float | None = None


class Proposal(BaseModel):
    """An offline proposer's candidate, in the same fields as a model's Draft."""

    name: str
    thought: str
    code: str
    parent_ids: list[str] = Field(default_factory=list)


class OfflineProposer(Protocol):
    """Designs candidates without a model: mutation and recombination of the target's building blocks."""

    def propose(self, index: int, parents: list[ParentInfo]) -> Proposal: ...

    def repair(self, index: int, code: str, failures: list[CheckResult], attempt: int) -> Proposal: ...


class Target(Protocol):
    """A discovery target. Implementations: targets.dpo.target.DPOTarget, later targets.agents."""

    name: str
    description: str
    """What is being discovered and what makes a candidate good (for the design prompt)."""
    interface: str
    """The exact form of a candidate, with an example (for the design prompt)."""
    rules: list[str]
    """What a candidate must not do (imports, I/O, state); the reflection's second round checks them."""
    fitness_meaning: str

    def policy(self, code: str) -> CheckResult: ...

    def check(self, code: str) -> CheckReport: ...

    def fingerprint(self, code: str) -> list[float] | None: ...

    def evaluate(self, code: str, name: str) -> Evaluation: ...

    def seeds(self) -> list[SeedCandidate]: ...

    def offline_proposer(self, seed: int) -> OfflineProposer: ...

    def close(self) -> None: ...
