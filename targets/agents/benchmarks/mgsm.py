"""MGSM (Shi et al. 2023): grade-school maths in several languages, `mgsm_<lang>.tsv` files without a
header, one `question<TAB>integer answer` per line. ADAS pools the languages."""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Any

from targets.agents.benchmarks.base import Benchmark, BenchmarkError, Item, files_under, need_path

ANSWER_HINT = "Return ONLY an integer. DO NOT return anything other than the integer answer."
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def parse_number(text: str) -> float | None:
    """The last number in `text` ("The answer is 1,250." -> 1250.0), or None."""
    found = _NUMBER.findall(str(text))
    if not found:
        return None
    try:
        return float(found[-1].replace(",", ""))
    except ValueError:
        return None


def score(answer: Any, item: Item) -> float:
    value = parse_number(str(answer))
    return float(value is not None and abs(value - float(item.gold)) < 1e-9)


def load(path: Path | None) -> Benchmark:
    root = need_path("mgsm", path, "an mgsm_<lang>.tsv file or a folder of them")
    files = files_under(root, ("mgsm_*.tsv", "*.tsv"))
    items: list[Item] = []
    for file in files:
        with file.open(encoding="utf-8", newline="") as fh:
            for n, row in enumerate(csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE), start=1):
                if not row or not "".join(row).strip():
                    continue
                if len(row) != 2:
                    raise BenchmarkError(
                        f"{file}:{n} has {len(row)} columns; MGSM lines are question<TAB>answer"
                    )
                question, answer = row
                try:
                    gold = float(answer.replace(",", "").strip())
                except ValueError:
                    raise BenchmarkError(f"{file}:{n}: the answer {answer!r} is not a number") from None
                items.append(Item(id=f"{file.stem}:{n}", content=question.strip(), gold=gold))
    if not items:
        raise BenchmarkError(f"no MGSM items under {root} (expected mgsm_<lang>.tsv files)")
    return Benchmark(
        "mgsm", items, score, ANSWER_HINT, lambda a: parse_number(str(a)) is not None, n_valid=128, n_test=800
    )
