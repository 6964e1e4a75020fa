"""Multiple-choice benchmarks: MMLU (Hendrycks et al. 2021) and GPQA (Rein et al. 2023).

MMLU: its standard CSV files, either Hendrycks' headerless `question,A,B,C,D,answer` per subject or
simple-evals' `mmlu.csv` with a `Question,A,B,C,D,Answer,Subject` header. GPQA: its CSV (`Question`,
`Correct Answer`, `Incorrect Answer 1..3`), from a path the person gives (its authors ask that the items are
not published in plain text) or, online, from the gated hub data set with the person's own access.
"""

from __future__ import annotations

import csv
import os
import random
import re
from pathlib import Path
from typing import Any

from targets.agents.benchmarks.base import Benchmark, BenchmarkError, Item, files_under, need_path

ANSWER_HINT = "Return ONLY the alphabet choice, i.e. A or B or C or D."
LETTERS = "ABCD"
TEMPLATE = "Answer the following multiple choice question.\n\n{question}\n\n{options}"
GPQA_REPO = "Idavidrein/gpqa"
_LEADING = re.compile(r"^\s*(?:\(([A-Da-d])\)|([A-D])\b)")
_STATED = re.compile(r"(?i)answer\s*(?:is|:)?\s*\(?([A-D])\b")


def format_question(question: str, options: list[str]) -> str:
    lines = "\n".join(f"({LETTERS[i]}) {o.strip()}" for i, o in enumerate(options))
    return TEMPLATE.format(question=question.strip(), options=lines)


def extract_letter(answer: Any) -> str | None:
    """ "B", "(B) 42", "The answer is B." -> "B"."""
    text = str(answer).strip()
    lead = _LEADING.match(text)
    if lead:
        return (lead.group(1) or lead.group(2)).upper()
    stated = _STATED.search(text)
    return stated.group(1).upper() if stated else None


def _lettered(answer: Any) -> bool:
    return extract_letter(answer) is not None


def score(answer: Any, item: Item) -> float:
    return float(extract_letter(answer) == item.gold)


def load_mmlu(path: Path | None) -> Benchmark:
    root = need_path("mmlu", path, "MMLU's CSV files (a folder such as data/test, or simple-evals' mmlu.csv)")
    items: list[Item] = []
    for file in files_under(root, ("*.csv",)):
        with file.open(encoding="utf-8", newline="") as fh:
            rows = list(csv.reader(fh))
        if not rows:
            continue
        header = [h.strip().lower() for h in rows[0]]
        if "question" in header and "answer" in header:
            cols = [header.index(k) for k in ("question", "a", "b", "c", "d", "answer")]
            rows = [[r[c] for c in cols] for r in rows[1:] if len(r) == len(header)]
        for n, row in enumerate(rows, start=1):
            if len(row) != 6:
                raise BenchmarkError(
                    f"{file}:{n} has {len(row)} columns; MMLU rows are question,A,B,C,D,answer"
                )
            gold = row[5].strip().upper()
            if gold not in LETTERS:
                raise BenchmarkError(f"{file}:{n}: the answer {row[5]!r} is not one of A, B, C, D")
            content = format_question(row[0], row[1:5])
            items.append(Item(id=f"{file.stem}:{n}", content=content, gold=gold))
    if not items:
        raise BenchmarkError(f"no MMLU items under {root} (expected CSV files)")
    return Benchmark("mmlu", items, score, ANSWER_HINT, _lettered, n_valid=128, n_test=800)


def _gpqa_from_hub() -> Path:
    offline = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes")
    sentence = (
        "GPQA is gated on the Hugging Face hub: accept its terms at huggingface.co/datasets/Idavidrein/gpqa, "
        "log in (huggingface-cli login), or set data_path to your copy of gpqa_diamond.csv"
    )
    if offline:
        raise BenchmarkError(f"{sentence} (the hub is offline here: HF_HUB_OFFLINE is set)")
    try:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError
    except ImportError:
        raise BenchmarkError(f"{sentence} (huggingface_hub is not installed)") from None
    try:
        local = hf_hub_download(GPQA_REPO, "gpqa_diamond.csv", repo_type="dataset")
    except (HfHubHTTPError, LocalEntryNotFoundError, OSError) as exc:
        raise BenchmarkError(f"{sentence} ({type(exc).__name__})") from None
    return Path(local)


def load_gpqa(path: Path | None) -> Benchmark:
    root = _gpqa_from_hub() if path is None else need_path("gpqa", path, "gpqa_diamond.csv")
    items: list[Item] = []
    wanted = ("Question", "Correct Answer", "Incorrect Answer 1", "Incorrect Answer 2", "Incorrect Answer 3")
    for file in files_under(root, ("*.csv",)):
        with file.open(encoding="utf-8", newline="") as fh:
            reader = csv.DictReader(fh)
            missing = [c for c in wanted if c not in (reader.fieldnames or [])]
            if missing:
                raise BenchmarkError(f"{file} is not a GPQA CSV: it lacks the column {missing[0]!r}")
            for n, row in enumerate(reader, start=1):
                options = [row[c] for c in wanted[1:]]
                # The correct answer's position is shuffled per item, reproducibly (ADAS: random.sample).
                order = random.Random(f"gpqa:{file.stem}:{n}").sample(range(4), 4)
                shuffled = [options[i] for i in order]
                gold = LETTERS[order.index(0)]
                items.append(
                    Item(id=f"{file.stem}:{n}", content=format_question(row[wanted[0]], shuffled), gold=gold)
                )
    if not items:
        raise BenchmarkError(f"no GPQA items under {root}")
    return Benchmark("gpqa", items, score, ANSWER_HINT, _lettered, n_valid=32, n_test=166)
