"""What a run has produced, read from its directory: the candidates with status and fitness."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel

from agent.runs import RunDir


class Row(BaseModel):
    id: str
    index: int
    name: str
    status: str
    fitness: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    vs_baseline: float | None = None
    vs_low: float | None = None
    vs_high: float | None = None
    repairs: int = 0
    error: str | None = None
    parents: list[str] = []
    verdict: str | None = None
    """The evidence rule's verdict (first | best | promising | not_better; docs/evidence.md)."""


def candidate_rows(run: RunDir) -> list[Row]:
    """Every recorded candidate of the run, in the order they were designed."""
    rows = []
    for path in sorted((run.root / "candidates").glob("*/record.json")):
        try:
            rec: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        evaluation = run.read_candidate_json(rec["id"], "evaluation.json") or {}
        fit = rec.get("fitness") or {}
        vs = evaluation.get("vs_baseline") or {}
        rows.append(
            Row(
                id=rec["id"],
                index=rec.get("generation") or 0,
                name=rec.get("name", ""),
                status=rec["status"],
                fitness=fit.get("value"),
                ci_low=fit.get("ci_low"),
                ci_high=fit.get("ci_high"),
                vs_baseline=vs.get("value"),
                vs_low=vs.get("ci_low"),
                vs_high=vs.get("ci_high"),
                repairs=rec.get("repair_count", 0),
                error=rec.get("error"),
                parents=rec.get("parent_ids", []),
                verdict=rec.get("verdict"),
            )
        )
    return sorted(rows, key=lambda r: r.index)


def incumbent(rows: list[Row]) -> Row | None:
    """The run's best by evidence: the last candidate (in design order) that the rule made first or best."""
    made = [r for r in sorted(rows, key=lambda r: r.index) if r.verdict in ("first", "best")]
    return made[-1] if made else None


def ranked(rows: list[Row]) -> list[Row]:
    """The incumbent first (a higher point fitness without the evidence does not displace it), then the
    other evaluated candidates by fitness, then the rest in design order."""
    top = incumbent(rows)
    rest = [r for r in rows if top is None or r.id != top.id]
    scored = sorted((r for r in rest if r.fitness is not None), key=lambda r: -(r.fitness or 0.0))
    return ([top] if top else []) + scored + [r for r in rest if r.fitness is None]
