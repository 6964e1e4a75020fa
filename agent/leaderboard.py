"""What a run has produced, read from its directory: the candidates with status and fitness."""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel

from agent.fresh import Fresh, baseline_verdicts, read_fresh
from agent.runs import RunDir
from targets.racing import shrunk_differences


class Row(BaseModel):
    id: str
    index: int
    name: str
    status: str
    fitness: float | None = None
    """The evaluation's fitness, on the seeds that chose its β (in-sample: never the score ranked by)."""
    ci_low: float | None = None
    ci_high: float | None = None
    vs_baseline: float | None = None
    """Candidate − baseline on seeds that chose nothing (agent.evidence.Fresh): the score shown and ranked."""
    vs_low: float | None = None
    vs_high: float | None = None
    vs_n: int | None = None
    """Seeds behind that difference."""
    vs_p: float | None = None
    vs_basis: Literal["fresh", "confirmation"] | None = None
    """`confirmation` when the difference comes from the seeds it was confirmed on alone."""
    vs_verdict: str | None = None
    """Against the baseline over the run: better (Benjamini–Hochberg) | worse | not_separated."""
    repairs: int = 0
    error: str | None = None
    parents: list[str] = []
    verdict: str | None = None
    """The evidence rule's verdict (first | best | promising | not_better; docs/evidence.md)."""
    inner_calls: int | None = None
    """What its evaluation cost in a model it runs on (the agent-system target's inner model): calls,
    tokens and $ where priced; None for a target whose candidates call no model."""
    inner_tokens: int | None = None
    inner_usd: float | None = None
    cot_sc_chains: int | None = None
    """The standing baseline of an agent system: CoT-SC with the chains its tokens per item pay for."""
    cot_sc_diff: float | None = None
    """Candidate − that CoT-SC, percentage points, paired by item, with its 95% bootstrap interval."""
    cot_sc_low: float | None = None
    cot_sc_high: float | None = None
    cot_sc_p: float | None = None
    cot_sc_within_cost: bool | None = None
    """It spent no more tokens than that CoT-SC: "better" needs it."""
    cot_sc_verdict: str | None = None
    """better | worse (separated by Benjamini–Hochberg at FDR q over the run's compared candidates; better
    only at no more cost) | better_but_costlier | not_separated."""


def candidate_rows(run: RunDir, q: float = 0.1) -> list[Row]:
    """Every recorded candidate of the run, in the order they were designed; `q`: the FDR of 'better than
    the baseline' over the run."""
    rows = []
    for path in sorted((run.root / "candidates").glob("*/record.json")):
        try:
            rec: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        fit = rec.get("fitness") or {}
        vs = read_fresh(run, rec["id"])
        evaluation = run.read_candidate_json(rec["id"], "evaluation.json") or {}
        cost = inner_cost(evaluation) | cot_sc_comparison(evaluation)
        rows.append(
            Row(
                id=rec["id"],
                index=rec.get("generation") or 0,
                name=rec.get("name", ""),
                status=rec["status"],
                fitness=fit.get("value"),
                ci_low=fit.get("ci_low"),
                ci_high=fit.get("ci_high"),
                vs_baseline=vs.diff if vs else None,
                vs_low=vs.ci_low if vs else None,
                vs_high=vs.ci_high if vs else None,
                vs_n=vs.n_seeds if vs else None,
                vs_p=vs.p_value if vs else None,
                vs_basis=vs.basis if vs else None,
                repairs=rec.get("repair_count", 0),
                error=rec.get("error"),
                parents=rec.get("parent_ids", []),
                verdict=rec.get("verdict"),
                **cost,
            )
        )
    fresh_rows = {r.id: r for r in rows if r.vs_baseline is not None}
    verdicts = baseline_verdicts(
        {
            cid: Fresh(diff=r.vs_baseline or 0.0, ci_low=r.vs_low or 0.0, ci_high=r.vs_high or 0.0,
                       n_seeds=r.vs_n or 0, seeds=[], p_value=1.0 if r.vs_p is None else r.vs_p,
                       confidence=0.95, basis=r.vs_basis or "fresh")
            for cid, r in fresh_rows.items()
        },
        q,
    )  # fmt: skip
    for cid, verdict in verdicts.items():
        fresh_rows[cid].vs_verdict = verdict
    _cot_sc_verdicts(rows, q)
    return sorted(rows, key=lambda r: r.index)


def cot_sc_comparison(evaluation: dict[str, Any]) -> dict[str, Any]:
    """An agent system against CoT-SC at matched token cost, as its evaluation (evaluation.json) kept it
    (the agent-system target's CoT-SC comparison); empty for a candidate without one."""
    cmp = (evaluation.get("details") or {}).get("cot_sc") or {}
    if "diff" not in cmp:
        return {}
    return {
        "cot_sc_chains": cmp["chains"],
        "cot_sc_diff": cmp["diff"],
        "cot_sc_low": cmp["ci_low"],
        "cot_sc_high": cmp["ci_high"],
        "cot_sc_p": cmp["p_value"],
        "cot_sc_within_cost": cmp["within_cost"],
    }


def _cot_sc_verdicts(rows: list[Row], q: float) -> None:
    """Every compared candidate is tested (none selected first), so Benjamini–Hochberg over them holds the
    run's FDR at q; "better" also needs no more tokens than the CoT-SC it beat."""
    from targets.racing import benjamini_hochberg

    p_values = {r.id: r.cot_sc_p for r in rows if r.cot_sc_p is not None}
    separated = benjamini_hochberg(p_values, q)
    for r in (r for r in rows if r.id in p_values):
        if r.id not in separated:
            r.cot_sc_verdict = "not_separated"
        elif (r.cot_sc_diff or 0.0) < 0:
            r.cot_sc_verdict = "worse"
        else:
            r.cot_sc_verdict = "better" if r.cot_sc_within_cost else "better_but_costlier"


def inner_cost(evaluation: dict[str, Any]) -> dict[str, Any]:
    """A candidate's evaluation cost in its inner model, from the metrics its evaluation (evaluation.json)
    kept (empty when it called none): an agent system's accuracy means little without what it spent."""
    metrics = evaluation.get("metrics") or {}
    if "model_calls" not in metrics:
        return {}
    tokens = int(metrics.get("prompt_tokens", 0) + metrics.get("completion_tokens", 0))
    usd = metrics.get("usd") or None
    return {"inner_calls": int(metrics["model_calls"]), "inner_tokens": tokens, "inner_usd": usd}


def shrunk_scores(rows: list[Row]) -> dict[str, float]:
    """The rows' fresh differences, shrunk (agent.evidence.shrunk_differences): what the ranking uses."""
    return shrunk_differences(
        {
            r.id: (r.vs_baseline, r.vs_low, r.vs_high)
            for r in rows
            if r.vs_baseline is not None and r.vs_low is not None and r.vs_high is not None
        }
    )


def incumbent(rows: list[Row]) -> Row | None:
    """The run's best by evidence: the last candidate (in design order) that the rule made first or best."""
    made = [r for r in sorted(rows, key=lambda r: r.index) if r.verdict in ("first", "best")]
    return made[-1] if made else None


def ranked(rows: list[Row]) -> list[Row]:
    """The incumbent first (a higher point fitness without the evidence does not displace it), then the
    candidates with a fresh-seed difference to the baseline by its shrunk estimate, then the other evaluated
    ones by fitness, then the rest in design order."""
    top = incumbent(rows)
    rest = [r for r in rows if top is None or r.id != top.id]
    shrunk = shrunk_scores(rest)
    fresh = sorted((r for r in rest if r.id in shrunk), key=lambda r: -shrunk[r.id])
    rest = [r for r in rest if r.id not in shrunk]
    scored = sorted((r for r in rest if r.fitness is not None), key=lambda r: -(r.fitness or 0.0))
    return ([top] if top else []) + fresh + scored + [r for r in rest if r.fitness is None]
