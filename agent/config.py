"""A run's settings in one object, layered: defaults < TOML file < environment < CLI flags.

The TOML file is `--config FILE`, else `$DISCO_HOME/config.toml`, else `./disco.toml` when present:

    target = "dpo"
    [budget]
    max_candidates = 50
    hours = 8
    [models.meta]
    model = "gpt-4.1-mini"
    base_url = "http://localhost:8000/v1"
    [targets.<name>]                # the options of the target <name>; for "dpo", e.g.:
    preset = "quick"
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field, PrivateAttr, ValidationError, field_validator, model_validator

from agent.models.settings import MODEL_SETTING_ENV, ModelsConfig, models_from_env

if TYPE_CHECKING:
    from targets.base import TargetEnv


class ConfigError(ValueError):
    """A config the person must fix: one sentence."""


class BudgetConfig(BaseModel):
    """When the run stops by itself; it stops at a step boundary and says which budget it hit.

    The rule (README, `disco run --help`): the budgets a person gives are the run's budgets, and a budget
    not given does not bind. Only a run given no budget at all (no flag, no `[budget]` key) gets the
    default, `DEFAULT_BUDGET`, so that a bare `disco run` ends; `--hours 8` alone runs for eight hours.
    Every budget is a positive number; none means no limit."""

    max_candidates: int | None = None
    """Candidates designed (whatever their fate)."""
    hours: float | None = None
    """Wall clock while the runner is running (time spent stopped between sessions is not counted)."""
    max_tokens: int | None = None
    """Prompt + completion tokens of every model call of the run."""
    max_usd: float | None = None
    """Cost of the model calls, when the model's prices are configured."""
    max_cpu_hours: float | None = None
    """CPU time of evaluation: the evaluators' seconds (toy training, checks) plus CPU jobs × their cores."""
    max_gpu_hours: float | None = None
    """GPU time of the run's GPU jobs: each job's running time × its GPUs (running jobs count as they go)."""
    _defaulted: bool = PrivateAttr(False)

    @model_validator(mode="wrap")
    @classmethod
    def _default_only_when_none_given(cls, data: Any, handler: Any) -> BudgetConfig:
        """An empty budget takes DEFAULT_BUDGET; a budget given replaces the defaults (the rest: no limit)."""
        if not isinstance(data, Mapping):
            return handler(data)  # a BudgetConfig already: it keeps its own flag
        model = handler(data or dict(DEFAULT_BUDGET))
        model._defaulted = not data
        return model

    @field_validator("*")
    @classmethod
    def _positive(cls, value: float | None) -> float | None:
        if value is not None and not value > 0:  # also NaN
            raise ValueError(f"must be a positive number (leave it out for no limit), not {value:g}")
        return value

    @property
    def defaulted(self) -> bool:
        """True when no budget was given and DEFAULT_BUDGET applies."""
        return self._defaulted

    def describe(self) -> str:
        """The effective budgets in one line, e.g. `8 h, $5; no limit on candidates, tokens, CPU, GPU`."""
        given = [fmt(getattr(self, key)) for key, (fmt, _) in BUDGET_WORDS.items() if getattr(self, key)]
        free = [word for key, (_, word) in BUDGET_WORDS.items() if getattr(self, key) is None]
        text = ", ".join(given) or "none"
        if free:
            text += "; no limit on " + ", ".join(free)
        return text + (" (the default: no budget was given)" if self.defaulted else "")


DEFAULT_BUDGET: dict[str, Any] = {"max_candidates": 10}
"""What binds when a person gives no budget at all (so that a bare `disco run` ends)."""
BUDGET_WORDS: dict[str, tuple[Any, str]] = {
    "max_candidates": (lambda v: f"{v:g} candidates", "candidates"),
    "hours": (lambda v: f"{v:g} h", "time"),
    "max_tokens": (lambda v: f"{v:g} tokens", "tokens"),
    "max_usd": (lambda v: f"${v:g}", "cost"),
    "max_cpu_hours": (lambda v: f"{v:g} CPU h", "CPU hours"),
    "max_gpu_hours": (lambda v: f"{v:g} GPU h", "GPU hours"),
}
"""How each budget reads in the start line: (value → words, what it limits)."""


class EndpointWaitConfig(BaseModel):
    """What the runner does while the model endpoint is down (connection refused, timeouts, 5xx, 429)."""

    backoff_s: list[float] = Field(default_factory=lambda: [5.0, 20.0, 60.0])
    """Waits before the first retries of the failed step; after them the run is `paused` and probes."""
    probe_every_s: float = Field(default=60.0, gt=0)
    """While paused for the endpoint: retry the step this often; the run resumes by itself when it works."""
    max_wait_hours: float | None = Field(default=2.0, ge=0)
    """Give up after the endpoint has been down this long: the run stops with the reason (resume later).
    None waits for ever (the person can still `disco control RUN stop`)."""


class LoopConfig(BaseModel):
    """The shape of one iteration of the loop."""

    reflections: int = Field(default=2, ge=0, le=5)
    """Rounds of self-critique after design (ADAS: two)."""
    max_repairs: int = Field(default=3, ge=0, le=10)
    """Repair rounds for a candidate that fails its checks; then it is recorded as failed."""
    seed: int | None = None
    """Seed of the offline proposer; by default derived from the run id, so that two runs sharing one
    memory do not start from the same proposals."""
    recursion_limit: int = 64
    """LangGraph steps allowed for one candidate (plan … record is ≤ 20 with the defaults)."""
    k_best: int = 5
    k_similar: int = 4
    k_failures: int = 3
    baselines_in_memory: bool = True
    """Put the target's published methods (the DPO zoo) into memory, marked `baseline`, before the first
    candidate: the novelty gate then rejects a rediscovery of DPO, SLiC, IPO, … and the prompts show them
    as known. Off only where zoo losses stand in for new code (tests)."""
    seed_archive: Literal["auto", "evaluate", "skip"] = "auto"
    """Whether the run starts by checking and evaluating the target's seed archive (as ADAS does), so that
    the designs build on measured seeds: `auto` follows the target's declaration (the agent-system target
    does, the DPO target does not: its zoo is measured in evals/results/zoo). Seeds do not count towards
    `max_candidates`."""


class GPUJobsConfig(BaseModel):
    """The expensive evaluator: a real DPO job for candidates that earn it."""

    enabled: bool = False
    """Launch a GPU DPO job for a candidate whose toy fitness beats the run's best so far."""
    approval: bool = False
    """Ask the person before each launch (`disco control RUN approve|deny`); the run waits."""
    spec: dict[str, Any] = Field(default_factory=dict)
    """The job's training settings (model, data set, steps): see `disco jobs submit`."""


class EvidenceConfig(BaseModel):
    """When a candidate replaces the run's incumbent (docs/evidence.md). `race` (the default): a sequential
    race over fresh seeds whose claims hold a run-level error (targets.racing); `bootstrap`: the former
    per-comparison rule, a paired, seeded bootstrap over the seeds both were evaluated on."""

    rule: Literal["race", "bootstrap"] = "race"
    """race: 2 → 4 → 8 → … fresh seeds, 'best' only past a bar that holds `alpha` false claims per run;
    bootstrap: `best` when p_better ≥ `confidence` (per comparison: many candidates, many false claims)."""
    stages: tuple[int, ...] = (2, 4, 8, 16, 32, 64)
    """race: the fresh seeds (cumulative) at which a challenger is looked at."""
    futility_z: float = Field(default=0.5, ge=0)
    """race: a challenger is dropped when d̄ + futility_z·σ/√n < min_effect (lower: dropped sooner)."""
    alpha: float = Field(default=0.05, gt=0, lt=0.5)
    """race: the chance that a run declares any false 'best'."""
    candidate_budget: int = Field(default=50, ge=1)
    """race: candidates the run's α is split over when the run has no `max_candidates` (with one, the cap is
    the number: raising it mid-run leaves earlier claims tested at the bar of the cap they had)."""
    sigma: float | None = Field(default=None, gt=0)
    """race: σ per seed of a paired difference; None takes the target's measured one (the DPO target's
    default preset has one), else each comparison's own spread from 4 seeds on."""
    min_effect: float = Field(default=0.02, ge=0)
    """race: a challenger that cannot plausibly beat the incumbent by this much is dropped."""
    q: float = Field(default=0.1, gt=0, lt=1)
    """Benjamini–Hochberg level of 'beats the baseline' over a run's candidates (their differences to the
    baseline on fresh seeds): the expected share of false ones among those so called."""
    confirm_seeds: int = Field(default=16, ge=0)
    """race: fresh seeds a challenger claimed `best` is then trained on (with the baseline on the same
    seeds); its difference to the baseline is shown from these alone, since the seeds that crowned it
    overstate it (the winner's curse). 0: shown from the race's seeds."""

    confidence: float = Field(default=0.95, gt=0.5, lt=1.0)
    """One-sided: `best` needs p_better (share of bootstrap resamples in which it wins) ≥ this."""
    n_bootstrap: int = Field(default=2000, ge=100)
    """Bootstrap resamples of seeds, then items within each seed."""
    bootstrap_seed: int = 0
    """Seed of the bootstrap, so that a verdict is reproducible."""
    min_seeds: int = Field(default=2, ge=1)
    """Common seeds needed for `best`: on one seed the seed-to-seed variance, the larger noise of a
    training run, is not measured at all."""
    extra_rounds: int = Field(default=2, ge=0)
    """Rounds of extra seeds for a promising candidate (each round evaluates it and the incumbent)."""
    seeds_per_round: int = Field(default=2, ge=1)
    """Fresh seeds per round, for the candidate and the incumbent alike."""


class RunConfig(BaseModel):
    target: str = "dpo"
    budget: BudgetConfig = Field(default_factory=BudgetConfig)
    loop: LoopConfig = Field(default_factory=LoopConfig)
    models: ModelsConfig = Field(default_factory=ModelsConfig)
    gpu: GPUJobsConfig = Field(default_factory=GPUJobsConfig)
    endpoint: EndpointWaitConfig = Field(default_factory=EndpointWaitConfig)
    evidence: EvidenceConfig = Field(default_factory=EvidenceConfig)
    targets: dict[str, dict[str, Any]] = Field(default_factory=dict)
    """Per-target options: the table `[targets.<name>]` of the target <name> (`preset = "quick"` for dpo)."""


def target_env(config: RunConfig, cache_dir: Path) -> TargetEnv:
    """The target's view of this config: its cache dir and the inner / judge models, in targets' own type."""
    from targets.base import ModelEndpoint, TargetEnv

    fields = set(ModelEndpoint.model_fields)
    inner, judge = config.models.inner, config.models.judge
    return TargetEnv(
        cache_dir=cache_dir,
        inner=ModelEndpoint.model_validate(inner.model_dump(include=fields)),
        judge=ModelEndpoint.model_validate(judge.model_dump(include=fields)),
    )


def find_config_file(explicit: Path | None, home: Path) -> Path | None:
    if explicit is not None:
        if not explicit.is_file():
            raise ConfigError(f"config file {explicit} does not exist")
        return explicit
    for candidate in (home / "config.toml", Path("disco.toml")):
        if candidate.is_file():
            return candidate
    return None


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def meta_model_overrides(
    model: str | None,
    base_url: str | None,
    *,
    structured: str | None = None,
    timeout_s: float | None = None,
    reply_tokens: int | None = None,
    context_tokens: int | None = None,
    inner_model: str | None = None,
    inner_base_url: str | None = None,
) -> dict[str, Any]:
    """The model flags (`--model`, `--base-url`, `--structured`, `--timeout`, `--reply-tokens`,
    `--context-tokens`, `--inner-model`, `--inner-base-url`) as `load_config` overrides; empty when none
    is given."""
    meta = {"model": model, "base_url": base_url, "structured": structured, "timeout_s": timeout_s}
    meta |= {"max_tokens": reply_tokens, "context_tokens": context_tokens}
    inner = {"model": inner_model, "base_url": inner_base_url}
    given = {
        role: {k: v for k, v in values.items() if v is not None and v != ""}
        for role, values in (("meta", meta), ("inner", inner))
    }
    given = {role: values for role, values in given.items() if values}
    return {"models": given} if given else {}


def run_model_overrides(run_config: Mapping[str, Any]) -> dict[str, Any]:
    """The meta model a run was started with (its stored config), as overrides: the TUI's chat talks to
    the model the user gave the run. Empty for an offline run, so that the environment's model applies."""
    meta = (run_config.get("models") or {}).get("meta") or {}
    model = meta.get("model")
    if not model or model == "offline":
        return {}
    return meta_model_overrides(model, meta.get("base_url"))


def load_config(
    path: Path | None,
    overrides: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
) -> RunConfig:
    """Defaults < the TOML file < environment (OPENAI_*, DISCO_MODEL, DISCO_SANDBOX) < `overrides` (flags)."""
    env = os.environ if env is None else env
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path} is not valid TOML: {exc}") from None
        except OSError as exc:
            raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        config = RunConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {_first_error(exc)}") from None
    try:
        models = models_from_env(config.models, env)
    except ValidationError as exc:
        err = exc.errors()[0]
        variable = next((v for v, f in MODEL_SETTING_ENV.items() if f in err["loc"]), "the environment")
        raise ConfigError(f"{variable}: {err['msg'].removeprefix('Value error, ')}") from None
    layered = config.model_dump() | {"models": models.model_dump()}
    if env.get("DISCO_SANDBOX"):
        layered = _merge(layered, {"targets": {config.target: {"sandbox": env["DISCO_SANDBOX"]}}})
    if overrides:
        layered = _merge(layered, overrides)
    # The budgets are the ones given (file, then flags), never merged with the defaults (BudgetConfig).
    layered["budget"] = dict(data.get("budget") or {}) | dict((overrides or {}).get("budget") or {})
    try:
        return RunConfig.model_validate(layered)
    except ValidationError as exc:
        raise ConfigError(_first_error(exc)) from None


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"])
    return f"{where}: {err['msg'].removeprefix('Value error, ')}"
