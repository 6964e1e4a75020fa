"""Evidence before best in the loop: the confirm step's rounds of extra seeds, what it keeps on disk, and a
real tiny-preset run killed with -9 in the middle of a confirm round, then resumed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import zlib
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from agent_helpers import REPO, logged_events, start_cli

from agent.config import EvidenceConfig
from agent.confirm import Confirmer
from agent.events import EventLog, read_events
from agent.fresh import baseline_verdicts, read_fresh
from agent.run_state import RunState
from agent.runs import RunDir, RunMeta
from targets.base import Evaluation

N = 60


class SyntheticTarget:
    """A target whose item scores are known: a candidate's code is its true quality (a float); every seed
    adds a shared offset (common random numbers) and the candidate's own noise. It counts evaluations, so
    that a test can see that nothing is evaluated twice."""

    name = "synthetic"

    def __init__(self, noise: float = 0.05) -> None:
        self.noise = noise
        self.calls: list[tuple[str, int]] = []
        self.crash_on: tuple[str, int] | None = None

    def evaluate(self, code: str, name: str, seeds: list[int] | None = None) -> Evaluation:
        seeds = [0] if seeds is None else seeds
        out = {}
        for seed in seeds:
            if self.crash_on == (code, seed):
                raise KeyboardInterrupt("killed in the middle of a training")
            self.calls.append((code, seed))
            common = np.random.default_rng(seed).normal(0.0, 1.0, N)
            own = np.random.default_rng([seed, zlib.crc32(code.encode())]).normal(0.0, self.noise, N)
            out[str(seed)] = list(common + float(code) + own)
        return Evaluation(status="ok", item_scores=out, details={"beta": 0.5})


def _candidate(run: RunDir, target: SyntheticTarget, cid: str, quality: float) -> dict[str, Any]:
    """A candidate evaluated on its default seed, with its record on disk (as `record` leaves it)."""
    evaluation = target.evaluate(str(quality), cid).model_dump(mode="json")
    run.write_candidate_file(cid, "evaluation.json", evaluation)
    run.write_candidate_file(cid, "record.json", {"id": cid, "name": cid, "code": str(quality)})
    return evaluation


def _confirmer(run: RunDir, target: SyntheticTarget, **cfg: Any) -> tuple[Confirmer, EventLog]:
    log = EventLog(run.events_path, run.run_id)
    logged = RunState.of(read_events(run.events_path)).evidenced
    config = EvidenceConfig(**({"rule": "bootstrap", "extra_rounds": 2, "seeds_per_round": 2} | cfg))
    return Confirmer(run, target, config, log, logged), log


def _evidence(run: RunDir) -> list[dict[str, Any]]:
    return [e.payload | {"cand": e.candidate} for e in read_events(run.events_path) if e.kind == "evidence"]


@pytest.fixture
def run(tmp_path: Path) -> RunDir:
    return RunDir.create(tmp_path / "runs", RunMeta(run_id="syn", target="synthetic", model="offline"))


def test_first_then_a_better_candidate_is_confirmed_on_fresh_seeds_for_both(run: RunDir) -> None:
    target = SyntheticTarget()
    confirmer, _ = _confirmer(run, target)
    first = confirmer.decide("c1", "0.0", "c1", _candidate(run, target, "c1", 0.0), None)
    assert first.verdict == "first"
    ev = confirmer.decide("c2", "0.3", "c2", _candidate(run, target, "c2", 0.3), "c1")
    assert ev.verdict == "best" and ev.seeds == [0, 1, 2]
    events = _evidence(run)
    assert [(e["cand"], e["verdict"], e["round"], e["final"], e["seeds"]) for e in events] == [
        ("c1", "first", 0, True, [0]),
        ("c2", "promising", 0, False, [0]),  # one seed: the seed-to-seed noise is not measured yet
        ("c2", "best", 1, True, [0, 1, 2]),
    ]
    assert set(events[0]) == {
        "verdict",
        "incumbent",
        "diff",
        "p_better",
        "p_value",
        "rule",
        "confidence",
        "seeds",
        "round",
        "final",
    } | {"cand"}
    assert (
        events[2]["incumbent"] == "c1" and events[2]["p_better"] >= 0.95 and events[2]["diff"]["ci_low"] > 0
    )
    for cid in ("c1", "c2"):
        for seed in (1, 2):
            saved = run.read_candidate_json(cid, f"seeds/{seed}.json")
            assert saved is not None and len(saved["scores"]) == N, (cid, seed)
    assert sorted(target.calls) == sorted(
        [("0.0", 0), ("0.3", 0), ("0.3", 1), ("0.3", 2), ("0.0", 1), ("0.0", 2)]
    )
    assert run.read_candidate_json("c2", "seeds/plan.json") == {"incumbent": "c1", "rounds": [[1, 2], [3, 4]]}
    assert [r["verdict"] for r in run.read_candidate_json("c2", "evidence.json")["rounds"]] == [
        "promising",
        "best",
    ]
    assert run.read_candidate_json("c1", "evidence.json")["rounds"][0]["verdict"] == "first"


def test_a_worse_candidate_costs_no_extra_seed(run: RunDir) -> None:
    target = SyntheticTarget()
    confirmer, _ = _confirmer(run, target)
    confirmer.decide("c1", "0.2", "c1", _candidate(run, target, "c1", 0.2), None)
    ev = confirmer.decide("c2", "0.0", "c2", _candidate(run, target, "c2", 0.0), "c1")
    assert ev.verdict == "not_better" and ev.diff is not None and ev.diff.value < 0
    assert [(e["verdict"], e["final"]) for e in _evidence(run)][-1] == ("not_better", True)
    assert len(target.calls) == 2 and not (run.root / "candidates" / "c2" / "seeds" / "0.json").exists()


def test_a_noisy_tie_stays_promising_until_the_rounds_run_out(run: RunDir) -> None:
    target = SyntheticTarget(noise=1.0)
    confirmer, _ = _confirmer(run, target, extra_rounds=2, seeds_per_round=1)
    confirmer.decide("c1", "0.0", "c1", _candidate(run, target, "c1", 0.0), None)
    ev = confirmer.decide("c2", "0.01", "c2", _candidate(run, target, "c2", 0.01), "c1")
    rounds = [e for e in _evidence(run) if e["cand"] == "c2"]
    if rounds[0]["verdict"] != "promising":
        pytest.fail(f"the tie was expected to lead by chance on seed 0: {rounds[0]}")
    seeds = [e["seeds"] for e in rounds]
    assert all(len(a) < len(b) for a, b in pairwise(seeds)), "each round adds seeds"
    assert [e["final"] for e in rounds] == [False] * (len(rounds) - 1) + [True]
    assert ev.verdict in ("promising", "not_better")
    if ev.verdict == "promising":  # rounds ran out: promising with final=true means unconfirmed
        assert len(rounds) == 3 and rounds[-1]["verdict"] == "promising"


def test_a_kill_in_a_round_then_a_rerun_evaluates_nothing_twice_and_logs_once(run: RunDir) -> None:
    target = SyntheticTarget()
    confirmer, _ = _confirmer(run, target)
    confirmer.decide("c1", "0.0", "c1", _candidate(run, target, "c1", 0.0), None)
    evaluation = _candidate(run, target, "c2", 0.3)
    target.crash_on = ("0.0", 1)  # the incumbent's training of round 1, after the candidate's was kept
    with pytest.raises(KeyboardInterrupt):
        confirmer.decide("c2", "0.3", "c2", evaluation, "c1")
    assert run.read_candidate_json("c2", "seeds/1.json") is not None, "kept before the step returned"
    target.crash_on = None
    before = list(target.calls)
    again, _ = _confirmer(run, target)  # a new process: the logged set comes back from the event log
    ev = again.decide("c2", "0.3", "c2", evaluation, "c1")
    assert ev.verdict == "best"
    assert target.calls[len(before) :] == [("0.0", 1), ("0.0", 2)], "only what the kill lost"
    assert len(target.calls) == len(set(target.calls))
    keys = [(e["cand"], e["round"]) for e in _evidence(run)]
    assert keys == [("c1", 0), ("c2", 0), ("c2", 1)], "each decision logged once"
    third, _ = _confirmer(run, target)
    third.decide("c2", "0.3", "c2", evaluation, "c1")
    assert len(target.calls) == len(set(target.calls)) and len(_evidence(run)) == 3


def test_the_incumbents_extra_seeds_are_kept_and_a_new_challenger_gets_fresh_ones(run: RunDir) -> None:
    target = SyntheticTarget()
    confirmer, _ = _confirmer(run, target, extra_rounds=1, seeds_per_round=2)
    confirmer.decide("c1", "0.0", "c1", _candidate(run, target, "c1", 0.0), None)
    assert confirmer.decide("c2", "0.3", "c2", _candidate(run, target, "c2", 0.3), "c1").verdict == "best"
    ev = confirmer.decide("c3", "0.31", "c3", _candidate(run, target, "c3", 0.31), "c2")
    assert run.read_candidate_json("c3", "seeds/plan.json")["rounds"] == [[3, 4]], "fresh for both"
    assert ev.seeds == [0, 3, 4] and ("0.3", 3) in target.calls
    assert confirmer.scores("c2").keys() == {"0", "1", "2", "3", "4"}, "the incumbent keeps every seed"
    assert len(target.calls) == len(set(target.calls))


@pytest.mark.parametrize(
    ("verdicts", "order"),
    [
        (("first", "promising", "not_better", None), ["c1", "c2", "c3", "c4"]),
        (("first", "promising", "best", None), ["c3", "c2", "c1", "c4"]),
        ((None, None, None, None), ["c2", "c1", "c3", "c4"]),  # a run from before evidence: by fitness
    ],
)
def test_the_leaderboard_puts_the_incumbent_first_whatever_its_point_fitness(
    run: RunDir, verdicts: tuple, order: list[str]
) -> None:
    from agent.leaderboard import candidate_rows, incumbent, ranked

    fitness = (0.1, 0.3, 0.05, None)
    for i, (verdict, fit) in enumerate(zip(verdicts, fitness, strict=True), start=1):
        record = {"id": f"c{i}", "generation": i, "name": f"c{i}", "status": "evaluated" if fit else "failed"}
        record |= {"fitness": {"value": fit, "ci_low": fit - 0.1, "ci_high": fit + 0.1} if fit else None}
        run.write_candidate_file(f"c{i}", "record.json", record | {"verdict": verdict})
    rows = candidate_rows(run)
    assert [r.id for r in ranked(rows)] == order
    top = incumbent(rows)
    assert (top.id if top else None) == (order[0] if verdicts[0] else None)


# ---------------------------------------------------------------- the race (the default rule)


class LuckyOnItsOwnSeeds(SyntheticTarget):
    """Like SyntheticTarget, but each candidate's default evaluation chose something (a β) on seed 0 and
    looks far better there than it is: what a race must never score."""

    def evaluate(self, code: str, name: str, seeds: list[int] | None = None) -> Evaluation:
        out = super().evaluate(code, name, seeds)
        if seeds is None:
            out.item_scores = {k: [x + 1.0 for x in v] for k, v in out.item_scores.items()}
            out.details["selection_seeds"] = [0]
        return out


def _race(run: RunDir, target: SyntheticTarget, **cfg: Any) -> Confirmer:
    return _confirmer(run, target, **({"rule": "race", "sigma": 0.01} | cfg))[0]


def test_race_null_challengers_are_never_best_and_a_large_advantage_is(run: RunDir) -> None:
    target = SyntheticTarget()
    confirmer = _race(run, target)
    assert confirmer.decide("c1", "0.0", "c1", _candidate(run, target, "c1", 0.0), None).verdict == "first"
    for i in range(2, 12):  # ten copies of the incumbent under different texts (and own noise)
        code = "0." + "0" * i
        ev = confirmer.decide(f"c{i}", code, f"c{i}", _candidate(run, target, f"c{i}", float(code)), "c1")
        assert ev.verdict == "not_better" and ev.rule == "race", (i, ev.reason)
    ev = confirmer.decide("big", "0.3", "big", _candidate(run, target, "big", 0.3), "c1")
    assert ev.verdict == "best" and ev.seeds == list(range(8)) and ev.p_value < 1e-3  # seed 0 chose nothing
    assert "false per run" in ev.tested_at and ev.diff.ci_low > 0.2
    verdicts = [r["verdict"] for r in run.read_candidate_json("big", "evidence.json")["rounds"]]
    assert verdicts == ["promising", "promising", "best"]  # 2, 4, then claimed at 8 seeds
    extra = [s for c, s in target.calls if c == "0.0" and s > 0]  # seed 0: every default evaluation
    assert sorted(extra) == list(range(1, 8)), "the incumbent trained twice on a seed, or not on each"


def test_race_never_scores_the_seeds_a_candidate_chose_on(run: RunDir) -> None:
    target = LuckyOnItsOwnSeeds()
    confirmer = _race(run, target)
    confirmer.decide("c1", "0.0", "c1", _candidate(run, target, "c1", 0.0), None)
    # +1.0 on seed 0 (where its β was chosen), equal to the incumbent everywhere else
    ev = confirmer.decide("c2", "0.00", "c2", _candidate(run, target, "c2", 0.0), "c1")
    assert ev.verdict == "not_better" and 0 not in ev.seeds
    assert run.read_candidate_json("c2", "seeds/plan.json")["seeds"][:2] == [1, 2]


def test_race_without_a_measured_sigma_decides_nothing_on_two_seeds(run: RunDir) -> None:
    target = SyntheticTarget()
    confirmer = _race(run, target, sigma=None, stages=(2, 4))
    confirmer.decide("c1", "0.0", "c1", _candidate(run, target, "c1", 0.0), None)
    ev = confirmer.decide("c2", "-0.5", "c2", _candidate(run, target, "c2", -0.5), "c1")
    rounds = run.read_candidate_json("c2", "evidence.json")["rounds"]
    assert [r["verdict"] for r in rounds] == ["promising", "not_better"] and rounds[0]["diff"] is None
    assert ev.seeds == [0, 1, 2, 3] and ev.diff.ci_high < 0


class AgainstABaseline(SyntheticTarget):
    """Each evaluation also carries the baseline's item scores on the same seeds (quality 0, the same
    shared offsets), as the DPO target's does; `lucky` is +0.3 on seeds 0 and 1 (where its race ends) and no
    better than the baseline on any other: a candidate its race's seeds flatter."""

    def evaluate(self, code: str, name: str, seeds: list[int] | None = None) -> Evaluation:
        base = super().evaluate("0", "baseline", seeds)
        self.calls = [c for c in self.calls if c[0] != "0"]  # the baseline's runs are not the candidate's
        if code == "lucky":
            out = super().evaluate("0.0000", name, seeds)
            out.item_scores = {k: [x + 0.3 * (int(k) < 2) for x in v] for k, v in out.item_scores.items()}
        else:
            out = super().evaluate(code, name, seeds)
        out.baseline_item_scores = base.item_scores
        return out


def test_better_than_the_baseline_stands_only_on_confirmation_seeds(run: RunDir) -> None:
    """A candidate Benjamini–Hochberg calls better than the baseline on the seeds it raced on is trained on
    confirmation seeds at once, the incumbent as much as a challenger, and the claim stands or falls on
    those alone: the truly better one is `better`, the one its race seeds flattered is not."""
    target = AgainstABaseline()
    confirmer = _race(run, target, confirm_seeds=4, stages=(2, 4, 8))
    assert (
        confirmer.decide("good", "0.3", "good", _candidate(run, target, "good", 0.3), None).verdict == "first"
    )
    good = read_fresh(run, "good")
    assert good is not None and good.basis == "confirmation" and good.seeds == [2, 3, 4, 5], good
    assert good.diff > 0.25
    ev = confirmer.decide("lucky", "lucky", "lucky", _candidate(run, target, "lucky", 0.0), "good")
    assert ev.verdict == "not_better" and ev.seeds == [0, 1], ev.reason  # level with the incumbent there
    lucky = read_fresh(run, "lucky")
    assert lucky is not None and lucky.basis == "confirmation", lucky
    assert lucky.seeds == [2, 3, 4, 5] and abs(lucky.diff) < 0.05, lucky
    null = confirmer.decide("null", "0.00", "null", _candidate(run, target, "null", 0.0), "good")
    assert null.verdict == "not_better" and read_fresh(run, "null").basis == "fresh"  # never claimed
    verdicts = baseline_verdicts({c: read_fresh(run, c) for c in ("good", "lucky", "null")}, q=0.1)
    assert verdicts == {"good": "better", "lucky": "not_separated", "null": "not_separated"}
    confirmed = [s for c, s in target.calls if c == "0.0000" and s >= 2]
    assert len(confirmed) == len(set(confirmed)) == 4, target.calls


# ---------------------------------------------------------------- the real loop, killed in a confirm round


def evaluation_seeds(run: Path, cid: str) -> list[int]:
    evaluation = json.loads((run / "candidates" / cid / "evaluation.json").read_text())
    return [int(s) for s in evaluation["details"].get("selection_seeds", [])]


def _kill_when(proc: subprocess.Popen, run: Path, seen: Any, timeout: float = 300) -> bool:
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        if any(seen(e) for e in logged_events(run)):
            os.killpg(proc.pid, signal.SIGKILL)  # the runner and its training workers, as a crash would
            proc.wait()
            return True
        time.sleep(0.02)
    return False


CONFIG = """
[budget]
max_candidates = 2
[loop]
seed = 0
[targets.dpo]
preset = "tiny"
workers = 1
[evidence]
rule = "race"
stages = [2, 4]
"""


def test_tiny_run_races_on_extra_seeds_and_a_kill_in_a_round_retrains_nothing(
    tmp_path: Path, shared_cache: Path
) -> None:
    home, run = tmp_path / "home", tmp_path / "home" / "runs" / "ev"
    config = tmp_path / "disco.toml"
    config.write_text(CONFIG)
    env = os.environ | {"DISCO_CACHE": str(shared_cache), "DISCO_MODEL": "offline"}
    proc = start_cli(home, ["run", "--config", str(config), "--run-id", "ev"], env)
    # Kill 1: the first non-final evidence (the tiny preset has no measured σ: 2 seeds decide nothing), i.e.
    # the challenger's next stage of seeds is under way.
    in_round = _kill_when(proc, run, lambda e: e["kind"] == "evidence" and not e["payload"]["final"])
    assert in_round, "no challenger raced past its first stage"
    proc = start_cli(home, ["resume", "ev"], env)
    # Kill 2: after the first extra seed was kept, while the incumbent trains on it.
    assert _kill_when(
        proc, run, lambda e: e["kind"] == "tool" and e["payload"].get("tool") == "evaluate_seeds"
    )
    proc = start_cli(home, ["resume", "ev"], env)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-2000:]

    events = logged_events(run)
    candidates = {e["candidate"]: e["payload"] for e in events if e["kind"] == "candidate"}
    assert list(candidates) == ["ev-0001", "ev-0002"]
    evidence = [(e["candidate"], e["payload"]) for e in events if e["kind"] == "evidence"]
    keys = [(c, p["round"]) for c, p in evidence]
    assert len(keys) == len(set(keys)), f"an evidence event logged twice: {keys}"
    extra = [
        (e["candidate"], s)
        for e in events
        if e["payload"].get("tool") == "evaluate_seeds"
        for s in e["payload"]["args"]["seeds"]
    ]
    assert len(extra) == len(set(extra)), f"a seed evaluated twice: {extra}"
    evaluations = [e["candidate"] for e in events if e["kind"] == "evaluation"]
    assert len(evaluations) == len(set(evaluations))

    incumbent = None
    for cid, cand in candidates.items():
        rounds = [p for c, p in evidence if c == cid]
        if cand["status"] != "evaluated":
            assert cand["verdict"] is None and not rounds
            continue
        assert rounds and cand["verdict"] == rounds[-1]["verdict"], (cid, rounds)
        assert [p["final"] for p in rounds] == [False] * (len(rounds) - 1) + [True]
        assert rounds[0]["incumbent"] == incumbent
        if incumbent is None:
            assert cand["verdict"] == "first"
        seeds = [p["seeds"] for p in rounds]
        assert all(len(a) < len(b) for a, b in pairwise(seeds)), seeds
        if incumbent is not None:
            assert not set(seeds[-1]) & set(evaluation_seeds(run, cid)), "a β-choosing seed was scored"
        for seed in set(seeds[-1]) - set(seeds[0]):  # each extra seed kept for both
            assert (run / "candidates" / cid / "seeds" / f"{seed}.json").is_file()
            assert (run / "candidates" / incumbent / "seeds" / f"{seed}.json").is_file()
        record = json.loads((run / "candidates" / cid / "record.json").read_text())
        assert record["verdict"] == cand["verdict"]
        evaluation = json.loads((run / "candidates" / cid / "evaluation.json").read_text())
        beta = evaluation["details"]["best_beta"]
        assert evaluation["item_scores"].keys() == {"0"} and evaluation["details"]["baseline_frontier"]
        for path in (run / "candidates" / cid / "seeds").glob("[0-9]*.json"):
            saved = json.loads(path.read_text())  # trained at the β chosen on seed 0, not re-chosen
            assert saved["beta"] == beta and len(saved["scores"]) == len(evaluation["item_scores"]["0"])
        if cand["verdict"] in ("first", "best"):
            incumbent = cid
    promising = [c for c, p in evidence if p["verdict"] == "promising" and not p["final"]]
    assert promising, "a candidate got extra rounds"
    status = json.loads((run / "status.json").read_text())
    assert status["state"] == "finished" and status["best_id"] == incumbent
    shown = subprocess.run(
        [sys.executable, "-m", "agent.cli", "--home", str(home), "runs", "show", "ev", "--json"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        check=True,
    )
    rows = {r["id"]: r for r in json.loads(shown.stdout)["candidates"]}
    assert {cid: rows[cid]["verdict"] for cid in rows} == {cid: p["verdict"] for cid, p in candidates.items()}


def test_the_race_takes_its_settings_from_the_run_config(run: RunDir) -> None:
    confirmer = _race(run, SyntheticTarget(), futility_z=0.9, stages=(2, 4), min_effect=0.05)
    rules = confirmer.race_config()
    assert (rules.futility_z, rules.stages, rules.min_effect, rules.sigma) == (0.9, (2, 4), 0.05, 0.01)
    default = _race(run, SyntheticTarget()).race_config()
    assert default.stages[-1] == 64 and default.futility_z == 0.5  # the calibration's choice
