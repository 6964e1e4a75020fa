"""The DPO target's offline proposer: evolution over loss genomes (`targets.dpo.genome`), no model needed.

It drives `disco run` when no LLM is configured and is the search baseline an LLM must beat. Parents
whose code carries a `# genome:` line are mutated or recombined, fitter ones preferred (a tournament on
fitness); parents without one (zoo code, model-written code) are ignored; with none usable, the search
starts from genomes equivalent to the zoo's losses. Every choice comes from a random generator seeded by
(seed, index, parents), so a proposal is reproducible and a resumed run proposes the same candidates.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
from collections.abc import Callable, Sequence

from targets.base import ParentInfo, Proposal
from targets.dpo.genome import (
    MAX_TERMS,
    SEEDS,
    VOCABULARY,
    Branch,
    Genome,
    Term,
    TermKind,
    default_term,
    genome_name,
    normalise,
    parse_genome,
    render,
)
from targets.dpo.hints import honour, meets, read_hints
from targets.results import CheckResult

TOURNAMENT = 3
"""Parents drawn per tournament: enough pressure towards fitness without collapsing onto the best one."""
CROSSOVER = 0.3
"""Chance of recombining two parents (when two are usable) instead of mutating one."""
IMMIGRATION = 0.1
"""Chance of restarting from a mutated zoo genome even with parents: keeps the archive from converging."""
KINDS: tuple[TermKind, ...] = tuple(VOCABULARY)
BRANCHES: tuple[Branch, ...] = ("all", "low", "high")
FINITE_CHECKS = frozenset({"finite_ordinary", "finite_extreme", "finite_bfloat16"})
STABLE_SEEDS = ("dpo", "cdpo", "robust_dpo", "slic", "dbaql")
"""Single, monotone, overflow-free terms: what a repair falls back to when nothing targeted is left."""

Mutation = Callable[[Genome, random.Random], tuple[Genome, str]]


def _lognormal(x: float, rng: random.Random, sigma: float) -> float:
    return x * math.exp(rng.gauss(0.0, sigma))


def _replace(genome: Genome, i: int, term: Term) -> Genome:
    terms = list(genome.terms)
    terms[i] = term
    return normalise(genome.model_copy(update={"terms": terms}))


def _label(t: Term) -> str:
    return t.kind if t.branch == "all" else f"{t.kind} ({t.branch} branch)"


# Mutations: each returns a normalised genome and a clause saying what changed and why ----------------
def perturb(genome: Genome, rng: random.Random) -> tuple[Genome, str]:
    """Move one continuous parameter: log-normal for temperatures, additive for margins and ε.

    An exponent's cap is not moved: it only guards against overflow, training never reaches it, and
    two losses differing only in their cap train identically (the offline-proposer eval found such
    pairs passing the novelty gate and costing an evaluation each). Repairs still set it.
    """
    i = rng.randrange(len(genome.terms))
    t = genome.terms[i]
    spec = VOCABULARY[t.kind]
    params = [p for p in ("temperature", "margin", "eps") if getattr(spec, p) and getattr(t, p) is not None]
    param = rng.choice(params)
    old = getattr(t, param)
    new = {
        "temperature": lambda: _lognormal(old, rng, 0.4),
        "margin": lambda: old + rng.gauss(0.0, 0.3 * (1 + old)),
        "eps": lambda: old + rng.gauss(0.0, 0.06),
    }[param]()
    child = _replace(genome, i, t.model_copy(update={param: new}))
    new = getattr(child.terms[i], param)
    why = {
        "temperature": "sharper around z = 0" if new < old else "softer around z = 0",
        "margin": "pushes ordered pairs further" if new > old else "stops pushing ordered pairs sooner",
        "eps": "more tolerant of flipped labels" if new > old else "trusts the labels more",
    }[param]
    return child, f"{t.kind} {param} {old:g} → {new:g} ({why})"


def reweight(genome: Genome, rng: random.Random) -> tuple[Genome, str]:
    """Scale one term's weight; with a single term there is nothing to trade off, so perturb instead."""
    if len(genome.terms) == 1:
        return perturb(genome, rng)
    i = rng.randrange(len(genome.terms))
    t = genome.terms[i]
    child = _replace(genome, i, t.model_copy(update={"weight": _lognormal(t.weight, rng, 0.6)}))
    return child, f"reweighted {t.kind} {t.weight:g} → {child.terms[i].weight:g} (shifts the mix)"


def swap_kind(genome: Genome, rng: random.Random) -> tuple[Genome, str]:
    """Replace a term by another kind with its zoo defaults, keeping its weight and branch."""
    i = rng.randrange(len(genome.terms))
    t = genome.terms[i]
    others: list[TermKind] = [k for k in KINDS if k != t.kind]
    kind = rng.choice(others)
    child = _replace(genome, i, default_term(kind, t.weight, t.branch))
    return child, f"swapped {_label(t)} for {kind}, to try {VOCABULARY[kind].source}"


def add_term(genome: Genome, rng: random.Random) -> tuple[Genome, str]:
    """Add a term of a kind not yet present, at a small weight, so the mix changes gradually."""
    if len(genome.terms) >= MAX_TERMS:
        return swap_kind(genome, rng)
    present = {t.kind for t in genome.terms}
    absent: list[TermKind] = [k for k in KINDS if k not in present]
    kind = rng.choice(absent)
    branch = rng.choice(BRANCHES) if genome.gated else "all"
    term = default_term(kind, rng.uniform(0.1, 0.5), branch)
    child = normalise(genome.model_copy(update={"terms": [*genome.terms, term]}))
    return child, f"added a {_label(child.terms[-1])} term, to try {VOCABULARY[kind].source}"


def remove_term(genome: Genome, rng: random.Random) -> tuple[Genome, str]:
    """Drop a term: does the simpler loss hold up?"""
    if len(genome.terms) == 1:
        return add_term(genome, rng)
    i = rng.randrange(len(genome.terms))
    terms = [t for j, t in enumerate(genome.terms) if j != i]
    child = normalise(genome.model_copy(update={"terms": terms}))
    return child, f"dropped the {_label(genome.terms[i])} term (a simpler loss)"


def gate(genome: Genome, rng: random.Random) -> tuple[Genome, str]:
    """Add LRML's gate σ(z/τ), or change its temperature, a term's branch, or remove it."""
    if not genome.gated:
        terms = list(genome.terms)
        if len(terms) == 1:
            others: list[TermKind] = [k for k in KINDS if k != terms[0].kind]
            kind = rng.choice(others)
            terms.append(default_term(kind, terms[0].weight))
        order = rng.sample(range(len(terms)), len(terms))
        branches = {i: ("low" if n == 0 else "high" if n == 1 else rng.choice(["all", "low", "high"]))
                    for n, i in enumerate(order)}  # fmt: skip
        terms = [t.model_copy(update={"branch": branches[i]}) for i, t in enumerate(terms)]
        child = normalise(Genome(terms=terms, tau=_lognormal(genome.tau, rng, 0.5)))
        low = ", ".join(t.kind for t in child.terms if t.branch == "low")
        high = ", ".join(t.kind for t in child.terms if t.branch == "high")
        return child, f"split the loss with LRML's gate σ(z/{child.tau:g}): {low} for z < 0, {high} for z > 0"
    roll = rng.random()
    if roll < 0.4:
        child = normalise(genome.model_copy(update={"tau": _lognormal(genome.tau, rng, 0.6)}))
        sharp = "a sharper" if child.tau < genome.tau else "a smoother"
        return child, f"gate temperature τ {genome.tau:g} → {child.tau:g} ({sharp} switch at z = 0)"
    if roll < 0.7:
        i = rng.randrange(len(genome.terms))
        t = genome.terms[i]
        branch = rng.choice([b for b in ("all", "low", "high") if b != t.branch])
        child = _replace(genome, i, t.model_copy(update={"branch": branch}))
        return child, f"moved {t.kind} from the {t.branch} branch to {branch}"
    terms = [t.model_copy(update={"branch": "all"}) for t in genome.terms]
    return normalise(Genome(terms=terms)), "removed the gate (every term acts on every pair)"


MUTATIONS: tuple[tuple[Mutation, float], ...] = (
    (perturb, 0.38), (reweight, 0.12), (swap_kind, 0.15), (add_term, 0.12), (remove_term, 0.1), (gate, 0.13),
)  # fmt: skip


def mutate(genome: Genome, rng: random.Random, times: int = 1) -> tuple[Genome, list[str]]:
    """Apply `times` mutations drawn by weight; returns the child and one clause per mutation."""
    ops, weights = zip(*MUTATIONS, strict=True)
    notes: list[str] = []
    for _ in range(4 * times):  # a draw can be a no-op (a parameter clipped at its bound): draw again
        if len(notes) == times:
            break
        op = rng.choices(ops, weights)[0]
        child, note = op(genome, rng)
        if child.key() != genome.key():
            genome = child
            notes.append(note)
    return genome, notes


def recombine(a: Genome, b: Genome, rng: random.Random) -> tuple[Genome, str]:
    """A child with at least one term of each parent (at most MAX_TERMS), τ from a gated parent."""
    n_a = rng.randint(1, min(len(a.terms), MAX_TERMS - 1))
    n_b = rng.randint(1, min(len(b.terms), MAX_TERMS - n_a))
    from_a = [a.terms[i] for i in sorted(rng.sample(range(len(a.terms)), n_a))]
    from_b = [b.terms[i] for i in sorted(rng.sample(range(len(b.terms)), n_b))]
    taus = [g.tau for g in (a, b) if g.gated]
    tau = rng.choice(taus) if taus else a.tau
    child = normalise(Genome(terms=[*from_a, *from_b], tau=tau))
    kept_a = ", ".join(_label(t) for t in from_a)
    kept_b = ", ".join(_label(t) for t in from_b)
    return child, f"took {kept_a} from the first and {kept_b} from the second"


# Repairs ----------------------------------------------------------------------------------------------
def stabilise(genome: Genome, failed: set[str], escalate: bool) -> tuple[Genome, list[str]]:
    """A safer genome for the failed checks, and what was changed; unchanged when no fix applies.

    Targeted first (cap the exponent, drop the gate, lift saturating temperatures); with `escalate`
    (a later attempt) the offending terms are replaced by DPO's logistic term outright.
    """
    terms = list(genome.terms)
    notes: list[str] = []
    logistic_like = {"logistic", "smoothed_logistic", "robust_logistic", "exponential", "squared"}
    if failed & FINITE_CHECKS:
        for i, t in enumerate(terms):
            if t.kind != "exponential":
                continue
            if escalate:
                terms[i] = default_term("logistic", t.weight, t.branch)
                notes.append("replaced the exponential term by the logistic one (it overflowed)")
            else:
                cap = min(t.cap if t.cap is not None else 20.0, 20.0)
                terms[i] = t.model_copy(update={"cap": cap, "temperature": max(t.temperature, 1.0)})
                notes.append(f"capped the exponent of exp(-z/t) at {cap:g} so it cannot overflow")
    if "preference_direction" in failed:
        if any(t.branch != "all" for t in terms):
            terms = [t.model_copy(update={"branch": "all"}) for t in terms]
            notes.append("removed the gate, whose switch at z = 0 can make the loss rise with z")
        terms = [t.model_copy(update={"eps": min(t.eps, 0.2)}) for t in terms]
        if escalate or not genome.gated:
            odd = [i for i, t in enumerate(terms) if t.kind in {"squared", "sigmoid", "tanh_logistic"}]
            for i in odd:
                terms[i] = default_term("logistic", terms[i].weight)
            if odd:
                notes.append("replaced non-monotone or saturating terms by the logistic one")
    if "gradients" in failed:
        before = list(terms)
        for i, t in enumerate(terms):
            if t.kind == "hinge" and t.margin < 1:
                terms[i] = t.model_copy(update={"margin": 1.0})
            elif t.kind in {"sigmoid", "tanh_logistic"}:
                wider = {"temperature": max(t.temperature, 2.0), "margin": min(t.margin, 1.0)}
                terms[i] = t.model_copy(update=wider)
            elif t.kind == "exponential":
                terms[i] = t.model_copy(update={"cap": max(t.cap or 20.0, 20.0)})
        if terms != before:
            notes.append(
                "widened saturating terms (hinge margin ≥ 1, sigmoid/tanh temperature ≥ 2, exp cap ≥ 20)"
            )
        if escalate or not any(t.kind in logistic_like and t.branch == "all" for t in terms):
            terms = [*terms[: MAX_TERMS - 1], default_term("logistic", 0.3)]
            notes.append("added an ungated logistic term, whose gradient never vanishes")
    child = normalise(genome.model_copy(update={"terms": terms}))
    return child, notes if child.key() != genome.key() else []


def _seeded(*parts: object) -> random.Random:
    payload = json.dumps(parts, default=str, sort_keys=True)
    return random.Random(int.from_bytes(hashlib.sha256(payload.encode()).digest()[:8], "big"))


def _fitness(p: ParentInfo) -> float:
    return -math.inf if p.fitness is None or math.isnan(p.fitness) else p.fitness


def _describe(p: ParentInfo) -> str:
    fit = "unscored" if p.fitness is None else f"fitness {p.fitness:.3g}"
    return f"{p.name} ({p.id}, {fit})"


class DPOBlockProposer:
    """Mutation and recombination of zoo building blocks; satisfies `targets.base.OfflineProposer`."""

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def propose(self, index: int, parents: list[ParentInfo], hints: Sequence[str] = ()) -> Proposal:
        """The `index`-th candidate given the archive's `parents`; deterministic in (seed, index, parents,
        hints). Hints naming term kinds, boundedness or the gate constrain it (`targets.dpo.hints`)."""
        archive = [(p.id, p.fitness, _code_hash(p.code)) for p in parents]
        rng = _seeded(self.seed, "propose", index, archive, *([list(hints)] if hints else []))
        reading = read_hints(hints)
        pool = [(p, g) for p in parents if (g := parse_genome(p.code)) is not None]
        taken = {g.key() for _, g in pool} | {g.key() for g in SEEDS.values()}
        times = rng.choices((1, 2, 3), (0.6, 0.3, 0.1))[0]
        used: list[ParentInfo] = []
        if not pool or rng.random() < IMMIGRATION:
            start = rng.choice(list(SEEDS))
            genome, notes = mutate(SEEDS[start], rng, times)
            why = "no parent carries a genome" if not pool else "an immigrant keeps the search diverse"
            intro = f"Started from the zoo's {start} genome ({why}) and"
        elif len(pool) >= 2 and rng.random() < CROSSOVER:
            pa, ga = self._tournament(rng, pool)
            pb, gb = self._tournament(rng, [x for x in pool if x[0].id != pa.id] or pool)
            genome, note = recombine(ga, gb, rng)
            notes, used = [note], [pa, pb]
            intro = f"Recombined {_describe(pa)} with {_describe(pb)}, both tournament winners:"
        else:
            pa, ga = self._tournament(rng, pool)
            genome, notes = mutate(ga, rng, times)
            used = [pa]
            if len(pool) == 1:
                how = "the only parent with a genome"
            elif len(pool) <= TOURNAMENT:
                how = f"the fittest of the {len(pool)} parents with genomes"
            else:
                how = f"the winner of a {TOURNAMENT}-way tournament among {len(pool)} parents"
            intro = f"Mutated {_describe(pa)}, {how}, and"
        followed: list[str] = []
        for _ in range(8):  # never hand back a parent's (or a zoo loss's) exact genome
            if reading.constrains() and not meets(genome, reading):
                genome, changed = honour(genome, reading)
                followed += changed
            if genome.key() not in taken:
                break
            genome, extra = mutate(genome, rng)
            notes += extra
        verb = "" if intro.endswith(":") else " changed:"
        thought = f"{intro}{verb} {'; '.join(notes)}."
        if reading.used:
            asked = "; ".join(reading.used.values())
            thought += f" Your hints asked for {asked}: " + (
                f"{', '.join(dict.fromkeys(followed))}." if followed else "the design already kept to them."
            )
        return Proposal(
            name=genome_name(genome),
            thought=thought,
            code=render(genome),
            parent_ids=[p.id for p in used],
            hints_used=list(reading.used),
            hints_ignored=reading.ignored,
        )

    def repair(self, index: int, code: str, failures: list[CheckResult], attempt: int) -> Proposal:
        """A safer version of `code` for the failed checks; deterministic in (seed, index, code, failures).

        A targeted fix of the genome first (see `stabilise`; escalated from attempt 2 on). Code without a
        genome, a genome with no fix left for these checks, or attempt 3 and later start over from a
        mutated stable zoo genome, which passes the checks by construction.
        """
        failed = {f.name for f in failures if not f.passed}
        rng = _seeded(self.seed, "repair", index, _code_hash(code), sorted(failed), attempt)
        genome = parse_genome(code)
        checks = ", ".join(sorted(failed)) or "no named check"
        if genome is None:
            return self._fallback(rng, f"The failing code ({checks}) has no genome to repair, so")
        old = _function_name(code) or genome_name(genome)
        child, notes = stabilise(genome, failed, escalate=attempt >= 2)
        if not notes and render(genome, old) != code:
            child, notes = genome, ["re-rendered it from its genome, dropping edits made to the code"]
        if not notes or attempt >= 3:
            return self._fallback(rng, f"No targeted fix for {old} ({checks}) is left, so")
        return Proposal(
            name=genome_name(child),
            thought=f"Repaired {old}, which failed {checks}: {'; '.join(notes)}.",
            code=render(child),
        )

    def _tournament(
        self, rng: random.Random, pool: list[tuple[ParentInfo, Genome]]
    ) -> tuple[ParentInfo, Genome]:
        entrants = rng.sample(pool, min(TOURNAMENT, len(pool)))
        return max(entrants, key=lambda pg: _fitness(pg[0]))

    def _fallback(self, rng: random.Random, intro: str) -> Proposal:
        start = rng.choice(STABLE_SEEDS)
        genome, notes = perturb(SEEDS[start], rng)
        return Proposal(
            name=genome_name(genome),
            thought=f"{intro} started over from the zoo's stable {start} genome, with {notes}.",
            code=render(genome),
        )


def _code_hash(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()[:16]


def _function_name(code: str) -> str | None:
    match = re.search(r"^def (\w+)\(", code, re.MULTILINE)
    return match.group(1) if match else None
