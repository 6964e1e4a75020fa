"""Evidence before best: does a candidate beat the incumbent, or did it only draw lucky seeds?

Picking the best of many noisy fitnesses overrates it (the winner's curse: in evals/results/offline_proposer
the best of 50 candidates led DPO by +0.089 on its two seeds and by −0.016 on fresh ones). So a candidate
replaces the run's incumbent only when a paired, hierarchical bootstrap of the difference says so:

    d_s,i = score_cand(s, i) − score_inc(s, i)      over the seeds s both were evaluated on, items i
    resample seeds (with replacement), then items within each resampled seed; the same indices for both
    diff = mean over seeds of the per-seed mean of d;  p_better = share of resamples with diff > 0

Seeds are resampled first because the seed-to-seed variance of a training run is the larger noise;
resampling items alone would call a lucky seed a discovery. Pure functions, seeded: the same scores
give the same verdict.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np
from pydantic import BaseModel, Field

from targets.base import Interval

Verdict = Literal["first", "best", "promising", "not_better"]
SeedScores = Mapping[str, Sequence[float]]
"""Per seed (the seed as a string, as in `Evaluation.item_scores`), the per-item scores."""


class Evidence(BaseModel):
    """One comparison of a candidate with the incumbent, and what the rule makes of it."""

    verdict: Verdict
    diff: Interval | None = None
    """Candidate − incumbent: the point difference, and the (1 − c) and c quantiles of the bootstrap (each
    a one-sided bound at confidence c, so `best` ⇔ ci_low > 0 up to ties). None when nothing is comparable."""
    p_better: float | None = None
    """Share of bootstrap resamples in which the candidate is better (a one-sided confidence)."""
    confidence: float
    seeds: list[int] = Field(default_factory=list)
    """The common seeds the comparison used."""
    n_items: int = 0
    """Paired items over all seeds used."""
    reason: str = ""
    """The verdict in one sentence."""
    rule: Literal["race", "bootstrap"] = "bootstrap"
    p_value: float | None = None
    """race: the one-sided p of "no better", adjusted over the looks."""
    tested_at: str = ""
    """race: the error rate a `best` holds at, in words."""


def _common(candidate: SeedScores, incumbent: SeedScores) -> tuple[list[int], list[str]]:
    """Seeds both have with the same number of items (item i must be item i for both), and what was
    dropped and why."""
    seeds, dropped = [], []
    for key in sorted(set(candidate) & set(incumbent), key=lambda k: int(k)):
        a, b = candidate[key], incumbent[key]
        if len(a) != len(b) or not a:
            dropped.append(f"seed {key}: {len(a)} vs {len(b)} items")
            continue
        seeds.append(int(key))
    return seeds, dropped


def paired_bootstrap(
    candidate: SeedScores, incumbent: SeedScores, *, n_bootstrap: int = 2000, seed: int = 0
) -> tuple[float, np.ndarray, list[int], int]:
    """(point diff, bootstrap diffs of shape (n_bootstrap,), seeds used, items used); raises ValueError
    when no seed is comparable."""
    seeds, dropped = _common(candidate, incumbent)
    if not seeds:
        why = "; ".join(dropped) if dropped else "no seed in common"
        raise ValueError(f"nothing to compare: {why}")
    diffs = [np.asarray(candidate[str(s)], float) - np.asarray(incumbent[str(s)], float) for s in seeds]
    point = float(np.mean([d.mean() for d in diffs]))
    rng = np.random.default_rng(seed)
    n_seeds = len(seeds)
    seed_idx = rng.integers(0, n_seeds, size=(n_bootstrap, n_seeds))  # (K, S) which seed fills each slot
    # (S, K, S): the mean of a fresh item resample of seed j for every slot of every resample; a slot then
    # takes the row of the seed that fills it, so items are resampled within each resampled seed.
    item_means = np.stack(
        [d[rng.integers(0, d.size, size=(n_bootstrap, n_seeds, d.size))].mean(-1) for d in diffs]
    )
    slots = np.take_along_axis(item_means, seed_idx[None, :, :], axis=0)[0]  # (K, S)
    return point, slots.mean(axis=1), seeds, int(sum(d.size for d in diffs))


def compare(
    candidate: SeedScores,
    incumbent: SeedScores,
    *,
    confidence: float = 0.95,
    n_bootstrap: int = 2000,
    seed: int = 0,
    min_seeds: int = 2,
) -> Evidence:
    """The rule: `best` when p_better ≥ confidence on at least `min_seeds` common seeds; `promising` when
    the point difference is positive but that is not (yet) shown; `not_better` otherwise. Whether a
    promising candidate gets more seeds is the loop's decision (agent.nodes.Loop.confirm)."""
    try:
        point, boots, seeds, n_items = paired_bootstrap(
            candidate, incumbent, n_bootstrap=n_bootstrap, seed=seed
        )
    except ValueError as exc:
        return Evidence(verdict="not_better", confidence=confidence, reason=f"{exc}: cannot be shown better")
    lo, hi = np.quantile(boots, [1.0 - confidence, confidence])
    p_better = float((boots > 0).mean())
    diff = Interval(value=point, ci_low=float(lo), ci_high=float(hi))
    base = Evidence(
        verdict="not_better",
        diff=diff,
        p_better=p_better,
        confidence=confidence,
        seeds=seeds,
        n_items=n_items,
    )
    shown = f"diff {point:+.4f} [{lo:+.4f}, {hi:+.4f}], p_better {p_better:.3f} on seeds {seeds}"
    if p_better >= confidence and len(seeds) >= min_seeds:
        return base.model_copy(update={"verdict": "best", "reason": f"better at {confidence:.0%}: {shown}"})
    if point > 0:
        why = (
            f"only {len(seeds)} common seed(s), {min_seeds} needed"
            if len(seeds) < min_seeds
            else f"p_better below {confidence:.2f}"
        )
        return base.model_copy(
            update={"verdict": "promising", "reason": f"ahead but not shown ({why}): {shown}"}
        )
    return base.model_copy(update={"reason": f"not ahead: {shown}"})


def next_seeds(used: set[int], n: int) -> list[int]:
    """The n smallest non-negative seeds not in `used`: fresh data for both candidate and incumbent."""
    out: list[int] = []
    seed = 0
    while len(out) < n:
        if seed not in used:
            out.append(seed)
        seed += 1
    return out
