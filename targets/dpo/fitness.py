"""From (loss, β, seed) training runs to a fitness that can rank losses.

Each run is scored on the same held-out prompts with the same sampling seed, so two losses can be
compared item by item (common random numbers). Per prompt i of a run, the item score is the
KL-regularised reward of RLHF,

    o_i = r_i - λ · k_i,    k_i = log π(y_i|x_i) - log π_ref(y_i|x_i),  y_i ~ π(·|x_i)

whose mean over prompts estimates E[r] - λ·KL(π‖π_ref). A run that failed (NaN, crash, degenerate
text) scores `failure_score` on every item: failing at a β costs, it is not skipped. A loss's fitness
is the mean of o over seeds and prompts at its best β (or, with `aggregate="mean"`, averaged over β);
its 95% CI comes from a seeded bootstrap that resamples seeds and prompts, and the paired comparison
with a baseline resamples the same indices for both.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
from pydantic import BaseModel, Field

from targets.base import Interval

RunStatus = Literal["ok", "diverged", "error", "degenerate"]

SCREEN_BETAS: tuple[float, ...] = (0.5, 1.0)
SCREEN_SEEDS = 2
"""The β screen of the one protocol (the agent's default preset, `disco bench losses`): β chosen among
SCREEN_BETAS on SCREEN_SEEDS seeds that are never scored. evals/bench_fitness_calibration.py compares eight
screens over every split of the zoo's seeds; this one keeps the interval coverage (0.95) within 40 s a
candidate (38 s) at the lowest σ: a 1-seed screen is cheaper but noisier (σ 0.077), 5 β on 2 seeds costs
60 s for σ 0.067 (evals/results/fitness_calibration/screens.json)."""

TOY_SIGMA_PER_SEED = 0.0670
"""σ of a per-seed paired difference on the default toy task under that screen, the 90% upper bound
measured by evals/bench_fitness_calibration.py (summary.json `sigma_used`, every split of the zoo's seeds,
all thirteen losses); a loss's own larger spread overrides it."""

# The paper's IMDb β sweep (DiscoPOP, §5.3): the full grid.
FULL_BETA_GRID: tuple[float, ...] = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class FitnessConfig(BaseModel):
    """How runs become one number with a confidence interval."""

    kl_penalty: float = 0.05
    """λ in r - λ·KL: how many reward units one nat of KL from the reference costs."""
    failure_score: float = -1.0
    """Item score of a failed run (the reward floor: a failure is as bad as the worst text)."""
    n_bootstrap: int = 2000
    """Bootstrap resamples for the confidence intervals."""
    bootstrap_seed: int = 0
    """Seed of the bootstrap, so that a fitness is reproducible."""
    confidence: float = 0.95
    """Two-sided confidence level of the intervals."""
    aggregate: Literal["max", "mean"] = "max"
    """Over β: `max` scores each loss at its best β, as a practitioner who tunes β uses it, and is fair
    to losses whose β means something else (IPO's β sets a target margin 1/(2β), DPO's a temperature);
    `mean` instead rewards a loss that is good at every β. The bootstrap takes the max in each resample,
    so the CI carries the max's upward bias for noisy losses. In evals/results/zoo, `max` separated
    more of the classic losses from each other than `mean`."""


class RunResult(BaseModel):
    """One training run of one loss at one β and seed, evaluated on the held-out prompts."""

    loss: str
    beta: float
    seed: int
    status: RunStatus
    reason: str | None = None
    rewards: list[float] = Field(default_factory=list)
    """Exact reward of the sampled completion, per held-out prompt (in prompt order)."""
    kls: list[float] = Field(default_factory=list)
    """Per-sample KL estimate log π(y|x) - log π_ref(y|x), per held-out prompt."""
    steps: int = 0
    train_seconds: float = 0.0
    eval_seconds: float = 0.0

    @property
    def mean_reward(self) -> float | None:
        return float(np.mean(self.rewards)) if self.status == "ok" and self.rewards else None

    @property
    def mean_kl(self) -> float | None:
        return float(np.mean(self.kls)) if self.status == "ok" and self.kls else None


class BetaPoint(BaseModel):
    """One point of a loss's reward–KL frontier: the mean over seeds at one β."""

    beta: float
    reward: float | None
    kl: float | None
    objective: float
    n_seeds: int
    n_failed: int
    statuses: list[RunStatus]
    reasons: list[str] = Field(default_factory=list)


class LossFitness(BaseModel):
    loss: str
    fitness: Interval
    frontier: list[BetaPoint]
    vs_baseline: PairedComparison | None = None


class PairedComparison(BaseModel):
    """fitness(loss) - fitness(baseline) on the same seeds, β and prompts."""

    baseline: str
    diff: Interval
    prob_better: float
    """Share of bootstrap resamples in which the loss beats the baseline."""
    separated: bool
    """True when the CI of the difference excludes zero."""


def _score_tensor(
    runs: Sequence[RunResult], betas: Sequence[float], seeds: Sequence[int], n_items: int, cfg: FitnessConfig
) -> np.ndarray:
    """Item scores as an array of shape (n_betas, n_seeds, n_items); failed runs get failure_score."""
    by_key = {(r.beta, r.seed): r for r in runs}
    out = np.full((len(betas), len(seeds), n_items), cfg.failure_score, dtype=np.float64)
    for b, beta in enumerate(betas):
        for s, seed in enumerate(seeds):
            run = by_key.get((beta, seed))
            if run is None:
                raise ValueError(f"no run of {runs[0].loss if runs else '?'} at beta={beta}, seed={seed}")
            if run.status == "ok":
                if len(run.rewards) != n_items or len(run.kls) != n_items:
                    raise ValueError(
                        f"run {run.loss} beta={beta} seed={seed} has {len(run.rewards)} items, "
                        f"expected {n_items}"
                    )
                out[b, s] = np.asarray(run.rewards) - cfg.kl_penalty * np.asarray(run.kls)
    return out


def _grid(runs: Sequence[RunResult]) -> tuple[list[float], list[int], int]:
    betas = sorted({r.beta for r in runs})
    seeds = sorted({r.seed for r in runs})
    n_items = max((len(r.rewards) for r in runs if r.status == "ok"), default=1)
    return betas, seeds, n_items


def _bootstrap_indices(n_seeds: int, n_items: int, cfg: FitnessConfig) -> tuple[np.ndarray, np.ndarray]:
    """Seed and prompt resamples, shared by every loss so that comparisons are paired."""
    rng = np.random.default_rng(cfg.bootstrap_seed)
    seed_idx = rng.integers(0, n_seeds, size=(cfg.n_bootstrap, n_seeds))
    item_idx = rng.integers(0, n_items, size=(cfg.n_bootstrap, n_items))
    return seed_idx, item_idx


def _bootstrap_means(
    scores: np.ndarray, seed_idx: np.ndarray, item_idx: np.ndarray, aggregate: str
) -> np.ndarray:
    """Fitness of each resample: scores (B, S, N) → (n_bootstrap,); seeds and prompts are resampled, β not."""
    # (K, B): per β, the mean over K resamples of S seeds × N prompts, gathered one β at a time
    per_beta = np.stack(
        [s[seed_idx[:, :, None], item_idx[:, None, :]].mean(axis=(1, 2)) for s in scores], axis=1
    )
    return per_beta.max(axis=1) if aggregate == "max" else per_beta.mean(axis=1)


def _point(scores: np.ndarray, aggregate: str) -> float:
    per_beta = scores.mean(axis=(1, 2))  # (B,)
    return float(per_beta.max() if aggregate == "max" else per_beta.mean())


def _interval(point: float, samples: np.ndarray, confidence: float) -> Interval:
    alpha = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(samples, [alpha, 1.0 - alpha])
    return Interval(value=float(point), ci_low=float(lo), ci_high=float(hi))


def _measured(run: RunResult) -> tuple[float, float]:
    """The mean reward and KL of a run that succeeded (it was evaluated on at least one prompt)."""
    reward, kl = run.mean_reward, run.mean_kl
    if reward is None or kl is None:
        raise ValueError(f"run {run.loss} at β={run.beta}, seed {run.seed} is ok but has no rewards or KLs")
    return reward, kl


def _objective(run: RunResult, cfg: FitnessConfig) -> float:
    """reward − kl_penalty · KL for a run that succeeded, the failure score for one that did not."""
    if run.status != "ok":
        return cfg.failure_score
    reward, kl = _measured(run)
    return reward - cfg.kl_penalty * kl


def frontier(runs: Sequence[RunResult], cfg: FitnessConfig) -> list[BetaPoint]:
    """The reward–KL points of one loss, one per β (means over the seeds that succeeded)."""
    points = []
    for beta in sorted({r.beta for r in runs}):
        at_beta = [r for r in runs if r.beta == beta]
        ok = [r for r in at_beta if r.status == "ok"]
        measured = [_measured(r) for r in ok]  # (reward, KL) of each run that succeeded
        reward = float(np.mean([m[0] for m in measured])) if ok else None
        kl = float(np.mean([m[1] for m in measured])) if ok else None
        objective = float(np.mean([_objective(r, cfg) for r in at_beta]))
        points.append(
            BetaPoint(
                beta=beta,
                reward=reward,
                kl=kl,
                objective=objective,
                n_seeds=len(at_beta),
                n_failed=len(at_beta) - len(ok),
                statuses=[r.status for r in at_beta],
                reasons=[f"seed {r.seed}: {r.reason}" for r in at_beta if r.status != "ok" and r.reason],
            )
        )
    return points


def compute_fitness(
    runs_by_loss: dict[str, list[RunResult]], cfg: FitnessConfig | None = None, baseline: str | None = "dpo"
) -> dict[str, LossFitness]:
    """Fitness with a bootstrap CI for every loss, and the paired difference to `baseline` when it was run.

    All losses must have been run on the same β grid, seeds and prompts.
    """
    cfg = cfg or FitnessConfig()
    all_runs = [r for runs in runs_by_loss.values() for r in runs]
    if not all_runs:
        return {}
    betas, seeds, n_items = _grid(all_runs)
    seed_idx, item_idx = _bootstrap_indices(len(seeds), n_items, cfg)
    scores = {name: _score_tensor(runs, betas, seeds, n_items, cfg) for name, runs in runs_by_loss.items()}
    boots = {name: _bootstrap_means(s, seed_idx, item_idx, cfg.aggregate) for name, s in scores.items()}
    results: dict[str, LossFitness] = {}
    for name, runs in runs_by_loss.items():
        results[name] = LossFitness(
            loss=name,
            fitness=_interval(_point(scores[name], cfg.aggregate), boots[name], cfg.confidence),
            frontier=frontier(runs, cfg),
        )
    if baseline is not None and baseline in scores:
        for name in runs_by_loss:
            if name == baseline:
                continue
            delta = boots[name] - boots[baseline]
            point = _point(scores[name], cfg.aggregate) - _point(scores[baseline], cfg.aggregate)
            diff = _interval(point, delta, cfg.confidence)
            results[name].vs_baseline = PairedComparison(
                baseline=baseline,
                diff=diff,
                prob_better=float((delta > 0).mean()),
                separated=diff.excludes_zero(),
            )
    return results


def pairwise_separation(
    runs_by_loss: dict[str, list[RunResult]], names: Sequence[str], cfg: FitnessConfig | None = None
) -> dict[tuple[str, str], PairedComparison]:
    """Paired differences for every pair of `names` (a - b), to ask which losses the task tells apart."""
    cfg = cfg or FitnessConfig()
    all_runs = [r for n in names for r in runs_by_loss[n]]
    betas, seeds, n_items = _grid(all_runs)
    seed_idx, item_idx = _bootstrap_indices(len(seeds), n_items, cfg)
    scores = {n: _score_tensor(runs_by_loss[n], betas, seeds, n_items, cfg) for n in names}
    boots = {n: _bootstrap_means(scores[n], seed_idx, item_idx, cfg.aggregate) for n in names}
    out = {}
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            delta = boots[a] - boots[b]
            point = _point(scores[a], cfg.aggregate) - _point(scores[b], cfg.aggregate)
            diff = _interval(point, delta, cfg.confidence)
            out[(a, b)] = PairedComparison(
                baseline=b, diff=diff, prob_better=float((delta > 0).mean()), separated=diff.excludes_zero()
            )
    return out


def chosen_beta(points: Sequence[BetaPoint]) -> float:
    """The β a practitioner would keep: the frontier point with the best objective (ties: the first)."""
    return max(points, key=lambda p: p.objective).beta


def seed_item_scores(
    runs: Sequence[RunResult], beta: float, cfg: FitnessConfig, n_items: int | None = None
) -> dict[str, list[float]]:
    """Per seed (as a string), the item scores o_i of the runs at `beta`; a failed run scores the floor on
    every item (`n_items` of them when no run succeeded). Item i is the same held-out prompt, sampled with
    the same seed, for every loss: what the agent's evidence rule pairs and resamples."""
    at_beta = [r for r in runs if r.beta == beta]
    n_items = max((len(r.rewards) for r in runs if r.status == "ok"), default=n_items or 0)
    if not at_beta or n_items == 0:
        return {}
    seeds = sorted({r.seed for r in at_beta})
    scores = _score_tensor(at_beta, [beta], seeds, n_items, cfg)[0]  # (S, N)
    return {str(seed): scores[s].tolist() for s, seed in enumerate(seeds)}


def fixed_beta_fitness(
    runs: Sequence[RunResult], baseline_runs: Sequence[RunResult], cfg: FitnessConfig | None = None
) -> LossFitness:
    """Fitness of a loss trained at one β on some seeds, paired with a baseline trained at its own β on the
    same seeds and prompts: each at the β it chose elsewhere, none re-selected on these data (an honest
    confirmation on fresh seeds)."""
    cfg = cfg or FitnessConfig()
    # compute_fitness pairs runs by (β, seed): put both on one nominal β, then report the real frontier.
    nominal = {"loss": [r.model_copy(update={"beta": 0.0}) for r in runs]}
    if baseline_runs:
        nominal["baseline"] = [r.model_copy(update={"beta": 0.0}) for r in baseline_runs]
    fits = compute_fitness(nominal, cfg, baseline="baseline")
    out = fits["loss"]
    return out.model_copy(update={"loss": runs[0].loss if runs else "loss", "frontier": frontier(runs, cfg)})


LossFitness.model_rebuild()
