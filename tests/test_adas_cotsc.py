"""CoT-SC at matched token cost, the standing baseline of an agent system (issue 18.8): the vote curve from
one measurement, the chains a candidate's tokens pay for, and a paired test whose null rate is exact."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from adas_helpers import FAST, endpoint, inner_responder, write_mgsm
from fake_openai import FakeOpenAI

from targets.agents.benchmarks import load_benchmark
from targets.agents.cotsc import VoteCurve, compare, sign_flip_p, vote_scores
from targets.agents.target import AgentSystemTarget, AgentTargetConfig


def test_the_vote_curve_scores_the_majority_of_every_subset(tmp_path: Path) -> None:
    bench = load_benchmark("mgsm", str(write_mgsm(tmp_path / "mgsm", n=1)))
    item = bench.items[0]  # "What is 1 plus 1?" → 2
    # chains: right, wrong, right, failed (no vote)
    curve = vote_scores(bench, item, ["2", "3", "2", None])
    assert curve[0] == pytest.approx(100 * 2 / 4)  # one chain: right in 2 of 4, the failed one scores 0
    # two chains: {2,3}→2 (tie to the first), {2,2}→2, {2,-}→2, {3,2}→3, {3,-}→3, {2,-}→2: 4 of 6
    assert curve[1] == pytest.approx(100 * 4 / 6)
    assert curve[3] == 100.0  # all four: 2 votes to 1


def test_a_candidate_meets_the_chains_its_tokens_pay_for() -> None:
    curve = VoteCurve(
        samples=5, tokens_per_chain=100.0, item_scores={"a": [50, 60, 70, 80, 90], "b": [0, 10, 20, 30, 40]}
    )
    scores = {"0": [100.0, 0.0]}
    assert compare(curve, ["a", "b"], scores, tokens=250).chains == 2
    cheap = compare(curve, ["a", "b"], scores, tokens=40)
    assert cheap.chains == 1 and cheap.within_cost and cheap.baseline_score == 25.0
    dear = compare(curve, ["a", "b"], scores, tokens=900)
    assert dear.chains == 5 and not dear.within_cost  # more than every CoT-SC measured: never "better"
    assert dear.diff == pytest.approx(((100 - 90) + (0 - 40)) / 2)


def test_the_sign_flip_p_value_is_exact_and_holds_its_rate_under_the_null() -> None:
    assert sign_flip_p([1.0, 1.0, 1.0]) == pytest.approx(2 / 8)  # all plus or all minus of 8 flips
    assert sign_flip_p([0.0, 0.0]) == 1.0
    rng = random.Random(7)
    # symmetric item differences (the null): p ≤ 0.05 about 5% of the time, never much more
    ps = [sign_flip_p([rng.gauss(0, 10) for _ in range(10)]) for _ in range(600)]
    rate = sum(p <= 0.05 for p in ps) / len(ps)
    assert 0.02 <= rate <= 0.08, rate
    # and with more items than it enumerates, by random flips
    big = [sign_flip_p([rng.gauss(0, 10) for _ in range(20)], seed=i) for i in range(200)]
    assert 0.0 <= sum(p <= 0.05 for p in big) / len(big) <= 0.1
    assert sign_flip_p([5.0] * 20) < 0.001


def test_the_curve_is_measured_once_and_a_forged_cache_is_not_believed(tmp_path: Path) -> None:
    """The baseline is a score reference: measured once per target and items, kept sealed in the cache, so a
    second run reads it without an inner call, and a file written by anything else is measured again."""
    data, cache = write_mgsm(tmp_path / "mgsm", n=2), tmp_path / "cache"
    with FakeOpenAI(model="inner-model") as inner:
        inner.default = inner_responder()

        def curve_of_a_new_target() -> VoteCurve | str:
            options = FAST | {"n_valid": 2, "baseline_chains": 2}
            config = AgentTargetConfig(benchmark="mgsm", data_path=str(data), **options)
            target = AgentSystemTarget(config, inner=endpoint(inner), cache_dir=cache)
            try:
                return target.cot_sc_curve(target.items())
            finally:
                target.close()

        first = curve_of_a_new_target()
        assert isinstance(first, VoteCurve) and first.samples == 2 and first.calls >= 4
        measured = len(inner.requests)
        assert curve_of_a_new_target() == first and len(inner.requests) == measured, "read from the cache"
        [path] = (cache / "adas").glob("cot_sc-*.json")
        forged = first.model_copy(update={"item_scores": {k: [100.0, 100.0] for k in first.item_scores}})
        path.write_text(forged.model_dump_json(), encoding="utf-8")
        again = curve_of_a_new_target()
        assert isinstance(again, VoteCurve) and again.item_scores == first.item_scores != forged.item_scores
        assert len(inner.requests) == 2 * measured, "the forged file was measured again, not believed"
