"""DROP (Dua et al. 2019) in the gzipped JSONL that ADAS reads: `context` (passage, question, "Answer:"),
`completion`, and `ref_text` (gold answers separated by '|'); scored by DROP's F1."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

from targets.agents.benchmarks.base import Benchmark, BenchmarkError, Item, files_under, need_path
from targets.agents.scoring import drop_score

ANSWER_HINT = "Directly answer the question. Keep it very concise."


def score(answer: Any, item: Item) -> float:
    return drop_score(str(answer), list(item.gold))


def _lines(file: Path) -> list[str]:
    opener = gzip.open if file.suffix == ".gz" else open
    with opener(file, "rt", encoding="utf-8") as fh:
        return fh.read().splitlines()


def load(path: Path | None) -> Benchmark:
    root = need_path("drop", path, "a DROP .jsonl.gz file (e.g. drop_v0_dev.jsonl.gz) or a folder of them")
    items: list[Item] = []
    for file in files_under(root, ("*.jsonl.gz", "*.jsonl")):
        try:
            lines = _lines(file)
        except (OSError, EOFError, UnicodeDecodeError) as exc:
            raise BenchmarkError(f"cannot read {file}: {exc}") from None
        for n, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                context = str(row["context"])
            except (ValueError, KeyError, TypeError):
                raise BenchmarkError(f"{file}:{n} is not a DROP record with a `context` field") from None
            ref = row.get("ref_text") or str(row.get("completion", "")).strip()
            golds = [g for g in str(ref).split("|") if g.strip()]
            if not golds:
                raise BenchmarkError(f"{file}:{n} has no gold answer (ref_text or completion)")
            items.append(Item(id=f"{file.name.split('.')[0]}:{n}", content=context.strip(), gold=golds))
    if not items:
        raise BenchmarkError(f"no DROP items under {root} (expected .jsonl.gz files)")
    return Benchmark(
        "drop", items, score, ANSWER_HINT, lambda a: bool(str(a or "").strip()), n_valid=128, n_test=800
    )
