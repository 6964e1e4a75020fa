"""Everything the report shows, read from a run directory alone: no target is imported, nothing is re-run.

The report must work for any target and for runs written by older versions of disco, so every optional
piece (a frontier, a baseline frontier, evidence verdicts, CPU and GPU seconds) degrades to "absent".
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from agent.config import EvidenceConfig
from agent.events import (
    BudgetPayload,
    CandidatePayload,
    EvaluationPayload,
    Event,
    EvidencePayload,
    HumanPayload,
    of_kind,
    read_events,
)
from agent.fresh import FRESH, Fresh, baseline_verdicts
from agent.report.files import Check, Failure, check_rounds, read_json, valid
from agent.report.taxonomy import failures
from agent.run_state import RunState
from agent.runs import RunDir
from targets.base import Interval
from targets.racing import shrunk_differences


class Point(BaseModel):
    """One point of a reward–KL frontier (`details.frontier` of an evaluation), whatever else it carries."""

    beta: float | None = None
    reward: float | None = None
    kl: float | None = None
    objective: float | None = None


class EvidenceItem(EvidencePayload):
    """One paired comparison of a candidate with the incumbent: an `evidence` event's payload (p_value:
    the race's one-sided p of "no better", adjusted over the looks), with where and when it was logged."""

    seq: int
    time: datetime
    candidate: str

    @property
    def p_text(self) -> str:
        """What the table's p column shows: the bootstrap's p(better), or the race's p of no better."""
        if self.p_better is not None:
            return f"{self.p_better:.2f}"
        return f"p={self.p_value:.2g}" if self.p_value is not None else ""


class Candidate(BaseModel):
    id: str
    index: int
    name: str
    status: str
    thought: str = ""
    code: str = ""
    error: str | None = None
    fitness: Interval | None = None
    """On the seeds that chose its β (in-sample): shown as the screen's, never ranked by."""
    vs_baseline: Interval | None = None
    """Candidate − baseline on seeds that chose nothing (agent.evidence.Fresh), with `vs_n` seeds."""
    vs_n: int | None = None
    vs_p: float | None = None
    vs_verdict: str | None = None
    """Against the baseline over the run: better (Benjamini–Hochberg) | worse | not_separated."""
    vs_basis: Literal["fresh", "confirmation"] | None = None
    """`confirmation` when a claimed candidate's difference comes from the seeds it was confirmed on alone."""
    verdict: str | None = None
    """The evidence rule's last word on it (first | best | promising | not_better), when the run has one."""
    repairs: int = 0
    parents: list[str] = Field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    usd: float | None = None
    frontier: list[Point] = Field(default_factory=list)
    checks: list[Check] = Field(default_factory=list)
    """The checks of its last check round."""


class Job(BaseModel):
    candidate: str | None
    job: str | None
    state: str
    message: str = ""


class Cost(BaseModel):
    elapsed_s: float
    setup_s: float = 0.0
    """What the run paid once (the task, the workers, the baseline's runs: `targets.progress.one_time`)."""
    per_candidate_s: float | None = None
    """The rest of the run time, per recorded candidate."""
    prompt_tokens: int
    completion_tokens: int
    usd: float
    cpu_h: float
    gpu_h: float
    model_calls: int


class ReportData(BaseModel):
    run_id: str
    target: str
    model: str
    replay_of: str | None = None
    created_at: datetime
    state: str
    reason: str
    budget: dict[str, Any] = Field(default_factory=dict)
    cost: Cost
    candidates: list[Candidate]
    """In design order."""
    best_id: str | None = None
    baseline: str = "baseline"
    """What `vs_baseline` is paired against (the target's declaration, carried by evaluation events)."""
    baseline_frontier: list[Point] = Field(default_factory=list)
    failures: list[Failure] = Field(default_factory=list)
    evidence: list[EvidenceItem] = Field(default_factory=list)
    jobs: list[Job] = Field(default_factory=list)
    hints: list[str] = Field(default_factory=list)
    human: list[str] = Field(default_factory=list)
    """What the person did, in words, in order."""
    pending_approval: str | None = None
    """What the run asks the person to approve or deny, when it waits (or stopped waiting) for an answer."""
    budget_stops: list[str] = Field(default_factory=list)

    def by_id(self) -> dict[str, Candidate]:
        return {c.id: c for c in self.candidates}

    def ranked(self) -> list[Candidate]:
        """Candidates with a fresh-seed difference to the baseline by its shrunk estimate, then the other
        scored ones by fitness, then the rest in design order (as `disco runs show`)."""
        shrunk = shrunk_differences(
            {c.id: (vs.value, vs.ci_low, vs.ci_high) for c in self.candidates if (vs := c.vs_baseline)}
        )  # fmt: skip
        fresh = sorted((c for c in self.candidates if c.id in shrunk), key=lambda c: -shrunk[c.id])
        rest = [c for c in self.candidates if c.id not in shrunk]
        scored = sorted((c for c in rest if c.fitness), key=lambda c: -c.fitness.value if c.fitness else 0.0)
        return fresh + scored + [c for c in rest if c.fitness is None]

    def best(self) -> Candidate | None:
        cands = self.by_id()
        if self.best_id in cands:
            return cands[self.best_id]
        ranked = self.ranked()
        return ranked[0] if ranked and ranked[0].fitness else None

    def status_counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for c in self.candidates:
            out[c.status] = out.get(c.status, 0) + 1
        return out


def _interval(raw: Any) -> Interval | None:
    try:
        return Interval.model_validate(raw) if raw else None
    except ValueError:
        return None


def _points(raw: Any) -> list[Point]:
    return valid(Point, raw)


def _candidate(folder: Path, rec: dict[str, Any]) -> Candidate:
    evaluation = read_json(folder / "evaluation.json") or {}
    try:
        fresh = Fresh.model_validate(read_json(folder / FRESH))
    except ValueError:
        fresh = None
    details = evaluation.get("details") or {}
    cost = rec.get("cost") or {}
    rounds = check_rounds(folder)
    return Candidate(
        id=rec["id"],
        index=rec.get("generation") or 0,
        name=rec.get("name") or "",
        status=rec.get("status") or "proposed",
        thought=rec.get("thought") or "",
        code=rec.get("code") or "",
        error=rec.get("error"),
        fitness=_interval(rec.get("fitness")),
        vs_baseline=Interval(value=fresh.diff, ci_low=fresh.ci_low, ci_high=fresh.ci_high) if fresh else None,
        vs_n=fresh.n_seeds if fresh else None,
        vs_p=fresh.p_value if fresh else None,
        vs_basis=fresh.basis if fresh else None,
        verdict=rec.get("verdict"),
        repairs=rec.get("repair_count") or 0,
        parents=list(rec.get("parent_ids") or []),
        prompt_tokens=cost.get("prompt_tokens") or 0,
        completion_tokens=cost.get("completion_tokens") or 0,
        usd=cost.get("usd"),
        frontier=_points(details.get("frontier")),
        checks=rounds[-1][1] if rounds else [],
    )


def collect(run: RunDir) -> ReportData:
    """Read the run's metadata, status, events and candidate folders into one ReportData."""
    meta, status = run.meta(), run.status()
    events = list(read_events(run.events_path))
    state = RunState.of(events)
    evidence = [_evidence(e, d) for e, d in of_kind(events, EvidencePayload) if e.candidate]
    # The verdict: the record's, else the candidate event's, else the latest evidence event's.
    verdicts = {item.candidate: item.verdict for item in evidence}
    verdicts |= {e.candidate: d.verdict for e, d in of_kind(events, CandidatePayload) if d.verdict}
    candidates, baseline = [], []
    for path in sorted((run.root / "candidates").glob("*/record.json")):
        rec = read_json(path)
        if not isinstance(rec, dict) or "id" not in rec:
            continue
        cand = _candidate(path.parent, rec)
        cand.verdict = cand.verdict or verdicts.get(cand.id)
        candidates.append(cand)
        evaluation = read_json(path.parent / "evaluation.json") or {}
        baseline = baseline or _points((evaluation.get("details") or {}).get("baseline_frontier"))
    candidates.sort(key=lambda c: (c.index, c.id))
    setup_s = state.setup_s
    with_fresh = {c.id: c for c in candidates if c.vs_baseline is not None}
    fresh_items = {
        cid: Fresh(
            diff=c.vs_baseline.value,
            ci_low=c.vs_baseline.ci_low,
            ci_high=c.vs_baseline.ci_high,
            n_seeds=c.vs_n or 0,
            seeds=[],
            p_value=c.vs_p if c.vs_p is not None else 1.0,
            confidence=0.95,
            basis=c.vs_basis or "fresh",
        )
        for cid, c in with_fresh.items()
        if c.vs_baseline is not None
    }
    for cid, verdict in baseline_verdicts(fresh_items, EvidenceConfig().q).items():
        with_fresh[cid].vs_verdict = verdict
    return ReportData(
        run_id=run.run_id,
        target=meta.target,
        model=meta.model,
        replay_of=meta.replay_of,
        created_at=meta.created_at,
        state=run.display_state(status),
        reason=status.reason,
        budget=dict(meta.config.get("budget") or {}),
        cost=Cost(
            elapsed_s=status.elapsed_s,
            prompt_tokens=status.prompt_tokens,
            completion_tokens=status.completion_tokens,
            usd=status.usd,
            cpu_h=status.cpu_s / 3600,
            gpu_h=status.gpu_s / 3600,
            model_calls=state.model_calls,
            setup_s=setup_s,
            per_candidate_s=(status.elapsed_s - setup_s) / len(candidates) if candidates else None,
        ),
        candidates=candidates,
        best_id=status.best_id,
        baseline=next((d.baseline for _, d in of_kind(events, EvaluationPayload) if d.baseline), "baseline"),
        baseline_frontier=baseline,
        failures=failures(run, candidates, events),
        evidence=evidence,
        jobs=_jobs(state),
        hints=[c.arg for c in state.commands if c.action == "hint"],
        human=[d.message for _, d in of_kind(events, HumanPayload) if d.message],
        pending_approval=None if state.question is None else json.dumps(state.question, default=str),
        budget_stops=[d.reason for _, d in of_kind(events, BudgetPayload)],
    )


def _jobs(state: RunState) -> list[Job]:
    """Each GPU job once, in its latest state (a job logs an event per state change)."""
    latest: dict[str, Job] = {}
    for e, d in state.job_news:
        key = d.job or f"{e.candidate}:{e.seq}"
        latest[key] = Job(candidate=e.candidate, job=d.job, state=d.state, message=d.message)
    return list(latest.values())


def _evidence(event: Event, p: EvidencePayload) -> EvidenceItem:
    return EvidenceItem(seq=event.seq, time=event.time, candidate=event.candidate or "", **dict(p))
