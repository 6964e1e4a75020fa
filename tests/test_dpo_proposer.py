"""The DPO target's offline proposer: reproducible, readable, and its candidates pass the real checks."""

from __future__ import annotations

import hashlib
import itertools
import random
import subprocess
import sys

import pytest

from targets.base import ParentInfo, Proposal
from targets.dpo.checks import check_candidate
from targets.dpo.genome import (
    GENOME_PREFIX,
    SEEDS,
    TAU,
    VOCABULARY,
    Genome,
    Term,
    default_term,
    normalise,
    parse_genome,
    render,
)
from targets.dpo.loss_policy import check_loss_policy
from targets.dpo.proposer import DPOBlockProposer, recombine
from targets.dpo.zoo import list_zoo
from targets.results import CheckResult


def _parent(i: int, proposal: Proposal, fitness: float | None) -> ParentInfo:
    return ParentInfo(id=f"c{i}", name=proposal.name, code=proposal.code, fitness=fitness)


def _genome_parent(pid: str, genome: Genome, fitness: float | None = 0.5) -> ParentInfo:
    return ParentInfo(id=pid, name=pid, code=render(genome), fitness=fitness)


def _made_up_fitness(genome: Genome) -> float:
    """Rewards two-term mixes with a logistic term: some selection pressure, unrelated to real training."""
    logistic = sum(t.weight for t in genome.terms if t.kind == "logistic")
    return logistic - abs(len(genome.terms) - 2) + (0.3 if genome.gated else 0.0)


@pytest.fixture(scope="module")
def evolution() -> list[tuple[Proposal, bool]]:
    """50 consecutive proposals, each fed back as a parent with a made-up fitness (None when it failed)."""
    proposer = DPOBlockProposer(seed=7)
    parents: list[ParentInfo] = []
    out = []
    for i in range(50):
        proposal = proposer.propose(i, parents)
        passed = check_candidate(proposal.code).passed
        genome = parse_genome(proposal.code)
        assert genome is not None
        parents.append(_parent(i, proposal, _made_up_fitness(genome) if passed else None))
        out.append((proposal, passed))
    return out


def test_import_is_light() -> None:
    code = "import sys, targets.dpo.proposer; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_propose_is_deterministic() -> None:
    parents = [_genome_parent("a", SEEDS["dpo"], 0.3), _genome_parent("b", SEEDS["lrml"], 0.6)]
    first = DPOBlockProposer(seed=1).propose(3, parents)
    assert DPOBlockProposer(seed=1).propose(3, parents) == first
    assert DPOBlockProposer(seed=2).propose(3, parents).code != first.code
    assert DPOBlockProposer(seed=1).propose(4, parents).code != first.code
    # The same parents with another fitness are another archive, hence (usually) another proposal.
    rescored = [p.model_copy(update={"fitness": 0.9}) for p in parents]
    assert DPOBlockProposer(seed=1).propose(3, rescored).model_dump() != first.model_dump()


@pytest.mark.parametrize("name", list(SEEDS))
def test_seed_genomes_round_trip_and_pass(name: str) -> None:
    genome = SEEDS[name]
    code = render(genome)
    assert code.startswith(GENOME_PREFIX)
    assert parse_genome(code) == genome
    assert check_loss_policy(code) == []
    assert check_candidate(code).passed


def _corners(kind: str) -> list[Term]:
    """The term with its zoo defaults, then with every parameter at each end of its bounds."""
    spec = VOCABULARY[kind]
    params = [p for p in ("temperature", "margin", "eps", "cap") if getattr(spec, p)]
    axes = {p: (getattr(spec, p).low, getattr(spec, p).high) for p in params}
    corners = [
        Term(kind=kind, **dict(zip(axes, combo, strict=True))) for combo in itertools.product(*axes.values())
    ]
    return [default_term(kind), *corners]  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", list(VOCABULARY))
def test_every_term_alone_passes_the_checks(kind: str) -> None:
    for term in _corners(kind):
        for genome in (
            Genome(terms=[term]),
            Genome(terms=[term.model_copy(update={"branch": "low"})], tau=TAU.low),
        ):
            genome = normalise(genome)
            code = render(genome)
            assert parse_genome(code) == genome
            report = check_candidate(code)
            assert report.passed, (genome.key(), [f.message for f in report.failures()])


def test_evolving_proposals_pass_the_checks(evolution: list[tuple[Proposal, bool]]) -> None:
    passed = sum(ok for _, ok in evolution[:30])
    print(f"check pass fraction: {passed}/30 = {passed / 30:.0%}")
    # Measured: 1,198 of 1,200 proposals (7 seeds, this fitness and a random one) pass; the two failures
    # were gated mixes whose high-branch term exceeds the low one at z = 0, fixed by one repair.
    assert passed / 30 >= 0.9


def test_proposals_are_diverse_and_readable(evolution: list[tuple[Proposal, bool]]) -> None:
    hashes = {hashlib.sha256(p.code.encode()).hexdigest() for p, _ in evolution}
    assert len(hashes) >= 49
    for proposal, _ in evolution:
        assert proposal.name.isidentifier() and proposal.name == proposal.name.lower()
        assert f"def {proposal.name}(" in proposal.code
        assert len(proposal.thought) > 40
        body = proposal.code.splitlines()[4:]
        assert all("# (B,)" in line for line in body), "every line of the body names its shape"
    # The search uses its parents: most proposals after the first few have one or two.
    with_parents = [p for p, _ in evolution[5:] if p.parent_ids]
    assert len(with_parents) >= 30
    assert any(len(p.parent_ids) == 2 for p, _ in evolution)


def test_recombination_uses_both_parents() -> None:
    a = normalise(Genome(terms=[default_term("logistic"), default_term("sigmoid")]))
    b = normalise(
        Genome(terms=[default_term("hinge", branch="low"), default_term("exponential", branch="high")])
    )
    for seed in range(20):
        child, note = recombine(a, b, random.Random(seed))
        kinds = {t.kind for t in child.terms}
        assert kinds & {"logistic", "sigmoid"} and kinds & {"hinge", "exponential"}, note
        assert len(child.terms) <= 3
    # Through propose: some index recombines the two, and names both as parents.
    parents = [_genome_parent("pa", a), _genome_parent("pb", b)]
    proposer = DPOBlockProposer(seed=0)
    both = [p for i in range(30) if len((p := proposer.propose(i, parents)).parent_ids) == 2]
    assert both
    assert sorted(both[0].parent_ids) == ["pa", "pb"] and "Recombined" in both[0].thought


def test_parents_without_genome_are_ignored() -> None:
    zoo = [ParentInfo(id=z.name, name=z.name, code=z.code, fitness=1.0) for z in list_zoo()]
    broken = ParentInfo(id="bad", name="bad", code="# genome: {not json\ndef f(self): pass\n", fitness=2.0)
    proposer = DPOBlockProposer(seed=3)
    only_zoo = proposer.propose(0, [*zoo, broken])
    assert only_zoo.parent_ids == []
    assert "no parent carries a genome" in only_zoo.thought
    assert check_candidate(only_zoo.code).passed
    mine = _genome_parent("mine", SEEDS["cell"], fitness=0.1)
    for i in range(10):
        proposal = proposer.propose(i, [*zoo, broken, mine])
        assert set(proposal.parent_ids) <= {"mine"}


def _failures(code: str) -> list[CheckResult]:
    return check_candidate(code).failures()


@pytest.mark.parametrize(
    ("genome", "failing"),
    [
        (Genome(terms=[Term(kind="exponential")]), "finite_extreme"),  # raw exp(-z): inf at βρ ≲ -88
        # LRML's published form with a raw exp: σ(z/τ)·exp(-z) = 0·inf = NaN for very negative z.
        (
            Genome(terms=[default_term("logistic", branch="low"), Term(kind="exponential", branch="high")]),
            "finite_extreme",
        ),
        (Genome(terms=[Term(kind="squared", branch="high")]), "preference_direction"),
        (Genome(terms=[Term(kind="tanh_logistic", temperature=0.01)]), "gradients"),  # saturated at small β
    ],
    ids=["raw_exp", "raw_lrml", "gated_squared", "saturated_tanh"],
)
def test_repair_fixes_the_failing_check(genome: Genome, failing: str) -> None:
    code = render(genome)
    failures = _failures(code)
    assert failing in {f.name for f in failures}
    proposer = DPOBlockProposer(seed=0)
    repaired = proposer.repair(5, code, failures, attempt=1)
    assert repaired == proposer.repair(5, code, failures, attempt=1)
    assert failing in repaired.thought
    report = check_candidate(repaired.code)
    assert report.passed, [f.message for f in report.failures()]
    assert parse_genome(repaired.code) is not None


def test_repair_without_genome_starts_over_from_a_stable_genome() -> None:
    cell = next(z for z in list_zoo() if z.name == "cell")  # its raw exp(-z) overflows
    failures = _failures(cell.code)
    assert "finite_extreme" in {f.name for f in failures}
    repaired = DPOBlockProposer(seed=0).repair(0, cell.code, failures, attempt=1)
    assert "no genome" in repaired.thought
    assert check_candidate(repaired.code).passed


def test_perturbation_never_moves_an_exponent_cap() -> None:
    """A cap that training never reaches makes a 'new' loss that trains like its parent."""
    from targets.dpo.proposer import perturb

    genome = normalise(Genome(terms=[default_term("exponential")]))
    rng = random.Random(0)
    for _ in range(200):
        child, why = perturb(genome, rng)
        assert child.terms[0].cap == genome.terms[0].cap and "cap" not in why
