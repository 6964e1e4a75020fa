"""The novelty gate's settings and verdict, run before anything expensive (DESIGN: check step).

Order of evidence: an identical code hash is a duplicate outright; when the candidate and its nearest
behavioural neighbour both have fingerprints, behaviour decides (a renamed or rewritten loss computes
the same numbers, and a changed constant does not); otherwise the text embedding of the code decides.
Thresholds come from evals/bench_memory.py's labelled set (evals/results/memory_novelty.md).
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel

from memory.records import is_baseline_id


class NoveltyConfig(BaseModel):
    """Thresholds of the gate; a similarity at or above one means duplicate."""

    text_threshold: float = 0.97
    """Cosine similarity of code embeddings (MiniLM): rewritten copies score high, but so do different
    losses written alike, so text alone is set strict (see the eval for precision and recall)."""
    fingerprint_threshold: float = 0.99
    """exp(-RMS difference) of asinh-scaled fingerprints: 0.99 means about 1% typical relative difference
    in losses and gradients; equal forms differ only by float rounding (similarity ≈ 1)."""


Evidence = Literal["code_hash", "fingerprint", "text", "empty"]


class NoveltyVerdict(BaseModel):
    """`duplicate of ID, similarity s` or novel, with the evidence behind it."""

    novel: bool
    nearest: str | None
    similarity: float
    """Similarity to `nearest` in the space that decided (1.0 for an identical code hash)."""
    by: Evidence
    threshold: float | None = None
    text_similarity: float | None = None
    fingerprint_similarity: float | None = None

    @property
    def message(self) -> str:
        if self.nearest is None:
            return "novel: memory holds nothing to compare with for this target"
        if self.novel:
            return f"novel: nearest is {self.nearest}, {self.by} similarity {self.similarity:.4f}"
        known = " (a published method of the target: no discovery)" if is_baseline_id(self.nearest) else ""
        return f"duplicate of {self.nearest}{known}, {self.by} similarity {self.similarity:.4f}"

    def summary(self) -> dict[str, object]:
        """The CLI's `novelty --json` object."""
        return {"novel": self.novel, "nearest": self.nearest, "similarity": round(self.similarity, 6)}


def cosine_similarity(distance: float) -> float:
    """Chroma's cosine space returns 1 - cos."""
    return 1.0 - float(distance)


def fingerprint_similarity(squared_l2: float, dim: int) -> float:
    """exp(-RMS difference): 1 for equal behaviour, falling with the typical per-entry difference.

    Chroma's l2 space returns the squared distance; dividing by the dimension makes the figure
    independent of how many grid points the target's fingerprint has.
    """
    return math.exp(-math.sqrt(max(float(squared_l2), 0.0) / max(dim, 1)))
