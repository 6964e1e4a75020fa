"""The score every surface shows (issue 16.5): a candidate's difference to the baseline on seeds that chose
nothing, with its interval and n, 'better' only by Benjamini–Hochberg over the run, ranked by a shrunk
estimate. Real run directories and seed files, as the confirm step writes them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import t as student_t

from agent.fresh import CONFIRM, FRESH, Fresh, baseline_verdicts, confirmation_claims, fresh_vs_baseline
from agent.leaderboard import candidate_rows, ranked
from agent.report.collect import collect
from agent.runs import RunDir, RunMeta
from targets.racing import RaceConfig, shrunk_differences

RULES = RaceConfig(sigma=0.05)


@pytest.fixture
def run(tmp_path: Path) -> RunDir:
    return RunDir.create(tmp_path / "runs", RunMeta(run_id="fresh", target="dpo", model="offline"))


def add(
    run: RunDir,
    cid: str,
    index: int,
    advantage: float,
    seeds: range,
    noise: float = 0.03,
    confirmed: bool = False,
) -> None:
    """A recorded candidate whose seed files hold its item scores and DPO's, `advantage` apart on average
    (`confirmed`: all of them its confirmation seeds)."""
    rng = np.random.default_rng(index)
    if confirmed:
        run.write_candidate_file(cid, CONFIRM, {"seeds": list(seeds)})
    for seed in seeds:
        base = rng.normal(0.1, 0.2, size=16)
        mine = base + advantage + rng.normal(0.0, noise)  # a seed's shift: the training noise
        saved = {"seed": seed, "scores": mine.tolist(), "baseline_scores": base.tolist()}
        run.write_candidate_file(cid, f"seeds/{seed}.json", saved)
    fitness = {"value": 0.5 - index / 10, "ci_low": 0.4 - index / 10, "ci_high": 0.6 - index / 10}
    record = {"id": cid, "generation": index, "name": cid, "status": "evaluated", "fitness": fitness}
    run.write_candidate_file(cid, "record.json", record)
    fresh = fresh_vs_baseline(run, cid, RULES)
    assert fresh is not None
    run.write_candidate_file(cid, FRESH, fresh.model_dump(mode="json"))


def test_the_difference_pairs_each_seed_with_the_baseline_and_says_n(run: RunDir) -> None:
    add(run, "c1", 1, 0.10, range(2, 10))
    fresh = Fresh.model_validate(json.loads((run.root / "candidates" / "c1" / FRESH).read_text()))
    assert fresh.n_seeds == 8 and fresh.seeds == list(range(2, 10))
    assert 0.05 < fresh.diff < 0.15 and fresh.ci_low < fresh.diff < fresh.ci_high
    # σ (its own spread is smaller), with Student's t on 7 degrees of freedom
    half = student_t.ppf(0.975, 7) * 0.05 / 8**0.5
    assert fresh.ci_high - fresh.ci_low == pytest.approx(2 * half, rel=1e-3)
    run.write_candidate_file("c2", "seeds/2.json", {"seed": 2, "scores": [0.1], "baseline_scores": None})
    assert fresh_vs_baseline(run, "c2", RULES) is None, "no baseline on that seed: nothing to show"


def test_a_claimed_best_is_shown_from_its_confirmation_seeds_alone(run: RunDir) -> None:
    """The seeds that crowned it overstate it: once it has scores on its confirmation seeds
    (`seeds/confirm.json`, written by the confirm step), only those count."""
    for seed in range(2, 10):  # the race's seeds: lucky, +0.2 a seed
        run.write_candidate_file(
            "c1", f"seeds/{seed}.json", {"seed": seed, "scores": [0.3], "baseline_scores": [0.1]}
        )
    raced = fresh_vs_baseline(run, "c1", RULES)
    assert raced is not None and raced.basis == "fresh" and raced.diff == pytest.approx(0.2)
    run.write_candidate_file("c1", CONFIRM, {"seeds": [10, 11, 12, 13]})
    assert fresh_vs_baseline(run, "c1", RULES) == raced, "no confirmation scores yet: the race's stand"
    for seed in (10, 11, 12, 13):  # after the claim: +0.01 a seed
        run.write_candidate_file(
            "c1", f"seeds/{seed}.json", {"seed": seed, "scores": [0.11], "baseline_scores": [0.1]}
        )
    confirmed = fresh_vs_baseline(run, "c1", RULES)
    assert confirmed is not None and confirmed.basis == "confirmation"
    assert confirmed.seeds == [10, 11, 12, 13] and confirmed.diff == pytest.approx(0.01)


def test_evaluation_seeds_count_unless_they_chose_something(run: RunDir) -> None:
    """A target that selects nothing on its default seeds (the optimizer example) pairs them with its
    baseline's item scores; DPO's β-choosing seeds (`details.selection_seeds`) never count."""
    mine = {"0": [0.5, 0.7], "1": [0.6, 0.6], "2": [0.4, 0.8], "3": [0.9, 0.9]}
    base = {k: [v[0] - 0.1, v[1] - 0.1] for k, v in mine.items()}
    evaluation = {"item_scores": mine, "baseline_item_scores": base, "details": {"selection_seeds": [0, 1]}}
    run.write_candidate_file("c1", "evaluation.json", evaluation)
    fresh = fresh_vs_baseline(run, "c1", RULES)
    assert fresh is not None and fresh.seeds == [2, 3] and fresh.diff == pytest.approx(0.1)
    run.write_candidate_file("c1", "evaluation.json", evaluation | {"details": {}})
    own = fresh_vs_baseline(run, "c1", RaceConfig())  # no σ: its own spread, from 4 seeds on
    assert own is not None and own.seeds == [0, 1, 2, 3]
    del base["3"]
    run.write_candidate_file("c1", "evaluation.json", evaluation | {"details": {}})
    assert fresh_vs_baseline(run, "c1", RaceConfig()) is None, "3 seeds and no σ: no interval to show"


def test_better_than_the_baseline_only_on_confirmation_seeds_by_fdr_over_the_confirmed() -> None:
    """Two stages on separate seeds: Benjamini–Hochberg over the run on the seeds raced selects candidates
    for confirmation; BH over the confirmed, on their confirmation seeds alone, says `better`."""
    strong = Fresh(
        diff=0.2, ci_low=0.15, ci_high=0.25, n_seeds=16, seeds=[], p_value=1e-6, confidence=0.95,
        basis="confirmation", selection_p=1e-4,
    )  # fmt: skip
    lucky = Fresh(
        diff=0.05,
        ci_low=0.001,
        ci_high=0.1,
        n_seeds=2,
        seeds=[],
        p_value=0.02,
        confidence=0.95,
        selection_p=0.02,
    )
    worse = Fresh(diff=-0.2, ci_low=-0.3, ci_high=-0.1, n_seeds=2, seeds=[], p_value=0.999, confidence=0.95)
    nulls = {
        f"n{i}": lucky.model_copy(update={"diff": 0.0, "p_value": 0.5, "selection_p": 0.5}) for i in range(20)
    }
    run = {"strong": strong, "lucky": lucky, "worse": worse, **nulls}
    verdicts = baseline_verdicts(run, q=0.1)
    assert verdicts["strong"] == "better" and verdicts["worse"] == "worse"
    assert verdicts["lucky"] == "not_separated"
    assert confirmation_claims(run, q=0.1) == set(), "p 0.02 among 23 is not even worth confirming at FDR 0.1"
    # Alone, BH calls it better on the seeds it raced on: not `better` until confirmed, but to be confirmed
    assert baseline_verdicts({"lucky": lucky}, q=0.1)["lucky"] == "not_separated"
    assert confirmation_claims({"lucky": lucky, "strong": strong}, q=0.1) == {"lucky"}
    # Confirmed at p 0.02 on its own seeds: among the confirmed (2 of them) that is a discovery at 0.1,
    # whatever the 20 nulls never selected
    confirmed = lucky.model_copy(update={"basis": "confirmation"})
    assert baseline_verdicts({**run, "lucky": confirmed}, q=0.1)["lucky"] == "better"
    flopped = lucky.model_copy(update={"basis": "confirmation", "p_value": 0.4, "diff": 0.005})
    assert baseline_verdicts({**run, "lucky": flopped}, q=0.1)["lucky"] == "not_separated"
    assert confirmation_claims({"lucky": confirmed}, q=0.1) == set(), "confirmed once"


def test_a_sure_difference_has_p_near_zero_not_one(run: RunDir) -> None:
    """Far past σ on two seeds, the normal tail underflows to p = 0.0: shown as such (a falsy 0.0 once
    became p = 1.0, and a certain winner was no discovery)."""
    for seed in (2, 3):
        run.write_candidate_file(
            "c1", f"seeds/{seed}.json", {"seed": seed, "scores": [9.0], "baseline_scores": [0.0]}
        )
    fresh = fresh_vs_baseline(run, "c1", RaceConfig(sigma=0.01))
    assert fresh is not None and fresh.p_value < 1e-12


def test_shrinkage_ranks_a_sure_gain_above_a_larger_noisy_one() -> None:
    shrunk = shrunk_differences(
        {"sure": (0.08, 0.06, 0.10), "noisy": (0.12, -0.10, 0.34), "worse": (-0.15, -0.2, -0.1)}
    )
    assert shrunk["sure"] > shrunk["noisy"] > 0 > shrunk["worse"]
    assert abs(shrunk["noisy"]) < 0.12, "pulled toward 0"


def test_leaderboard_and_report_show_the_fresh_difference_and_rank_by_it(run: RunDir) -> None:
    add(run, "c1", 1, -0.20, range(2, 4))  # the highest in-sample fitness, clearly worse on fresh seeds
    add(run, "c2", 2, 0.15, range(2, 18), confirmed=True)
    add(run, "c3", 3, 0.00, range(2, 6))
    rows = {r.id: r for r in candidate_rows(run)}
    assert (rows["c2"].vs_n, rows["c2"].vs_verdict) == (16, "better")
    assert rows["c1"].vs_verdict == "worse" and rows["c3"].vs_verdict == "not_separated"
    assert [r.id for r in ranked(list(rows.values()))] == ["c2", "c3", "c1"], "never the in-sample order"
    report = {c.id: c for c in collect(run).candidates}
    assert report["c2"].vs_n == 16 and report["c2"].vs_verdict == "better"
    assert [c.id for c in collect(run).ranked()] == ["c2", "c3", "c1"]
