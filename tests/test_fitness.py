"""The fitness statistics: failures cost, CIs cover, paired comparisons see what unpaired ones miss."""

from __future__ import annotations

import numpy as np
import pytest

from targets.dpo.fitness import FitnessConfig, RunResult, compute_fitness, frontier, pairwise_separation

BETAS = (0.1, 1.0)
SEEDS = (0, 1, 2)
N = 200


def make_runs(
    name: str,
    reward_shift: float,
    *,
    noise_seed: int = 0,
    kl: float = 1.0,
    common: np.ndarray | None = None,
    failed: set[tuple[float, int]] = frozenset(),
) -> list[RunResult]:
    rng = np.random.default_rng(noise_seed)
    runs = []
    for beta in BETAS:
        for seed in SEEDS:
            if (beta, seed) in failed:
                runs.append(
                    RunResult(loss=name, beta=beta, seed=seed, status="diverged", reason="NaN at step 3")
                )
                continue
            base = common[seed] if common is not None else rng.normal(0, 0.5, N)
            rewards = base + reward_shift + rng.normal(0, 0.01, N)
            runs.append(
                RunResult(
                    loss=name,
                    beta=beta,
                    seed=seed,
                    status="ok",
                    rewards=list(rewards),
                    kls=list(np.full(N, kl)),
                )
            )
    return runs


def test_mean_aggregate_is_the_mean_objective_and_ci_contains_it() -> None:
    runs = make_runs("a", 0.2, kl=2.0)
    cfg = FitnessConfig(kl_penalty=0.1, aggregate="mean")
    fit = compute_fitness({"a": runs}, cfg, baseline=None)["a"].fitness
    expected = np.mean([np.mean(r.rewards) - 0.1 * 2.0 for r in runs])
    assert fit.value == pytest.approx(expected)
    assert fit.ci_low < fit.value < fit.ci_high


def test_failed_run_scores_the_floor_and_is_reported_at_its_beta() -> None:
    cfg = FitnessConfig(kl_penalty=0.0, failure_score=-1.0)
    good = make_runs("good", 0.0, noise_seed=1)
    broken = make_runs("broken", 0.0, noise_seed=1, failed={(1.0, 0)})
    fits = compute_fitness({"good": good, "broken": broken}, cfg, baseline="good")
    assert fits["broken"].fitness.value < fits["good"].fitness.value
    point = next(p for p in fits["broken"].frontier if p.beta == 1.0)
    assert point.n_failed == 1 and "diverged" in point.statuses
    assert any("NaN at step 3" in r for r in point.reasons)


def test_paired_comparison_separates_a_small_shift_under_large_shared_noise() -> None:
    rng = np.random.default_rng(7)
    common = {s: rng.normal(0, 1.0, N) for s in SEEDS}  # shared prompts × sampling noise
    base = make_runs("dpo", 0.0, noise_seed=2, common=common)
    better = make_runs("better", 0.03, noise_seed=3, common=common)
    fits = compute_fitness({"dpo": base, "better": better}, FitnessConfig(kl_penalty=0.0), baseline="dpo")
    vs = fits["better"].vs_baseline
    assert vs is not None and vs.separated and vs.diff.ci_low > 0
    assert vs.prob_better > 0.99
    # Unpaired, the two fitness CIs overlap: the pairing is what makes the difference visible.
    assert fits["better"].fitness.ci_low < fits["dpo"].fitness.ci_high


def test_equal_losses_are_not_separated() -> None:
    rng = np.random.default_rng(11)
    common = {s: rng.normal(0, 1.0, N) for s in SEEDS}
    a = make_runs("a", 0.0, noise_seed=4, common=common)
    b = make_runs("b", 0.0, noise_seed=5, common=common)
    pair = pairwise_separation({"a": a, "b": b}, ["a", "b"], FitnessConfig(kl_penalty=0.0))[("a", "b")]
    assert not pair.separated


def test_bootstrap_is_reproducible_with_its_seed() -> None:
    runs = {"a": make_runs("a", 0.1)}
    one = compute_fitness(runs, FitnessConfig(bootstrap_seed=3), baseline=None)["a"].fitness
    two = compute_fitness(runs, FitnessConfig(bootstrap_seed=3), baseline=None)["a"].fitness
    other = compute_fitness(runs, FitnessConfig(bootstrap_seed=4), baseline=None)["a"].fitness
    assert one == two
    assert (one.ci_low, one.ci_high) != (other.ci_low, other.ci_high)


def test_frontier_reports_mean_reward_and_kl_per_beta() -> None:
    runs = make_runs("a", 0.5, kl=3.0)
    points = frontier(runs, FitnessConfig(kl_penalty=0.1))
    assert [p.beta for p in points] == list(BETAS)
    assert all(p.kl == pytest.approx(3.0) for p in points)
    assert all(p.objective == pytest.approx(p.reward - 0.3) for p in points)


def test_mismatched_grids_are_an_error_not_a_silent_score() -> None:
    a = make_runs("a", 0.0)
    b = [r for r in make_runs("b", 0.0) if not (r.beta == 1.0 and r.seed == 2)]
    with pytest.raises(ValueError, match="no run of b"):
        compute_fitness({"a": a, "b": b}, FitnessConfig())


def test_max_aggregate_scores_each_loss_at_its_best_beta() -> None:
    runs = make_runs("a", 0.0, kl=0.0)
    for r in runs:  # β=1.0 is much better than β=0.1
        if r.beta == 1.0:
            r.rewards = [x + 0.5 for x in r.rewards]
    mean_cfg = FitnessConfig(kl_penalty=0.0, aggregate="mean")
    mean_fit = compute_fitness({"a": runs}, mean_cfg, baseline=None)["a"].fitness
    max_fit = compute_fitness({"a": runs}, FitnessConfig(kl_penalty=0.0), baseline=None)[
        "a"
    ].fitness  # default
    best = np.mean([np.mean(r.rewards) for r in runs if r.beta == 1.0])
    assert max_fit.value == pytest.approx(best)
    assert mean_fit.value == pytest.approx(np.mean([np.mean(r.rewards) for r in runs]))
    assert max_fit.value > mean_fit.value + 0.2
    assert max_fit.ci_low < max_fit.value < max_fit.ci_high
