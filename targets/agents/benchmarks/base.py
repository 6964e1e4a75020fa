"""What every benchmark gives the agent-system target: items with an id, the task text that the agent
sees (`taskInfo.content`) and a gold answer that stays in the parent, a scorer, and fixed splits."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel


class BenchmarkError(ValueError):
    """A benchmark that cannot be loaded: one sentence saying what to give or fix."""


class Item(BaseModel):
    id: str
    content: str
    """The task as the agent reads it (never the answer)."""
    gold: Any
    """What the scorer compares against: a string, alternatives, a letter, a grid."""


@dataclass(frozen=True)
class Benchmark:
    name: str
    items: list[Item]
    """Every item, in the files' own order."""
    score: Callable[[Any, Item], float]
    """(the agent's answer, the item) -> a score in [0, 1]."""
    answer_hint: str
    """How the framework asks for the `answer` field (e.g. "Return ONLY an integer")."""
    well_formed: Callable[[Any], bool]
    """Whether an answer has the benchmark's form at all (the check's "answer-form")."""
    n_valid: int
    n_test: int

    def split(self, seed: int, n_valid: int | None = None, n_test: int | None = None) -> Splits:
        """Fixed validation and test items: the items shuffled by `seed`, then cut; a small benchmark
        fills the validation split first."""
        order = list(self.items)
        random.Random(seed).shuffle(order)
        nv = min(n_valid if n_valid is not None else self.n_valid, len(order))
        nt = min(n_test if n_test is not None else self.n_test, len(order) - nv)
        return Splits(valid=order[:nv], test=order[nv : nv + nt])


@dataclass(frozen=True)
class Splits:
    valid: list[Item]
    test: list[Item]


def need_path(name: str, path: Path | None, what: str) -> Path:
    """The data path, or one sentence on what to give."""
    if path is None:
        raise BenchmarkError(f"the {name} benchmark needs its data: set data_path to {what}")
    if not path.exists():
        raise BenchmarkError(f"the {name} data path {path} does not exist")
    return path


def files_under(path: Path, patterns: tuple[str, ...]) -> list[Path]:
    """`path` itself, or the files under it matching `patterns` (sorted: a stable item order)."""
    if path.is_file():
        return [path]
    found = sorted({p for pattern in patterns for p in path.rglob(pattern) if p.is_file()})
    return found
