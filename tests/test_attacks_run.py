"""Attacks end to end, the way `disco run` meets them (issue 15.8): a model proposes attack losses between
two honest ones, through the real runner (policy → checks → training → scoring → record → next prompt).

What a safe system must do: every attack candidate fails or is contained and says why; none becomes
`best`; and the honest candidate designed after the attacks scores exactly (bit for bit) what it scores in a
clean run without them. `test_attacks_training.py` attacks the layers below the static policy.
"""

from __future__ import annotations

import json
from pathlib import Path

from agent_helpers import distinct, kind_of, start, tiny_config
from fake_openai import FakeOpenAI

SIG = (
    "def attack_{n}(self, policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, "
    "reference_rejected_logps):\n"
)
TAIL = (
    "    rho = (policy_chosen_logps - policy_rejected_logps) - (reference_chosen_logps - "
    "reference_rejected_logps)\n"
    "    return -F.logsigmoid(self.beta * rho)\n"
)
ATTACKS = [
    # Process-wide state, as the report found it: a plain attribute store that once made a copy of DPO read
    # KL 0 for every later candidate in the same worker.
    "    torch.log_softmax = torch.sigmoid\n",
    # Autograd: from the inputs to the model's parameters.
    "    fn = policy_chosen_logps.grad_fn\n"
    "    for nxt, _ in fn.next_functions:\n"
    "        nxt.variable.data.zero_()\n",
    # A route to builtins through an allowed module's re-exports, then a file.
    "    t = typing.re\n    raise RuntimeError(str(t))\n",
    # The cache that scoring trusts: DPO's baseline.
    "    torch.save({}, '/root/.disco/cache/baselines/dpo.json')\n",
    # Process-wide RNG and switches.
    "    torch.manual_seed(0)\n    torch.set_default_dtype(torch.float64)\n",
]


def attack(i: int) -> str:
    return ("import typing\n" if "typing" in ATTACKS[i] else "") + SIG.format(n=i) + ATTACKS[i] + TAIL


def designs(with_attacks: bool) -> list[str]:
    """The honest loss before, the attacks, the honest loss after (or only the honest ones)."""
    middle = [attack(i) for i in range(len(ATTACKS))] if with_attacks else []
    return [distinct("design", 1), *middle, distinct("design", 2)]


def run_with(home: Path, run_id: str, codes: list[str]) -> tuple[object, object]:
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
        config = tiny_config(models=models, budget={"max_candidates": len(codes)}, evidence={"stages": [2]})
        runner, run = start(home / "runs", config, run_id)
        status = runner.execute()
    assert status.state == "finished", status.reason
    return run, status


def records(run: object) -> list[dict]:
    folder = Path(run.root) / "candidates"  # type: ignore[attr-defined]
    return [json.loads((d / "record.json").read_text()) for d in sorted(folder.iterdir())]


def test_attack_candidates_are_contained_and_the_next_candidate_scores_as_in_a_clean_run(home: Path) -> None:
    attacked, _ = run_with(home, "attacked", designs(with_attacks=True))
    rows = records(attacked)
    assert len(rows) == len(ATTACKS) + 2
    for row in rows[1:-1]:
        assert row["status"] in ("check_failed", "failed", "rejected"), (row["name"], row["status"])
        assert row.get("error"), f"{row['name']} failed without saying why"
        assert row.get("verdict") not in ("best", "first"), row["name"]
    after = rows[-1]
    assert after["status"] == "evaluated", after.get("error")

    from agent.home import set_home

    set_home(home.parent / "home-clean")  # a fresh memory: the novelty gate would reject the repeats
    try:
        clean, _ = run_with(home.parent / "home-clean", "clean", designs(with_attacks=False))
    finally:
        set_home(home)
    clean_after = records(clean)[-1]
    assert clean_after["code"] == after["code"]
    ours = (Path(attacked.root) / "candidates" / after["id"] / "evaluation.json").read_text()
    theirs = (Path(clean.root) / "candidates" / clean_after["id"] / "evaluation.json").read_text()
    a, b = json.loads(ours), json.loads(theirs)
    assert a["item_scores"] == b["item_scores"], "the attacks changed a later candidate's score"
    assert a["fitness"] == b["fitness"] and a["vs_baseline"] == b["vs_baseline"]
