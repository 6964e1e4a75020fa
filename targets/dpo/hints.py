"""A person's hints, read as constraints on loss genomes: what the offline proposer can honour.

A model reads a hint in its prompt; the offline proposer has no model, so it understands the hints it
can express in its own vocabulary — term kinds to avoid or to favour ("no exponentials", "try a
hinge"), boundedness ("prefer bounded losses"), and LRML's gate ("without gating") — and says which
hints it could not act on, so that the UI never claims a hint was applied when it was not.

Pure string work: nothing here imports torch.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from pydantic import BaseModel, Field

from targets.dpo.genome import VOCABULARY, Genome, Term, TermKind, default_term, normalise

MENTIONS: dict[str, str] = {
    "exponential": r"exp(?:onential)?s?\b|cell\b",
    "hinge": r"hinges?\b|slic\b|relu\b",
    "squared": r"squared?\b|quadratic\b|ipo\b",
    "sigmoid": r"sigmoids?\b|kto\b",
    "tanh_logistic": r"tanh\b|padll\b",
    "smoothed_logistic": r"(?:label[- ])?smooth(?:ed|ing)\b|cdpo\b",
    "robust_logistic": r"robust\b",
    "logistic": r"logistic\b|log-?sigmoid\b|softplus\b",
    "gate": r"gat(?:e|ed|es|ing)\b|lrml\b|modulat\w*",
    "bounded": r"bounded\b|saturat\w*|capped\b",
    "unbounded": r"unbounded\b",
}
"""What a hint may name: a term kind (by its name or the zoo loss it comes from), the gate, boundedness."""
NEGATIONS = (
    r"\b(?:no|not|never|avoid\w*|without|drop\w*|remove\w*|less|fewer|stop\w*|ban\w*|don'?t|forbid\w*"
    r"|exclud\w*)\b"
)
GROWING: frozenset[TermKind] = frozenset({"exponential", "squared"})
"""Terms that grow faster than linearly for mis-ordered pairs: what a "bounded" hint rules out."""
SATURATING: tuple[TermKind, ...] = ("tanh_logistic", "sigmoid")
"""Terms bounded above: what a "bounded" hint favours."""


class HintReading(BaseModel):
    """The constraints read from the hints, and which hints gave none."""

    forbid: set[TermKind] = Field(default_factory=set)
    favour: set[TermKind] = Field(default_factory=set)
    gate: bool | None = None
    """False: no gate; True: a gate; None: either."""
    used: dict[str, str] = Field(default_factory=dict)
    """hint → what was taken from it, in words."""
    ignored: list[str] = Field(default_factory=list)
    """Hints that name nothing the genome can express."""

    def constrains(self) -> bool:
        return bool(self.forbid or self.favour or self.gate is not None)


def _clauses(hint: str) -> list[str]:
    return [c for c in re.split(r"[,;.…!?]+|\bbut\b|\band\b|\bor\b", hint.lower()) if c.strip()]


def read_hints(hints: Sequence[str]) -> HintReading:
    """Each hint, clause by clause: a mention after a negation ("no", "avoid", "without" …) forbids,
    any other mention favours."""
    reading = HintReading()
    for hint in hints:
        said: list[str] = []
        for clause in _clauses(hint):
            for what, pattern in MENTIONS.items():
                match = re.search(r"\b(?:" + pattern + ")", clause)
                if match is None:
                    continue
                negated = re.search(NEGATIONS, clause[: match.start()]) is not None
                said.append(_apply(reading, what, negated))
        if said:
            reading.used[hint] = "; ".join(dict.fromkeys(said))
        else:
            reading.ignored.append(hint)
    reading.favour -= reading.forbid
    return reading


def _apply(reading: HintReading, what: str, negated: bool) -> str:
    if what == "unbounded":
        what, negated = "bounded", not negated
    if what == "gate":
        reading.gate = not negated
        return "no gate" if negated else "a gate"
    if what == "bounded":
        if negated:
            reading.favour |= GROWING
            return "favour exp and squared terms"
        reading.forbid |= GROWING
        reading.favour |= set(SATURATING)
        return "no exp or squared terms, favour sigmoid and tanh"
    if what not in VOCABULARY:  # every other mention in MENTIONS is a term kind
        raise ValueError(f"MENTIONS names {what!r}, which is no term kind")
    (reading.forbid if negated else reading.favour).add(what)
    return f"{'no' if negated else 'favour'} {VOCABULARY[what].tag} terms"


def honour(genome: Genome, reading: HintReading) -> tuple[Genome, list[str]]:
    """The genome changed as little as it takes to meet the hints, and what was changed.

    Forbidden terms are swapped for a favoured kind (else DPO's logistic term, else any allowed kind),
    keeping weight and branch; with favoured kinds and none present, the first term becomes one; the
    gate is added or removed as asked."""
    allowed: list[TermKind] = [k for k in VOCABULARY if k not in reading.forbid]
    if not allowed:
        return genome, []
    favoured: list[TermKind] = [k for k in VOCABULARY if k in reading.favour and k in allowed]
    fallback: TermKind = favoured[0] if favoured else ("logistic" if "logistic" in allowed else allowed[0])
    terms: list[Term] = list(genome.terms)
    notes: list[str] = []
    for i, t in enumerate(terms):
        if t.kind in reading.forbid:
            terms[i] = default_term(fallback, t.weight, t.branch)
            notes.append(f"replaced its {t.kind} term by {fallback}")
    if favoured and not any(t.kind in favoured for t in terms):
        old = terms[0]
        terms[0] = default_term(favoured[0], old.weight, old.branch)
        notes.append(f"made its {old.kind} term {favoured[0]}")
    tau = genome.tau
    if reading.gate is False and any(t.branch != "all" for t in terms):
        terms = [t.model_copy(update={"branch": "all"}) for t in terms]
        notes.append("removed the gate")
    elif reading.gate is True and all(t.branch == "all" for t in terms):
        if len(terms) == 1:
            others: list[TermKind] = [k for k in (*favoured, *allowed) if k != terms[0].kind]
            second = others[0] if others else terms[0].kind
            terms.append(default_term(second, terms[0].weight))
        terms = [t.model_copy(update={"branch": "low" if i == 0 else "high"}) for i, t in enumerate(terms)]
        notes.append(f"added LRML's gate σ(z/{tau:g})")
    child = normalise(genome.model_copy(update={"terms": terms, "tau": tau}))
    return child, notes


def meets(genome: Genome, reading: HintReading) -> bool:
    """Does `genome` satisfy the hints' constraints?"""
    kinds = {t.kind for t in genome.terms}
    if kinds & reading.forbid:
        return False
    favoured = reading.favour - reading.forbid
    if favoured and not kinds & favoured:
        return False
    gated = any(t.branch != "all" for t in genome.terms)
    return reading.gate is None or gated == reading.gate
