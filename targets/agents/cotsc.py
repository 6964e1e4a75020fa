"""CoT-SC at matched token cost: the standing baseline an agent system must beat.

Designed multi-agent systems often fall below chain-of-thought with self-consistency (CoT-SC) at the
same cost ("The Illusion of Multi-Agent Advantage", 2026), so an accuracy alone misleads. The baseline
is measured once per target: `samples` independent chains of thought per validation item (the CoT seed at
CoT-SC's temperature, one evaluation seed per chain). From them, the expected score of the majority vote
of n chains, n = 1 … samples, over every subset of n chains, and what a chain costs in inner tokens: a
CoT-SC accuracy for any budget of chains, from one measurement.

A candidate is compared with CoT-SC at the most chains its own tokens per item pay for (at least one), item
by item: the paired difference, a bootstrap interval, and a sign-flip p-value (exact in its null whatever
the items' spread). It beats the baseline only where it is better *and* spent no more tokens than those
chains; the leaderboard applies Benjamini–Hochberg over the run's candidates.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Sequence
from itertools import combinations
from typing import Any

from pydantic import BaseModel

from targets.agents.benchmarks import Benchmark, Item
from targets.agents.runner import AgentRunner
from targets.agents.scoring import bootstrap
from targets.agents.seeds import cot

TEMPERATURE = 0.8
"""CoT-SC's sampling temperature (ADAS's seed archive)."""
FLIPS = 4000
"""Random sign flips when the items are too many to enumerate them all (2^items > FLIPS)."""


class VoteCurve(BaseModel):
    """CoT-SC measured once on the validation items: what n chains score and cost."""

    samples: int
    tokens_per_chain: float
    """Inner-model tokens (prompt + completion) of one chain on one item, averaged."""
    item_scores: dict[str, list[float]]
    """Item id → the expected score (percent) of the majority of n chains, for n = 1 … samples."""
    calls: int = 0
    tokens: int = 0
    """What measuring it cost in the inner model, all chains."""


class MatchedBaseline(BaseModel):
    """A candidate against CoT-SC with the chains its tokens pay for, paired by item."""

    chains: int
    baseline_tokens: float
    """CoT-SC's tokens per item at those chains."""
    tokens: float
    """The candidate's tokens per item."""
    baseline_score: float
    diff: float
    """Candidate − CoT-SC, mean over items, percentage points."""
    ci_low: float
    ci_high: float
    p_value: float
    """Two-sided sign-flip p-value of the paired difference."""
    items: int

    @property
    def within_cost(self) -> bool:
        """The candidate spent no more than the CoT-SC it is compared with."""
        return self.tokens <= self.baseline_tokens


def measure(runner: AgentRunner, bench: Benchmark, items: list[Item], samples: int) -> VoteCurve | str:
    """Run `samples` chains of thought on every item; the curve, or why it could not be measured."""
    answers: dict[str, list[Any]] = {it.id: [] for it in items}
    calls = tokens = 0
    for seed in range(samples):
        out = runner.run(cot(TEMPERATURE), items, bench.answer_hint, seed=seed)
        if blocked := out.blocked_by():
            return blocked
        if out.failure:
            return f"the chain-of-thought baseline failed: {out.failure}"
        calls += out.usage.calls
        tokens += out.usage.prompt_tokens + out.usage.completion_tokens
        by_id = {t.id: t for t in out.tasks}
        for it in items:
            task = by_id.get(it.id)
            answers[it.id].append(None if task is None or task.error else task.answer)
    return VoteCurve(
        samples=samples,
        tokens_per_chain=tokens / max(1, samples * len(items)),
        item_scores={it.id: vote_scores(bench, it, answers[it.id]) for it in items},
        calls=calls,
        tokens=tokens,
    )


def vote_scores(bench: Benchmark, item: Item, answers: Sequence[Any]) -> list[float]:
    """Per n = 1 … len(answers): the mean score (percent) of the majority answer of every n of the chains
    (ties to the earliest chain, as CoT-SC's Counter; a chain that failed casts no vote)."""
    out = []
    for n in range(1, len(answers) + 1):
        scores = []
        for subset in combinations(range(len(answers)), n):
            votes = [answers[i] for i in subset if answers[i] is not None]
            if not votes:
                scores.append(0.0)
                continue
            top = Counter(str(v) for v in votes).most_common(1)[0][0]
            voted = next(v for v in votes if str(v) == top)
            scores.append(100.0 * bench.score(voted, item))
        out.append(sum(scores) / len(scores))
    return out


def compare(
    curve: VoteCurve, item_ids: list[str], item_scores: dict[str, list[float]], tokens: float
) -> MatchedBaseline:
    """The candidate (its per-seed item scores, its tokens per item) against CoT-SC at matched cost."""
    chains = min(curve.samples, max(1, math.floor(tokens / max(curve.tokens_per_chain, 1e-9))))
    mine = [sum(seed[i] for seed in item_scores.values()) / len(item_scores) for i in range(len(item_ids))]
    base = [curve.item_scores[iid][chains - 1] for iid in item_ids]
    diffs = [m - b for m, b in zip(mine, base, strict=True)]
    boot = bootstrap(diffs, n_boot=2000, seed=0)
    return MatchedBaseline(
        chains=chains,
        baseline_tokens=chains * curve.tokens_per_chain,
        tokens=tokens,
        baseline_score=sum(base) / len(base),
        diff=boot.mean,
        ci_low=boot.ci_low,
        ci_high=boot.ci_high,
        p_value=sign_flip_p(diffs),
        items=len(diffs),
    )


def sign_flip_p(diffs: list[float], seed: int = 0) -> float:
    """Two-sided p of a mean difference of 0, flipping each item's sign: exact by enumeration for up to
    twelve items, else FLIPS seeded random flips (counting the observed one)."""
    observed = abs(sum(diffs))
    nonzero = [d for d in diffs if d != 0.0]
    if not nonzero:
        return 1.0
    if len(nonzero) <= 12:
        sums = [
            abs(sum(d if (mask >> i) & 1 else -d for i, d in enumerate(nonzero)))
            for mask in range(2 ** len(nonzero))
        ]
        return sum(s >= observed - 1e-9 for s in sums) / len(sums)
    rng = random.Random(seed)
    flipped = (abs(sum(d if rng.random() < 0.5 else -d for d in nonzero)) for _ in range(FLIPS))
    hits = sum(s >= observed - 1e-9 for s in flipped)
    return (hits + 1) / (FLIPS + 1)
