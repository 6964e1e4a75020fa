"""What the report reads from a run's files, below both the collection and the failure taxonomy: a check
round's results, a failure kind, and the tolerant JSON reading that a half-written run needs."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel


class Check(BaseModel):
    name: str
    passed: bool
    level: str = "error"
    message: str = ""


Origin = Literal["candidate", "setup", "person"]
"""Who a failure is on (agent.report.taxonomy.origin)."""


class Failure(BaseModel):
    """One kind of failure and how often it happened (a check round, an evaluation or a job counts once)."""

    kind: str
    count: int
    candidates: list[str]
    example: str
    origin: Origin = "candidate"
    """candidate: the code fell short; setup: the configuration or the machine (a model endpoint, a missing
    inner model, a sandbox the host refused), nothing the candidate did; person: a veto."""


def read_json(path: Path) -> Any | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def valid(model: type[Any], items: Any) -> list[Any]:
    """The items that validate as `model`: one odd entry written by a target must not sink the report."""
    out = []
    for item in items if isinstance(items, list) else []:
        try:
            out.append(model.model_validate(item))
        except ValueError:
            continue
    return out


def check_rounds(folder: Path) -> list[tuple[int, list[Check]]]:
    """The candidate's check reports (check0.json, check1.json, …) in round order."""
    rounds = []
    for path in folder.glob("check*.json"):
        match = re.fullmatch(r"check(\d+)\.json", path.name)
        doc = read_json(path)
        if match and isinstance(doc, dict):
            rounds.append((int(match.group(1)), valid(Check, doc.get("checks"))))
    return sorted(rounds, key=lambda r: r[0])
