"""Hints in offline mode act, or say they do not (issue 19.3): the DPO proposer reads term kinds,
boundedness and the gate from a hint and keeps its designs to them; a hint it cannot read, or any hint
given to a proposer that takes none, is reported as not acted on."""

from __future__ import annotations

from pathlib import Path

from agent.context import DesignContext
from agent.designers import OfflineDesigner
from agent.models import ExchangeLog
from targets.agents.proposer import AgentProposer
from targets.base import ParentInfo
from targets.dpo.genome import parse_genome
from targets.dpo.hints import read_hints
from targets.dpo.proposer import DPOBlockProposer

ISSUE_HINT = "prefer bounded losses … no exponentials"
"""The hint a user gave, beside which the UI said "reached" for a design built from two exponentials."""


def kinds(code: str) -> set[str]:
    genome = parse_genome(code)
    assert genome is not None
    return {t.kind for t in genome.terms}


def gated(code: str) -> bool:
    genome = parse_genome(code)
    assert genome is not None
    return genome.gated


def test_the_hint_is_read_as_constraints() -> None:
    reading = read_hints([ISSUE_HINT, "try a hinge, avoid gating", "be more creative"])
    assert {"exponential", "squared"} <= reading.forbid
    assert {"sigmoid", "tanh_logistic", "hinge"} <= reading.favour
    assert reading.gate is False
    assert list(reading.used) == [ISSUE_HINT, "try a hinge, avoid gating"]
    assert reading.ignored == ["be more creative"]


def test_a_hint_changes_the_offline_designs() -> None:
    proposer = DPOBlockProposer(seed=0)
    plain = [proposer.propose(i, []) for i in range(1, 31)]
    hinted = [proposer.propose(i, [], hints=[ISSUE_HINT]) for i in range(1, 31)]
    assert sum("exponential" in kinds(p.code) or "squared" in kinds(p.code) for p in plain) >= 5
    for p in hinted:
        assert not kinds(p.code) & {"exponential", "squared"}, p.thought
        assert kinds(p.code) & {"sigmoid", "tanh_logistic"}, p.thought
        assert p.hints_used == [ISSUE_HINT] and p.hints_ignored == []
        assert "Your hints asked for no exp or squared terms" in p.thought
    assert [p.code for p in hinted] == [
        proposer.propose(i, [], hints=[ISSUE_HINT]).code for i in range(1, 31)
    ]


def test_mutated_parents_keep_to_the_hints_too() -> None:
    proposer = DPOBlockProposer(seed=3)
    parents = [
        ParentInfo(id=f"r-{i:04d}", name=p.name, code=p.code, fitness=0.1 * i)
        for i, p in enumerate((proposer.propose(i, []) for i in range(1, 9)), start=1)
    ]
    for i in range(10, 30):
        p = proposer.propose(i, parents, hints=["try a hinge, avoid gating"])
        assert "hinge" in kinds(p.code) and not gated(p.code), p.thought


def test_hints_the_designer_cannot_act_on_are_reported(tmp_path: Path) -> None:
    ctx = DesignContext(
        target="dpo",
        description="d",
        interface="i",
        rules=[],
        fitness_meaning="f",
        candidate_index=1,
        hints=[ISSUE_HINT, "be more creative"],
    )
    dpo = OfflineDesigner(DPOBlockProposer(seed=0), ExchangeLog(tmp_path / "dpo.jsonl"))
    step = dpo.design("c1/design", ctx)
    assert step.hints_ignored == ["be more creative"]
    assert not kinds(step.value.code) & {"exponential", "squared"}
    again = OfflineDesigner(DPOBlockProposer(seed=0), ExchangeLog(tmp_path / "dpo.jsonl"))
    assert again.design("c1/design", ctx).hints_ignored == ["be more creative"], "a resumed run says the same"

    adas = OfflineDesigner(AgentProposer(seed=0), ExchangeLog(tmp_path / "adas.jsonl"))
    assert adas.design("c1/design", ctx).hints_ignored == [ISSUE_HINT, "be more creative"]
