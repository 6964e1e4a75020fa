"""σ per seed, measured once per task: the pilot the race's bars and intervals rest on (issue 16, item 4).

The race (targets.racing) needs the instrument's per-seed sd of a paired difference between two losses.
For the default preset it ships, measured over the zoo (fitness.TOY_SIGMA_PER_SEED); any other task, preset
or evaluation setting has its own, and until it is measured each comparison falls back on its own spread
from 4 seeds on. A pilot measures it the way the agent scores: DPO, cDPO, SLiC and IPO, each at the β its
screen chooses (on screening seeds), trained on `n_seeds` fresh seeds; σ is the pooled sd of the six pairs'
per-seed differences, and what the race uses is its 90% upper bound (an underestimated σ claims too much).
The result is sealed in the data dir's cache under the instrument's key, so the agent finds it for every
later run of the same task and settings, and a file a candidate could write is never believed.
"""

from __future__ import annotations

import itertools
import json
import math
import time
from pathlib import Path
from typing import Any

from targets.cache_dirs import write_sealed
from targets.dpo.sigma import SigmaPilot, instrument_key, pilot_path

PILOT_LOSSES = ("dpo", "cdpo", "slic", "ipo")
PILOT_SEED_BASE = 2000
"""The pilot's scoring seeds are 2000, 2001, …: apart from the agent's race seeds and the bench's screen."""


def pooled_sigma(seed_scores: dict[str, dict[str, list[float]]]) -> tuple[float, int]:
    """(σ, dof): the pooled sd of per-seed differences over every pair of losses (name → seed → items)."""
    from targets.racing import seed_differences

    squares, dof = 0.0, 0
    for a, b in itertools.combinations(sorted(seed_scores), 2):
        d = seed_differences(seed_scores[a], seed_scores[b])
        if len(d) < 2:
            continue
        mean = sum(d) / len(d)
        squares += sum((x - mean) ** 2 for x in d)
        dof += len(d) - 1
    if dof < 1:
        raise ValueError("the pilot needs at least two seeds that every loss trained on")
    return math.sqrt(squares / dof), dof


def run_pilot(
    spec: Any,
    cache_dir: Path,
    n_seeds: int = 16,
    losses: tuple[str, ...] = PILOT_LOSSES,
    progress: Any = None,
) -> SigmaPilot:
    """Train the pilot's losses (β screened as the agent does) on `n_seeds` fresh seeds, measure σ and keep
    it sealed in the cache for `spec`'s instrument."""
    from targets.dpo.bench import run_bench
    from targets.dpo.fitness import seed_item_scores
    from targets.dpo.zoo import get_zoo_loss
    from targets.racing import sigma_upper

    if n_seeds < 2:
        raise ValueError("a pilot needs at least 2 seeds")
    start = time.perf_counter()
    scoring = spec.model_copy(update={"seeds": list(range(PILOT_SEED_BASE, PILOT_SEED_BASE + n_seeds))})
    report = run_bench(
        {name: get_zoo_loss(name).code for name in losses},
        scoring,
        cache_dir,
        progress=progress,
        protocol="fresh",
        screen_seeds=len(spec.seeds),
    )
    scored = [r for r in report.runs if r.seed in scoring.seeds]
    n_items = max((len(r.rewards) for r in scored if r.status == "ok"), default=spec.task.n_eval_prompts)
    scores = {
        name: seed_item_scores(
            [r for r in scored if r.loss == name], report.chosen_beta[name], spec.fitness, n_items=n_items
        )
        for name in losses
    }
    sigma, dof = pooled_sigma(scores)
    pilot = SigmaPilot(
        instrument=instrument_key(spec),
        sigma=sigma,
        sigma_upper=sigma_upper(sigma, dof),
        dof=dof,
        n_seeds=n_seeds,
        losses=list(losses),
        betas={name: report.chosen_beta[name] for name in losses},
        failed_runs=sum(r.status != "ok" for r in scored),
        seconds=time.perf_counter() - start,
    )
    write_sealed(pilot_path(cache_dir, spec), cache_dir, json.dumps(pilot.model_dump(mode="json")))
    return pilot
