"""Reading and writing archives: DiscoPOP's, ADAS's and disco's own JSONL export.

  DiscoPOP  JSON list of {"code", "fitness"}             (fitness: a number)
  ADAS      JSON list of {"thought", "name", "code", "fitness", "generation"}
            (fitness: a number or ADAS's "95% Bootstrap Confidence Interval: (a%, b%), Median: m%")
  disco     JSONL, one CandidateRecord per line, with an optional "fingerprint" list

Imported candidates get a run id naming their format, so importing the same archive twice, or the same
code from two archives of one format, keeps one record.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from memory.records import CandidateRecord, Fitness

Format = Literal["discopop", "adas", "disco"]
_ADAS_CI = re.compile(
    r"\(\s*(-?[\d.]+)%?\s*,\s*(-?[\d.]+)%?\s*\)\s*,\s*Median:\s*(-?[\d.]+)%?", re.IGNORECASE
)
_DEF = re.compile(r"^\s*def\s+([A-Za-z_]\w*)", re.MULTILINE)


class ArchiveError(Exception):
    """The file is not an archive disco can read; the message says where and why."""


class Imported(BaseModel):
    """One candidate read from an archive, with its fingerprint when the archive carried one."""

    record: CandidateRecord
    fingerprint: list[float] | None = None


def parse_fitness(value: Any) -> Fitness | None:
    """A number, ADAS's bootstrap-CI string, or a disco Fitness object; None when absent."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ValueError("fitness is a boolean")
    if isinstance(value, int | float):
        return Fitness(value=float(value), ci_low=float(value), ci_high=float(value))
    if isinstance(value, dict):
        return Fitness.model_validate(value)
    if isinstance(value, str):
        match = _ADAS_CI.search(value)
        if match:
            low, high, median = (float(g) for g in match.groups())
            return Fitness(value=median, ci_low=low, ci_high=high)
        return parse_fitness(float(value))
    raise ValueError(f"fitness {value!r} is neither a number nor an ADAS confidence-interval string")


def detect_format(text: str) -> Format:
    stripped = text.lstrip()
    if not stripped.startswith("["):
        return "disco"
    try:
        items = json.loads(stripped)
    except json.JSONDecodeError as exc:
        raise ArchiveError(f"the file is not valid JSON (line {exc.lineno}: {exc.msg})") from None
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise ArchiveError("a JSON archive must be a list of objects")
    if any({"thought", "name", "generation"} & set(i) for i in items):
        return "adas"
    return "discopop"


def read_archive(path: Path, target: str | None = None, fmt: Format | None = None) -> list[Imported]:
    """Every candidate in an archive file; `target` overrides the format's default (dpo / agents)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ArchiveError(f"cannot read {path}: no such file") from None
    except IsADirectoryError:
        raise ArchiveError(f"cannot read {path}: it is a directory") from None
    except UnicodeDecodeError:
        raise ArchiveError(f"cannot read {path}: it is not UTF-8 text") from None
    except OSError as exc:
        raise ArchiveError(f"cannot read {path}: {exc.strerror or exc}") from None
    fmt = fmt or detect_format(text)
    if fmt == "disco":
        return list(_read_jsonl(text, target))
    items = json.loads(text)
    return [_from_item(item, n, fmt, target) for n, item in enumerate(items)]


def _from_item(item: dict[str, Any], n: int, fmt: Format, target: str | None) -> Imported:
    where = f"item {n} of the {fmt} archive"
    code = item.get("code")
    if not isinstance(code, str) or not code.strip():
        raise ArchiveError(f"{where} has no `code` string")
    try:
        fitness = parse_fitness(item.get("fitness"))
    except ValueError as exc:
        raise ArchiveError(f"{where}: {exc}") from None
    name = item.get("name") or (m.group(1) if (m := _DEF.search(code)) else f"{fmt}-{n}")
    generation = item.get("generation")
    record = CandidateRecord(
        run_id=f"import-{fmt}",
        target=target or ("agents" if fmt == "adas" else "dpo"),
        name=str(name),
        thought=str(item.get("thought") or ""),
        code=code,
        status="evaluated" if fitness is not None else "proposed",
        fitness=fitness,
        source=fmt,
        generation=generation if isinstance(generation, int) else None,
    )
    return Imported(record=record)


def _read_jsonl(text: str, target: str | None) -> Iterable[Imported]:
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            fingerprint = data.pop("fingerprint", None) if isinstance(data, dict) else None
            if target is not None and isinstance(data, dict):
                data["target"] = target
            yield Imported(record=CandidateRecord.model_validate(data), fingerprint=fingerprint)
        except json.JSONDecodeError as exc:
            raise ArchiveError(f"line {lineno} is not JSON ({exc.msg})") from None
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(p) for p in first["loc"]) or "record"
            raise ArchiveError(f"line {lineno} is not a disco candidate: {field}: {first['msg']}") from None


def export_line(record: CandidateRecord, fingerprint: list[float] | None = None) -> str:
    """One line of disco's JSONL export (the record, plus its fingerprint when it has one)."""
    data = record.model_dump(mode="json")
    if fingerprint is not None:
        data["fingerprint"] = fingerprint
    return json.dumps(data, ensure_ascii=False)
