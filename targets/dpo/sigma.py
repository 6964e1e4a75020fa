"""The σ per seed the race uses for an instrument: a pilot measured in this data dir (targets.dpo.pilot
measures and seals it), else the one shipped for the default preset. Reading it needs no training, so the
target and the bench find it here without the pilot's machinery."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from targets.cache_dirs import read_sealed


class SigmaPilot(BaseModel):
    """A measured σ per seed for one instrument (task, training, fitness and β screen)."""

    instrument: str
    sigma: float
    """Pooled sd of the per-seed paired differences over every pair of the pilot's losses."""
    sigma_upper: float
    """Its 90% upper bound: what the race uses."""
    dof: int
    n_seeds: int
    losses: list[str]
    betas: dict[str, float]
    """The β each loss's screen chose."""
    failed_runs: int
    seconds: float


def instrument_key(spec: Any) -> str:
    """What σ depends on: the task, training, fitness and β grid; not which seeds, nor the machine."""
    blob = spec.model_dump_json(exclude={"seeds", "workers", "run_timeout_s", "child_memory_mb"})
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def pilot_path(cache_dir: Path, spec: Any) -> Path:
    return cache_dir / "sigma" / f"{instrument_key(spec)}.json"


def measured_sigma(cache_dir: Path, spec: Any) -> SigmaPilot | None:
    """The pilot this data dir's parent process measured for `spec`'s instrument, if any."""
    text = read_sealed(pilot_path(cache_dir, spec), cache_dir)
    if text is None:
        return None
    try:
        return SigmaPilot.model_validate_json(text)
    except ValueError:
        return None


def race_sigma(cache_dir: Path | None, spec: Any) -> float | None:
    """The σ the race uses for `spec`'s instrument: this data dir's pilot's upper bound where one was
    measured, else the shipped one (fitness.TOY_SIGMA_PER_SEED) when `spec` is the default preset's
    instrument, else None: each comparison's own spread counts from 4 seeds on (a σ measured for another
    task would be a guess)."""
    from targets.dpo.fitness import TOY_SIGMA_PER_SEED
    from targets.dpo.sweep import sweep_spec

    pilot = measured_sigma(cache_dir, spec) if cache_dir is not None else None
    if pilot is not None:
        return pilot.sigma_upper
    return TOY_SIGMA_PER_SEED if instrument_key(spec) == instrument_key(sweep_spec("default")) else None
