"""A run's settings in one object, layered: defaults < TOML file < environment < CLI flags.

The TOML file is `--config FILE`, else `$DISCO_HOME/config.toml`, else `./disco.toml` when present:

    target = "dpo"
    [budget]
    max_candidates = 50
    hours = 8
    [models.meta]
    model = "gpt-4.1-mini"
    base_url = "http://localhost:8000/v1"
    [targets.dpo]
    preset = "quick"
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field, ValidationError

from agent.models.settings import ModelsConfig, settings_from_env

if TYPE_CHECKING:
    from targets.base import TargetEnv


class ConfigError(ValueError):
    """A config the person must fix: one sentence."""


class BudgetConfig(BaseModel):
    """When the run stops by itself; it stops at a step boundary and says which budget it hit."""

    max_candidates: int | None = 10
    """Candidates designed (whatever their fate)."""
    hours: float | None = None
    """Wall clock while the runner is running (time spent stopped between sessions is not counted)."""
    max_tokens: int | None = None
    """Prompt + completion tokens of every model call of the run."""
    max_usd: float | None = None
    """Cost of the model calls, when the model's prices are configured."""


class LoopConfig(BaseModel):
    """The shape of one iteration of the loop."""

    reflections: int = Field(2, ge=0, le=5)
    """Rounds of self-critique after design (ADAS: two)."""
    max_repairs: int = Field(3, ge=0, le=10)
    """Repair rounds for a candidate that fails its checks; then it is recorded as failed."""
    seed: int | None = None
    """Seed of the offline proposer; by default derived from the run id, so that two runs sharing one
    memory do not start from the same proposals."""
    recursion_limit: int = 64
    """LangGraph steps allowed for one candidate (plan … record is ≤ 20 with the defaults)."""
    k_best: int = 5
    k_similar: int = 4
    k_failures: int = 3


class GPUJobsConfig(BaseModel):
    """The expensive evaluator: a real DPO job for candidates that earn it."""

    enabled: bool = False
    """Launch a GPU DPO job for a candidate whose toy fitness beats the run's best so far."""
    approval: bool = False
    """Ask the person before each launch (`disco control RUN approve|deny`); the run waits."""
    spec: dict[str, Any] = Field(default_factory=dict)
    """The job's training settings (model, data set, steps): see `disco jobs submit`."""


class RunConfig(BaseModel):
    target: str = "dpo"
    budget: BudgetConfig = Field(default_factory=BudgetConfig)
    loop: LoopConfig = Field(default_factory=LoopConfig)
    models: ModelsConfig = Field(default_factory=ModelsConfig)
    gpu: GPUJobsConfig = Field(default_factory=GPUJobsConfig)
    targets: dict[str, dict[str, Any]] = Field(default_factory=dict)
    """Per-target options, e.g. `[targets.dpo] preset = "quick"`."""


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
    roles = ("meta", "inner", "judge")
    models = config.models.model_copy(
        update={role: settings_from_env(getattr(config.models, role), env) for role in roles}
    )
    layered = config.model_dump() | {"models": models.model_dump()}
    if env.get("DISCO_SANDBOX"):
        layered = _merge(layered, {"targets": {config.target: {"sandbox": env["DISCO_SANDBOX"]}}})
    if overrides:
        layered = _merge(layered, overrides)
    try:
        return RunConfig.model_validate(layered)
    except ValidationError as exc:
        raise ConfigError(_first_error(exc)) from None


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"])
    return f"{where}: {err['msg']}"
