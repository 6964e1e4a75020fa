"""The building blocks of update rules, the seed archive made from them, and the offline proposer.

A rule is a small genome: a direction (the gradient, its moving average, Nesterov's look-ahead, or the
sign of the average as in Lion), an optional per-coordinate scale (RMSProp's moving average of g², or
Adagrad's running sum), bias correction, ε and gradient-norm clipping. `render` writes it as readable
candidate code with the genome on its docstring line, so that a proposer can read a parent back.
"""

from __future__ import annotations

import random
import re
from typing import Literal

from pydantic import BaseModel

from targets.base import ParentInfo, Proposal, SeedCandidate
from targets.results import CheckResult


class Genome(BaseModel, frozen=True):
    direction: Literal["grad", "momentum", "nesterov", "sign"] = "grad"
    beta1: float = 0.9
    scale: Literal["none", "rms", "adagrad"] = "none"
    beta2: float = 0.999
    bias_correction: bool = False
    eps: float = 1e-8
    clip: float | None = None
    """Clip the gradient's norm to this before anything else (None: no clipping)."""

    def label(self) -> str:
        parts = [self.direction, self.scale]
        if self.direction != "grad":
            parts.append(f"b{self.beta1:g}")
        if self.scale == "rms":
            parts.append(f"b{self.beta2:g}")
        if self.bias_correction:
            parts.append("bc")
        if self.clip is not None:
            parts.append(f"clip{self.clip:g}")
        return "_".join(parts).replace(".", "p")


CHOICES: dict[str, list] = {
    "direction": ["grad", "momentum", "nesterov", "sign"],
    "beta1": [0.8, 0.9, 0.95, 0.99],
    "scale": ["none", "rms", "adagrad"],
    "beta2": [0.9, 0.99, 0.999],
    "bias_correction": [False, True],
    "eps": [1e-8, 1e-6, 1e-4],
    "clip": [None, 1.0, 10.0],
}


def render(g: Genome, name: str | None = None) -> str:
    """The genome as candidate code: one function in the target's interface."""
    name = name or g.label()
    b1, c1, b2, c2 = g.beta1, round(1 - g.beta1, 6), g.beta2, round(1 - g.beta2, 6)
    moments = g.direction != "grad"
    lines = [
        f"def {name}(self, param, grad, state):",
        f'    """blocks: {g.model_dump_json()}"""',
        '    t = state.get("t", 0) + 1',
    ]
    if g.clip is not None:
        lines += [
            "    norm = np.sqrt(np.sum(grad * grad))",
            f"    grad = grad * min(1.0, {g.clip!r} / (norm + 1e-12))  # clip the gradient's norm",
        ]
    new_state = ['"t": t']
    step = "grad"
    if moments:
        lines += [
            f'    m = {b1!r} * state.get("m", np.zeros_like(param)) + {c1!r} * grad',
        ]
        new_state.append('"m": m')
        m = f"(m / (1 - {b1!r} ** t))" if g.bias_correction else "m"
        step = {
            "momentum": m,
            "nesterov": f"({b1!r} * {m} + {c1!r} * grad)",  # look ahead along m
            "sign": f"np.sign({b1!r} * m + {c1!r} * grad)",
        }[g.direction]
    if g.scale == "rms":
        lines.append(f'    v = {b2!r} * state.get("v", np.zeros_like(param)) + {c2!r} * grad * grad')
        v = f"v / (1 - {b2!r} ** t)" if g.bias_correction else "v"
        lines.append(f"    direction = {step} / (np.sqrt({v}) + {g.eps!r})")
        new_state.append('"v": v')
    elif g.scale == "adagrad":
        lines.append('    v = state.get("v", np.zeros_like(param)) + grad * grad')
        lines.append(f"    direction = {step} / (np.sqrt(v) + {g.eps!r})")
        new_state.append('"v": v')
    else:
        lines.append(f"    direction = {step}")
    lines += [
        "    return param - self.lr * direction, {" + ", ".join(new_state) + "}",
    ]
    return "\n".join(lines) + "\n"


def read_genome(code: str) -> Genome | None:
    """The genome on a rendered candidate's docstring line; None for code written otherwise."""
    found = re.search(r'"""blocks: (\{.*?\})"""', code)
    return Genome.model_validate_json(found.group(1)) if found else None


CLASSICS: list[tuple[str, Genome, str]] = [
    ("sgd", Genome(), "Plain gradient descent: x ← x − lr·g."),
    ("momentum", Genome(direction="momentum"), "Heavy-ball momentum (Polyak 1964), as a moving average."),
    ("nesterov", Genome(direction="nesterov"), "Nesterov's accelerated gradient in its look-ahead form."),
    ("rmsprop", Genome(scale="rms", beta2=0.99), "RMSProp (Tieleman & Hinton 2012): divide by the RMS of g."),
    ("adagrad", Genome(scale="adagrad"), "Adagrad (Duchi et al. 2011): divide by the root of Σg²."),
    (
        "adam",
        Genome(direction="momentum", scale="rms", bias_correction=True),
        "Adam (Kingma & Ba 2015): momentum over RMS scaling, both bias-corrected.",
    ),
]


def seed_archive() -> list[SeedCandidate]:
    return [SeedCandidate(name=n, thought=t, code=render(g, n)) for n, g, t in CLASSICS]


class BlockProposer:
    """Mutation and recombination of the parents' genomes (the classics when no parent has one)."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.seen: set[Genome] = {g for _, g, _ in CLASSICS}

    def _mutate(self, g: Genome, genes: int = 1) -> Genome:
        for _ in range(50):  # find one not proposed yet
            fields = g.model_dump()
            for gene in self.rng.sample(sorted(CHOICES), genes):
                fields[gene] = self.rng.choice([c for c in CHOICES[gene] if c != fields[gene]])
            child = Genome(**fields)
            if child not in self.seen:
                break
        self.seen.add(child)
        return child

    def propose(self, index: int, parents: list[ParentInfo]) -> Proposal:
        readable = [(p, g) for p in parents if (g := read_genome(p.code)) is not None]
        self.seen |= {g for _, g in readable}  # after a resume this proposer is new: parents are known
        readable.sort(key=lambda pg: -(pg[0].fitness if pg[0].fitness is not None else float("-inf")))
        if len(readable) >= 2 and self.rng.random() < 0.5:
            (pa, ga), (pb, gb) = self.rng.sample(readable[:4], 2)
            mixed = Genome(**{k: self.rng.choice([ga, gb]).model_dump()[k] for k in CHOICES})
            child, ids, how = self._mutate(mixed), [pa.id, pb.id], f"recombines {pa.name} and {pb.name}"
        elif readable:
            parent, g = readable[0]
            child, ids, how = self._mutate(g), [parent.id], f"mutates {parent.name}"
        else:
            name, g, _ = self.rng.choice(CLASSICS)
            child, ids, how = self._mutate(g, genes=2), [], f"mutates the classic {name}"
        return Proposal(
            name=child.label(), thought=f"Candidate {index} {how}: {child.label()}.", code=render(child),
            parent_ids=ids,
        )  # fmt: skip

    def repair(self, index: int, code: str, failures: list[CheckResult], attempt: int) -> Proposal:
        """A duplicate moves further (two genes); a broken rule gets safer (clipping, a larger ε). Code
        that it cannot read is replaced by a mutation of Adam."""
        g = read_genome(code) or CLASSICS[-1][1]
        self.seen.add(g)
        if any(f.name == "novelty" for f in failures):
            child, how = self._mutate(g, genes=2), "a duplicate: change two blocks"
        else:
            safer = g.model_copy(update={"clip": g.clip or 1.0, "eps": max(g.eps, 1e-6)})
            child = safer if safer not in self.seen else self._mutate(safer)
            how = "clip the gradient, larger eps"
        self.seen.add(child)
        why = ", ".join(f.name for f in failures) or "failed checks"
        return Proposal(
            name=child.label(), thought=f"Repair {attempt} after {why}: {how}.", code=render(child)
        )
