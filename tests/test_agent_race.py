"""The evidence race through `disco run` (issue 16): a model proposes DPO again and again under new texts, and
none of them becomes `best`; then a loss clearly better than the incumbent does. The real runner, the tiny
preset's real training in jailed children, the race on seeds that chose nothing."""

from __future__ import annotations

import json
from pathlib import Path

from agent_helpers import kind_of, start, tiny_config
from fake_openai import FakeOpenAI

from agent.leaderboard import candidate_rows
from agent.runs import RunDir
from targets.dpo.zoo import get_zoo_loss

SIG = (
    "def {name}(self, policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, "
    "reference_rejected_logps):\n"
    "    rho = (policy_chosen_logps - policy_rejected_logps) - (reference_chosen_logps - "
    "reference_rejected_logps)\n"
)


def dpo_as(name: str, scale: float) -> str:
    """DPO's loss times a constant: Adam makes the training all but identical to DPO's, while the
    behaviour the novelty gate compares differs (a copy with the same behaviour would be rejected)."""
    return SIG.format(name=name) + f"    return {scale} * F.softplus(-self.beta * rho)  # DPO\n"


def run_designs(
    home: Path, run_id: str, codes: list[str], evidence: dict, baselines_in_memory: bool = True
) -> list[dict]:
    def answer(body: dict) -> dict:
        step = kind_of(body)
        if step == "design":
            answer.n += 1  # type: ignore[attr-defined]
        code = codes[min(answer.n, len(codes)) - 1]  # type: ignore[attr-defined]
        reply = {"thought": step, "name": f"c{answer.n}", "code": code}  # type: ignore[attr-defined]
        return ({"reflection": "fine"} | reply) if step.startswith("reflect") else reply

    answer.n = 0  # type: ignore[attr-defined]
    with FakeOpenAI() as server:
        server.default = answer
        models = {"meta": {"model": "fake", "base_url": server.base_url, "api_key": "k", "timeout_s": 10}}
        config = tiny_config(
            models=models,
            budget={"max_candidates": len(codes)},
            evidence=evidence,
            loop={"baselines_in_memory": baselines_in_memory},
        )
        runner, run = start(home / "runs", config, run_id)
        status = runner.execute()
    assert status.state == "finished", status.reason
    folder = Path(run.root) / "candidates"
    rows = [json.loads((d / "record.json").read_text()) for d in sorted(folder.iterdir())]
    for row in rows:
        evidence = folder / row["id"] / "evidence.json"  # none for a candidate rejected before evaluation
        row["_evidence"] = json.loads(evidence.read_text()) if evidence.exists() else None
        fresh = folder / row["id"] / "vs_baseline.json"
        row["_vs"] = json.loads(fresh.read_text()) if fresh.exists() else None
    verdicts = {r.id: r.vs_verdict for r in candidate_rows(RunDir(Path(run.root)))}
    for row in rows:
        row["_vs_verdict"] = verdicts.get(row["id"])
    return rows


def test_dpo_under_new_texts_is_never_best(home: Path) -> None:
    codes = [dpo_as("dpo_again", 1.0)] + [dpo_as(f"dpo_{i}", s) for i, s in enumerate((1.5, 2.0, 3.0))]
    rows = run_designs(home, "null", codes, {"stages": [2, 4, 8]})
    # DPO itself, renamed: memory knows DPO (the zoo is seeded as baselines), so it is no discovery
    assert [r["status"] for r in rows] == ["rejected"] + ["evaluated"] * 3, [r.get("error") for r in rows]
    assert "duplicate of baseline-dpo-dpo (a published method of the target" in rows[0]["error"]
    rows = rows[1:]
    assert [r["verdict"] for r in rows] == ["first", "not_better", "not_better"]
    for row in rows[1:]:
        last = row["_evidence"]["rounds"][-1]
        assert last["rule"] == "race" and 0 not in last["seeds"]  # seed 0 chose β: never scored
        assert "false per run" in last["tested_at"]
    # Against DPO itself, on the seeds raced (DPO trained on each of them too): never "better"
    raced = [r for r in rows if r["_vs"] is not None]
    assert raced and all(r["_vs"]["n_seeds"] >= 4 and 0 not in r["_vs"]["seeds"] for r in raced)
    assert all(r["_vs_verdict"] != "better" for r in rows), [(r["_vs"], r["_vs_verdict"]) for r in rows]
    # The record (as memory keeps it) carries the latest: the incumbent's, after the races trained it more
    for row in raced:
        assert row["vs_baseline"] == {k: row["_vs"][k] for k in ("diff", "ci_low", "ci_high", "n_seeds")}


def test_a_loss_clearly_better_than_the_incumbent_becomes_best(home: Path) -> None:
    """IPO first (on the tiny task it trails DPO by about 0.09 a seed), then DPO: shown better on 8 seeds
    at a run-level α split over this run's two candidates."""
    ipo = get_zoo_loss("ipo").code
    evidence = {"stages": [2, 4, 8], "candidate_budget": 2, "confirm_seeds": 4}
    # IPO and DPO are published losses: memory must not know them here, for them to stand in for new ones
    rows = run_designs(home, "big", [ipo, dpo_as("dpo_after_ipo", 1.0)], evidence, baselines_in_memory=False)
    assert [r["verdict"] for r in rows] == ["first", "best"], [r["_evidence"] for r in rows]
    claim = rows[1]["_evidence"]["rounds"][-1]
    assert claim["seeds"] == list(range(1, 9)) and claim["diff"]["ci_low"] > 0
    # What is shown for the claimed best comes from 4 seeds trained after the claim, none of those that
    # crowned it (nor seed 0, which chose its β): the winner's curse stays out of its score
    shown = rows[1]["_vs"]
    assert shown["basis"] == "confirmation" and shown["seeds"] == [9, 10, 11, 12], shown
    assert rows[1]["vs_baseline"]["n_seeds"] == 4
    assert rows[0]["_vs"]["basis"] == "fresh"  # the first candidate claimed nothing
    # IPO's record (as memory keeps it) has its difference to DPO on the 8 seeds the race trained it on
    assert rows[0]["_vs"]["n_seeds"] == rows[0]["vs_baseline"]["n_seeds"] == 8, "refreshed after the race"
