"""The racing rule (targets/racing.py) on numbers whose answer is known: where it drops, races on and claims,
that its run-level error holds on simulated null runs, and that what it shows does not overstate."""

from __future__ import annotations

import numpy as np
import pytest

from targets.racing import (
    RaceConfig,
    benjamini_hochberg,
    look,
    prior_spread,
    race,
    seed_differences,
    shown,
    shrunk,
    sigma_upper,
)

SIGMA = 0.044


def cfg(**kw) -> RaceConfig:
    return RaceConfig(sigma=SIGMA, **kw)


def test_a_clearly_worse_candidate_is_dropped_at_the_first_look() -> None:
    first = look([-0.2, -0.15], cfg())
    assert first.n == 2 and first.decision == "drop" and first.verdict == "worse"


def test_a_candidate_near_dpo_races_on_and_ends_not_separated() -> None:
    steps = race([0.03, 0.01] * 16, cfg(stages=(2, 4, 8, 16, 32)))
    assert [s.n for s in steps] == [2, 4, 8, 16, 32]
    assert [s.decision for s in steps[:-1]] == ["continue"] * 4
    assert steps[-1].decision == "not_separated" and steps[-1].verdict == "not_separated"
    assert steps[-1].ci_low < 0.02 < steps[-1].ci_high


def test_the_default_race_takes_a_promising_candidate_to_64_seeds() -> None:
    steps = race([0.03, 0.01] * 32, cfg())  # +0.02: worth the seeds, just short of the run-level bar
    assert [s.n for s in steps] == [2, 4, 8, 16, 32, 64]
    assert steps[-1].decision == "not_separated"


def test_a_large_true_advantage_is_claimed_and_two_seeds_never_claim() -> None:
    assert look([0.5, 0.5], cfg()).decision != "better"  # claims only from 8 seeds on
    steps = race([0.2, 0.21, 0.19, 0.2] * 8, cfg())
    assert [s.decision for s in steps] == ["continue", "continue", "better"] and steps[-1].n == 8


def test_a_noisy_candidate_is_judged_by_its_own_spread() -> None:
    # The mean is 0.08 (z = 3.6 on the pilot's σ at 8 seeds) but the seeds swing by ±0.3: not a claim.
    diffs = [0.38, -0.22, 0.38, -0.22, 0.38, -0.22, 0.38, -0.22]
    step = look(diffs, cfg(claim_stages=(8,)))
    assert step.decision != "better"
    calm = look([0.08] * 8, cfg(claim_stages=(8,)))
    assert calm.decision == "better"


def test_the_bar_rises_with_the_candidate_budget() -> None:
    assert (
        cfg(candidate_budget=200).efficacy_z
        > cfg(candidate_budget=50).efficacy_z
        > cfg(candidate_budget=1).efficacy_z
    )


def test_a_first_look_needs_enough_seeds() -> None:
    with pytest.raises(ValueError, match="first look"):
        look([0.1], cfg())


@pytest.mark.parametrize("stages", [(4, 2), (0, 2), ()])
def test_stages_must_increase(stages: tuple[int, ...]) -> None:
    with pytest.raises(ValueError):
        RaceConfig(sigma=SIGMA, stages=stages)


def test_seed_differences_pair_items_and_skip_unpaired_seeds() -> None:
    cand = {"0": [1.0, 2.0], "1": [0.0, 0.0], "2": [1.0]}
    ref = {"0": [0.0, 1.0], "1": [1.0, 1.0], "2": [1.0, 1.0], "3": [5.0, 5.0]}
    assert seed_differences(cand, ref) == [1.0, -1.0]


def test_benjamini_hochberg_is_the_step_up_rule() -> None:
    p = {"a": 0.001, "b": 0.008, "c": 0.039, "d": 0.041, "e": 0.6}
    # m = 5, q = 0.1: thresholds 0.02, 0.04, 0.06, 0.08, 0.1; the largest k with p_(k) ≤ k·q/m is 4
    assert benjamini_hochberg(p, 0.1) == {"a", "b", "c", "d"}
    assert benjamini_hochberg(p, 0.01) == {"a"}
    assert benjamini_hochberg({}, 0.1) == set()


def test_shrinkage_pulls_few_seeds_harder() -> None:
    tau2 = 0.02**2
    assert abs(shrunk(0.1, 2, SIGMA, tau2)) < abs(shrunk(0.1, 32, SIGMA, tau2)) < 0.1
    assert shrunk(0.1, 2, SIGMA, 0.0) == 0.0
    assert prior_spread([(0.0, 4), (0.0, 4)], SIGMA) == 0.0
    assert prior_spread([(0.3, 32), (-0.3, 32)], SIGMA) == pytest.approx(0.09 - SIGMA**2 / 32)


def test_sigma_upper_bound_is_above_the_estimate_and_tightens_with_dof() -> None:
    assert sigma_upper(SIGMA, 10) > sigma_upper(SIGMA, 100) > SIGMA
    with pytest.raises(ValueError):
        sigma_upper(SIGMA, 0)


def test_shown_on_fresh_seeds_covers_and_says_how_many() -> None:
    out = shown([0.05, 0.01, 0.03, 0.02], cfg())
    assert out.n == 4 and out.ci_low < out.diff < out.ci_high and "4 fresh" in out.reason


def test_null_runs_rarely_declare_a_false_best_and_large_effects_are_found() -> None:
    """400 simulated runs of 50 null candidates through `race` itself (not the bench's vectorised copy):
    the share of runs with any false "better" stays under the stated α; a +0.1 candidate is found."""
    rule = cfg(candidate_budget=50)
    rng = np.random.default_rng(7)
    runs_with_false_best = 0
    for _ in range(400):
        draws = rng.normal(0.0, SIGMA, size=(50, 32))
        if any(race(row.tolist(), rule)[-1].decision == "better" for row in draws):
            runs_with_false_best += 1
    assert runs_with_false_best / 400 <= rule.alpha
    found = sum(
        race((0.1 + rng.normal(0, SIGMA, 32)).tolist(), rule)[-1].decision == "better" for _ in range(50)
    )
    assert found >= 45


def test_the_interval_shown_at_a_look_covers_at_least_its_stated_level() -> None:
    rule = cfg(stages=(8,), claim_stages=(8,))
    rng = np.random.default_rng(3)
    hits = [
        (lambda s: s.ci_low <= 0.01 <= s.ci_high)(look((0.01 + rng.normal(0, SIGMA, 8)).tolist(), rule))
        for _ in range(2000)
    ]
    # at least the stated 95% (the larger of σ and the own sd, with t, errs wide), not absurdly wide
    assert 0.95 <= np.mean(hits) <= 0.995
