"""The seam between the agent and what it discovers: a target's prompt material, rules, checks,
evaluators, seed archive and offline proposer. The agent only ever talks to a target through this."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Protocol

from pydantic import BaseModel, Field, SecretStr

from targets.results import CheckReport, CheckResult


class Interval(BaseModel):
    """An estimate with its confidence interval: a fitness, a difference to a baseline. The one such type:
    evaluations, memory records and the report all carry it."""

    value: float
    ci_low: float
    ci_high: float

    def excludes_zero(self) -> bool:
        return self.ci_low > 0 or self.ci_high < 0

    def text(self, digits: int = 3) -> str:
        """`+0.123 [+0.050, +0.200]`: how every table and prompt writes it."""
        return f"{self.value:+.{digits}f} [{self.ci_low:+.{digits}f}, {self.ci_high:+.{digits}f}]"


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
    blocked: str = ""
    """Set when what failed the evaluation is the infrastructure, not the candidate (the inner model down):
    the run does not record it, but waits for the endpoint and evaluates again."""
    seconds: float = 0.0
    """Time spent inside the evaluator (training and scoring), for the agent's overhead accounting."""
    details: dict = Field(default_factory=dict)
    """Target-specific results (per-β frontier, per-seed runs) kept in the candidate's folder."""
    item_scores: dict[str, list[float]] = Field(default_factory=dict)
    """Per evaluation seed (key: the seed as a string), the per-item scores behind `fitness`, item i of one
    candidate paired with item i of any other candidate of the same target on the same seed: what the
    agent's evidence rule resamples when it asks whether a candidate beats the incumbent."""
    baseline_item_scores: dict[str, list[float]] = Field(default_factory=dict)
    """Per seed, the baseline's item scores on the same seed and items (a target with a `baseline`): paired
    with `item_scores` on seeds that chose nothing, they give the difference to the baseline every surface
    shows (agent.fresh)."""


class SeedCandidate(BaseModel):
    """A known candidate of the target (for the DPO target: a zoo loss)."""

    name: str
    thought: str
    code: str


class Baseline(SeedCandidate):
    """A published method of the target, for memory (marked `baseline` there: no discovery), with its
    behavioural fingerprint when the target ships one."""

    fingerprint: list[float] | None = None


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
    hints_used: list[str] = Field(default_factory=list)
    """The person's hints this proposal follows (a proposer that takes `hints` says which it could read)."""
    hints_ignored: list[str] = Field(default_factory=list)
    """Hints it could not act on: the UI says so instead of "reached"."""


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
    """Designs candidates without a model: mutation and recombination of the target's building blocks.

    A proposer may also accept `hints: Sequence[str]` (the person's latest hints) as a keyword argument
    and fill `Proposal.hints_used` / `hints_ignored`; one that does not is handed none, and every hint is
    reported as not acted on."""

    def propose(self, index: int, parents: list[ParentInfo]) -> Proposal: ...

    def repair(self, index: int, code: str, failures: list[CheckResult], attempt: int) -> Proposal: ...


class EvaluatorInfo(BaseModel):
    """One of a target's evaluators, as `disco targets show` and the docs list them (cheap first)."""

    name: str
    what: str
    """What it measures and how, in a sentence."""
    cost: str
    """What one candidate costs, in words a person plans with ("~2 s CPU", "hours on one GPU")."""
    device: Literal["cpu", "gpu", "remote"] = "cpu"
    automatic: bool = True
    """True: the loop runs it on every candidate that passes its checks; False: on demand or on merit
    (a GPU job for a candidate that beats the best)."""


TargetSource = Literal["builtin", "path", "module", "entry_point"]


class TargetInfo(BaseModel):
    """A target's declaration, as `disco targets list|show --json` prints it."""

    spec: str
    """What selects it on the command line (`--target SPEC`): a short name, a path or `module:factory`."""
    name: str
    """The name it declares: its candidates are recorded in memory under it."""
    summary: str
    source: TargetSource
    location: str = ""
    """Where it comes from: the factory's import path, the file, or the entry point's value."""
    description: str = ""
    interface: str = ""
    rules: list[str] = Field(default_factory=list)
    fitness_meaning: str = ""
    baseline: str | None = None
    evaluators: list[EvaluatorInfo] = Field(default_factory=list)
    seeds: int = 0
    """Candidates in its seed archive."""
    seed_names: list[str] = Field(default_factory=list)


class Target(Protocol):
    """A discovery target: what a candidate is (description, interface, rules: the prompt's material),
    its static policy, its validity checks (run in the sandbox), its evaluators (cheap to expensive),
    its seed archive, what its fitness means, and an offline proposer. Implementations:
    targets.dpo.target.DPOTarget, targets.agents, examples/optimizer_target (a user target; docs/targets.md);
    all three build on targets.kit.TargetKit, which a target may use and need not.

    Optional declarations, read through `summary_of`, `baseline_of`, `evaluators_of`,
    `evaluates_seeds_first`, `not_ready_of` and `models_used_of` (which supply defaults, so that a target
    without them still satisfies the seam):
    `summary: str` (one line for `disco targets list`), `baseline: str | None` (the name of what
    `Evaluation.vs_baseline` is paired against, shown by the leaderboard),
    `evaluators` (a sequence of `EvaluatorInfo`, or dicts of its fields, cheap first),
    `evaluate_seeds_first: bool` (a run starts by measuring the seed archive), `not_ready() -> str | None`
    and `models_used: tuple[str, ...]` (the run's preflight).
    """

    name: str
    description: str
    """What is being discovered and what makes a candidate good (for the design prompt)."""
    interface: str
    """The exact form of a candidate, with an example (for the design prompt)."""
    rules: list[str]
    """What a candidate must not do (imports, I/O, state); the reflection's second round checks them."""
    fitness_meaning: str
    """What the fitness measures, its scale and direction (higher is better), and its CI."""

    def policy(self, code: str) -> CheckResult:
        """The static policy (imports, forbidden names): nothing of the code runs."""
        ...

    def check(self, code: str) -> CheckReport:
        """The validity checks, run in the sandbox: the candidate's code never runs in the agent."""
        ...

    def fingerprint(self, code: str) -> list[float] | None:
        """A behavioural fingerprint of a checked candidate (same length for every candidate of the
        target), or None: the novelty gate then compares code text alone."""
        ...

    def evaluate(self, code: str, name: str, seeds: list[int] | None = None) -> Evaluation:
        """Score on the target's default evaluation seeds, or on `seeds` (the evidence rule asks for more
        seeds of a promising candidate and of the incumbent); fills `Evaluation.item_scores`."""
        ...

    def seeds(self) -> list[SeedCandidate]:
        """The seed archive: known candidates (the baselines, the classics) to start from."""
        ...

    def offline_proposer(self, seed: int) -> OfflineProposer:
        """Designs candidates when no model is configured (and is the search baseline an LLM must beat)."""
        ...

    def close(self) -> None: ...


def protocol_members(protocol: type) -> tuple[str, ...]:
    """The attributes and methods a Protocol class declares, in the order it declares them."""
    methods = [name for name, value in vars(protocol).items() if callable(value) and not name.startswith("_")]
    return (*protocol.__annotations__, *methods)


TARGET_MEMBERS = protocol_members(Target)
"""What every target has (the registry refuses a loaded target without one); the rest is optional."""


def summary_of(target: object) -> str:
    """The target's one-line summary, else the first sentence of its description."""
    summary = str(getattr(target, "summary", "") or "").strip()
    if summary:
        return summary
    text = " ".join(str(getattr(target, "description", "")).split())
    head, dot, _ = text.partition(". ")
    return (head + "." if dot else head)[:200]


def baseline_of(target: object) -> str | None:
    """What the target's `vs_baseline` is paired against, when it says."""
    baseline = getattr(target, "baseline", None)
    return str(baseline) if baseline else None


def evaluates_seeds_first(target: object) -> bool:
    """Whether a run should measure the seed archive before designing (`evaluate_seeds_first`)."""
    return bool(getattr(target, "evaluate_seeds_first", False))


def not_ready_of(target: object) -> str | None:
    """Why the target cannot run at all now (no inner model, a missing data file), in one sentence, from
    its optional `not_ready()`; None when it can. The run's preflight asks before the first candidate."""
    hook = getattr(target, "not_ready", None)
    why = hook() if callable(hook) else None
    return None if why is None else str(why)


def models_used_of(target: object) -> tuple[str, ...]:
    """The model roles of the config (`inner`, `judge`) that the target calls itself (`models_used`), so
    that the preflight probes their endpoints too."""
    return tuple(getattr(target, "models_used", ()) or ())


def evaluators_of(target: object) -> list[EvaluatorInfo]:
    """The target's evaluators, cheap first; one unnamed CPU evaluator when it declares none."""
    declared = getattr(target, "evaluators", None)
    if declared:
        return [EvaluatorInfo.model_validate(e) for e in declared]
    return [EvaluatorInfo(name="evaluate", what="the target's `evaluate`", cost="not declared")]


def describe(target: Target, spec: str, source: TargetSource, location: str = "") -> TargetInfo:
    """Everything a target declares, for listing and for the docs."""
    seeds = target.seeds()
    return TargetInfo(
        spec=spec,
        name=target.name,
        summary=summary_of(target),
        source=source,
        location=location,
        description=target.description.strip(),
        interface=target.interface.strip("\n"),
        rules=list(target.rules),
        fitness_meaning=target.fitness_meaning.strip(),
        baseline=baseline_of(target),
        evaluators=evaluators_of(target),
        seeds=len(seeds),
        seed_names=[s.name for s in seeds],
    )
