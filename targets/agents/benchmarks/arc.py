"""ARC (Chollet 2019): task JSON files with `train` and `test` lists of `{input, output}` integer grids.
Each test pair is one item; the agent sees the training pairs and the test input, and its answer must
equal the test output exactly."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from targets.agents.benchmarks.base import Benchmark, BenchmarkError, Item, files_under, need_path

ANSWER_HINT = "Return ONLY the output grid as a JSON list of lists of integers, e.g. [[0, 1], [1, 0]]."
_GRID = re.compile(r"\[\s*\[.*\]\s*\]", re.DOTALL)


def _is_grid(value: Any) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(row, list) and all(isinstance(c, int) for c in row) for row in value)
    )


def parse_grid(answer: Any) -> list[list[int]] | None:
    """A grid from the agent's answer: a list of lists, or the first `[[...]]` in a string."""
    if _is_grid(answer):
        return answer
    match = _GRID.search(str(answer))
    if not match:
        return None
    try:
        value = json.loads(match.group(0))
    except ValueError:
        return None
    return value if _is_grid(value) else None


def score(answer: Any, item: Item) -> float:
    return float(parse_grid(answer) == item.gold)


def _grid_text(grid: list[list[int]]) -> str:
    return json.dumps(grid)


def task_text(train: list[dict[str, Any]], test_input: list[list[int]]) -> str:
    parts = [
        "Find the common rule that maps each input grid to its output grid, then apply it to the test input."
    ]
    for i, pair in enumerate(train, start=1):
        grids = f"### Input:\n{_grid_text(pair['input'])}\n### Output:\n{_grid_text(pair['output'])}"
        parts.append(f"## Example {i}\n{grids}")
    parts.append(f"# Test Problem\n### Input:\n{_grid_text(test_input)}")
    return "\n\n".join(parts)


def load(path: Path | None) -> Benchmark:
    root = need_path("arc", path, "a folder of ARC task JSON files (e.g. ARC-AGI's data/training)")
    items: list[Item] = []
    for file in files_under(root, ("*.json",)):
        try:
            task = json.loads(file.read_text(encoding="utf-8"))
            train, test = task["train"], task["test"]
        except (OSError, ValueError, KeyError, TypeError):
            raise BenchmarkError(
                f"{file} is not an ARC task (a JSON object with `train` and `test`)"
            ) from None
        for k, pair in enumerate(test):
            if not (_is_grid(pair.get("input")) and _is_grid(pair.get("output"))):
                raise BenchmarkError(f"{file}: test pair {k} lacks an integer `input` or `output` grid")
            items.append(
                Item(id=f"{file.stem}:{k}", content=task_text(train, pair["input"]), gold=pair["output"])
            )
    if not items:
        raise BenchmarkError(f"no ARC tasks under {root} (expected *.json files)")
    return Benchmark(
        "arc", items, score, ANSWER_HINT, lambda a: parse_grid(a) is not None, n_valid=20, n_test=60
    )
