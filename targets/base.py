"""The seam between the agent and what it discovers: a target's prompt material, rules, checks,
evaluators, seed archive and offline proposer. The agent only ever talks to a target through this."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Protocol

from pydantic import BaseModel, Field, SecretStr

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
    item_scores: dict[str, list[float]] = Field(default_factory=dict)
    """Per evaluation seed (key: the seed as a string), the per-item scores behind `fitness`, item i of one
    candidate paired with item i of any other candidate of the same target on the same seed: what the
    agent's evidence rule resamples when it asks whether a candidate beats the incumbent."""


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


class ModelEndpoint(BaseModel):
    """An OpenAI-compatible model that a target calls itself (ADAS's inner agents, an LLM judge): the
    agent's settings for that role, handed over without the agent's types (targets do not import it)."""

    model: str = "offline"
    base_url: str | None = None
    api_key: SecretStr | None = None
    timeout_s: float = 120.0
    max_retries: int = 3
    temperature: float | None = 0.8
    max_tokens: int | None = 4096
    usd_per_mtok_in: float | None = None
    usd_per_mtok_out: float | None = None

    @property
    def offline(self) -> bool:
        return self.model.strip().lower() == "offline"


class TargetEnv(BaseModel):
    """What a target's factory gets besides its own options: where to cache, which models to call."""

    cache_dir: Path
    inner: ModelEndpoint = Field(default_factory=ModelEndpoint)
    """The inner agents' model (`[models.inner]`)."""
    judge: ModelEndpoint = Field(default_factory=ModelEndpoint)
    """The judge's model (`[models.judge]`)."""


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

    def evaluate(self, code: str, name: str, seeds: list[int] | None = None) -> Evaluation:
        """Score on the target's default evaluation seeds, or on `seeds` (the evidence rule asks for more
        seeds of a promising candidate and of the incumbent); fills `Evaluation.item_scores`."""
        ...

    def seeds(self) -> list[SeedCandidate]: ...

    def offline_proposer(self, seed: int) -> OfflineProposer: ...

    def close(self) -> None: ...
