"""The evidence rule (agent.evidence): a paired hierarchical bootstrap over common seeds, and the verdicts
it gives for clearly better, noisy, worse and degenerate inputs."""

from __future__ import annotations

import numpy as np
import pytest

from agent.evidence import compare, next_seeds, paired_bootstrap

N = 100


def scores(shift: float, seeds: tuple[int, ...], noise: float = 0.0, rng: int = 0) -> dict[str, list[float]]:
    """Per-seed item scores: a common base (common random numbers: the same prompts and samples for both
    losses), the loss's shift and per-item noise."""
    base = np.random.default_rng(1000)
    common = {s: base.normal(0.0, 1.0, N) for s in seeds}
    own = np.random.default_rng(rng)
    return {str(s): list(common[s] + shift + own.normal(0.0, noise, N)) for s in seeds}


INCUMBENT = scores(0.0, (0, 1, 2, 3), noise=0.1, rng=1)


def shifted(seed: str, by: float) -> list[float]:
    """The incumbent's scores on one seed, every item moved by `by`: a seed-level effect, no item noise."""
    return [x + by for x in INCUMBENT[seed]]


CASES = [
    # (what, candidate, min_seeds, expected verdict)
    ("clearly better on four seeds", scores(0.3, (0, 1, 2, 3), noise=0.1, rng=2), 2, "best"),
    ("clearly better but one seed", scores(0.3, (0,), noise=0.1, rng=2), 2, "promising"),
    ("clearly better, one seed allowed", scores(0.3, (0,), noise=0.1, rng=2), 1, "best"),
    ("clearly worse", scores(-0.3, (0, 1, 2, 3), noise=0.1, rng=2), 2, "not_better"),
    ("the same loss", INCUMBENT, 2, "not_better"),
    ("noise: one seed up, one down", {"0": shifted("0", 0.3), "1": shifted("1", -0.2)}, 2, "promising"),
    ("worse on both seeds", {"0": shifted("0", -0.01), "1": shifted("1", -0.5)}, 2, "not_better"),
]


@pytest.mark.parametrize(("what", "candidate", "min_seeds", "verdict"), CASES, ids=[c[0] for c in CASES])
def test_verdicts(what: str, candidate: dict, min_seeds: int, verdict: str) -> None:
    ev = compare(candidate, INCUMBENT, min_seeds=min_seeds, n_bootstrap=1000)
    assert ev.verdict == verdict, (what, ev.reason)
    assert ev.seeds == sorted(int(k) for k in candidate)
    assert ev.n_items == N * len(candidate)
    assert ev.diff is not None and ev.diff.ci_low <= ev.diff.value <= ev.diff.ci_high
    assert (ev.verdict == "best") == (ev.p_better >= 0.95 and len(ev.seeds) >= min_seeds)


def test_the_lucky_seed_is_not_best_although_the_item_only_bootstrap_would_call_it_so() -> None:
    """A whole seed shifted up is noise between training runs: resampling only items would call it a win;
    resampling seeds first does not (the winner's curse of evals/results/offline_proposer)."""
    lucky = {k: [x + (0.25 if k == "0" else -0.05) for x in v] for k, v in INCUMBENT.items()}
    ev = compare(lucky, INCUMBENT, n_bootstrap=2000)
    assert ev.diff is not None and ev.diff.value > 0
    assert ev.verdict == "promising" and ev.p_better < 0.95
    d = np.concatenate([np.subtract(lucky[k], INCUMBENT[k]) for k in INCUMBENT])
    rng = np.random.default_rng(0)
    items_only = d[rng.integers(0, d.size, size=(2000, d.size))].mean(axis=1)
    assert (items_only > 0).mean() == 1.0, "the flat bootstrap is fooled"


def test_paired_resampling_sees_a_small_shift_that_the_item_noise_hides() -> None:
    """Both losses share the prompts' big common variance; pairing removes it (same indices for both)."""
    small = scores(0.05, (0, 1, 2, 3), noise=0.02, rng=3)
    ev = compare(small, INCUMBENT)
    assert ev.verdict == "best" and ev.diff is not None and ev.diff.ci_low > 0


def test_reproducible_with_the_seed_and_different_without() -> None:
    cand = scores(0.02, (0, 1, 2, 3), noise=0.3, rng=4)
    a = compare(cand, INCUMBENT, seed=5)
    assert compare(cand, INCUMBENT, seed=5) == a
    other = compare(cand, INCUMBENT, seed=6)
    assert other.diff is not None and a.diff is not None
    assert other.diff.value == a.diff.value and (other.p_better, other.diff.ci_low) != (
        a.p_better,
        a.diff.ci_low,
    )


def test_only_common_seeds_are_compared() -> None:
    cand = scores(0.3, (2, 3, 7, 8), noise=0.1, rng=2)
    ev = compare(cand, INCUMBENT)
    assert ev.seeds == [2, 3] and ev.n_items == 2 * N and ev.verdict == "best"


DEGENERATE = [
    ("no common seed", {"5": [1.0, 2.0]}, {"0": [0.0, 0.0]}, "no seed in common"),
    ("different item counts", {"0": [1.0, 2.0, 3.0]}, {"0": [0.0, 0.0]}, "3 vs 2 items"),
    ("no scores at all", {}, {}, "no seed in common"),
    ("empty seed", {"0": []}, {"0": []}, "0 vs 0 items"),
]


@pytest.mark.parametrize(("what", "cand", "inc", "why"), DEGENERATE, ids=[d[0] for d in DEGENERATE])
def test_degenerate_inputs_give_a_clear_not_better(what: str, cand: dict, inc: dict, why: str) -> None:
    ev = compare(cand, inc)
    assert ev.verdict == "not_better" and ev.diff is None and ev.p_better is None and ev.seeds == []
    assert why in ev.reason and "cannot be shown better" in ev.reason
    with pytest.raises(ValueError, match="nothing to compare"):
        paired_bootstrap(cand, inc)


def test_a_seed_with_mismatched_items_is_dropped_and_the_rest_compared() -> None:
    cand = scores(0.3, (0, 1, 2), noise=0.1, rng=2)
    cand["1"] = cand["1"][:10]
    ev = compare(cand, INCUMBENT)
    assert ev.seeds == [0, 2] and ev.verdict == "best"


def test_one_seed_resamples_items_only_and_cannot_be_best_by_default() -> None:
    cand = scores(0.5, (0,), noise=0.05, rng=2)
    ev = compare(cand, INCUMBENT)
    assert ev.p_better == 1.0 and ev.verdict == "promising" and "1 common seed(s), 2 needed" in ev.reason


def test_next_seeds_are_fresh_for_both() -> None:
    assert next_seeds({0, 1, 3}, 3) == [2, 4, 5]
    assert next_seeds(set(), 2) == [0, 1]
