"""Scoring of the agent-system target: DROP's F1 (the official normalisation), and the seeded percentile
bootstrap behind fitness (ADAS reported a wrong percentile for DROP; here: 2.5 and 97.5)."""

from __future__ import annotations

import random

import numpy as np
import pytest

from targets.agents.scoring import bootstrap, drop_f1, drop_score, normalize_answer, percentile


@pytest.mark.parametrize(
    ("prediction", "gold", "f1"),
    [
        ("Pakistanis and Filipinos", "Pakistanis and Filipinos", 1.0),
        ("the Danes", "Danes", 1.0),  # articles dropped
        ("Danes!", "danes", 1.0),  # case and punctuation
        ("1,000", "1000", 1.0),  # a number keeps its value through punctuation and float normalisation
        ("3.0", "3", 1.0),
        ("4", "3", 0.0),  # a gold number must be matched
        ("3 yards", "4 yards", 0.0),
        ("25 to 44", "under the age of 18 and 25 to 44", 0.55),  # token bags: P=3/3, R=3/8 (no "the")
        ("New York City", "York", 0.5),
        ("", "Danes", 0.0),
        ("well-known", "well known", 1.0),  # hyphens split tokens
    ],
)
def test_drop_f1_cases(prediction: str, gold: str, f1: float) -> None:
    assert drop_f1(prediction, gold) == f1


def test_drop_takes_the_best_gold_and_normalises() -> None:
    assert drop_score("three", ["3", "three"]) == 1.0
    assert drop_score("x", ["", " "]) == 0.0
    assert normalize_answer("The  1,000 Cats!") == "1000.0 cats"


def test_percentile_matches_numpy() -> None:
    rng = random.Random(3)
    for n in (1, 2, 7, 100):
        values = sorted(rng.random() for _ in range(n))
        for q in (0.0, 2.5, 50.0, 97.5, 100.0):
            assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)))


def test_bootstrap_ci_is_the_95_percent_interval_of_a_known_distribution() -> None:
    # 400 Bernoulli(0.5) scores: the mean's sd is 0.025, so the 95% interval is ±1.96·0.025 = ±0.049
    # (a 90% interval would be ±0.041: the tolerance below tells them apart).
    scores = [1.0] * 200 + [0.0] * 200
    boot = bootstrap(scores, n_boot=4000, seed=0)
    assert boot.mean == 0.5 and boot.value == pytest.approx(0.5, abs=0.005)
    assert boot.ci_low == pytest.approx(0.451, abs=0.004)
    assert boot.ci_high == pytest.approx(0.549, abs=0.004)


def test_bootstrap_is_seeded_and_degenerate_cases_hold() -> None:
    rng = random.Random(0)
    scores = [rng.random() for _ in range(50)]
    assert bootstrap(scores, seed=1) == bootstrap(scores, seed=1)
    assert bootstrap(scores, seed=1) != bootstrap(scores, seed=2)
    same = bootstrap([0.7] * 5, seed=0)
    assert (same.value, same.ci_low, same.ci_high) == pytest.approx((0.7, 0.7, 0.7))
    one = bootstrap([1.0], seed=0)
    assert (one.value, one.ci_low, one.ci_high, one.n) == (1.0, 1.0, 1.0, 1)
    with pytest.raises(ValueError, match="no scores"):
        bootstrap([])
