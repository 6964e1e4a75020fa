"""Open questions for the person, derived from the run's data: what the agent cannot decide alone.

Each question says what was seen, asks for a decision, and where one exists names the command that acts
on the answer, so that the morning's reading ends in a next step rather than in a shrug.
"""

from __future__ import annotations

from pydantic import BaseModel

from agent.report.collect import Candidate, EvidenceItem, ReportData

REPEATED = 2
"""A failure kind seen this often is a pattern worth steering away from, not an accident."""


class Question(BaseModel):
    topic: str
    text: str
    command: str | None = None
    """A command that acts on the answer, when there is one."""


def _more_seeds(data: ReportData, cand: Candidate) -> str | None:
    """The command that scores a DPO candidate against DPO on fresh seeds (docs/evidence.md); None for a
    target without such a bench."""
    if data.target != "dpo":
        return None
    file = f"candidate_{cand.index}.py"
    return (
        f"disco runs code {data.run_id} {cand.index} > {file} && "
        f"disco bench losses --losses {file} --seeds 16"
    )


def _label(cand: Candidate) -> str:
    return f"#{cand.index} {cand.name}".strip()


def _ci(x: object) -> str:
    value, low, high = (getattr(x, k) for k in ("value", "ci_low", "ci_high"))
    return f"{value:+.3f} [{low:+.3f}, {high:+.3f}]"


def open_questions(data: ReportData) -> list[Question]:
    run = data.run_id
    out: list[Question] = []
    if data.pending_approval and data.state in ("waiting", "stopped", "interrupted", "paused"):
        out.append(
            Question(
                topic="approval",
                text=f"The run waits for your decision on a GPU job ({data.pending_approval}): "
                "approve or deny it?",
                command=f"disco control {run} approve   (or: deny)",
            )
        )
    out += _state_questions(data)
    best = data.best()
    if best is None:
        out.append(
            Question(
                topic="no result",
                text="No candidate was scored in this run. Look at the failures below: is the target's "
                "interface or the model's setup the cause?",
            )
        )
    elif best.vs_baseline is not None:
        vs = best.vs_baseline
        if vs.ci_high < 0:
            out.append(
                Question(
                    topic="baseline",
                    text=f"Even the best candidate ({_label(best)}) is worse than the baseline: {_ci(vs)}. "
                    "Change the direction of the search (a hint), or stop here?",
                    command=f'disco control {run} hint "..."',
                )
            )
        elif vs.ci_low <= 0:
            out.append(
                Question(
                    topic="baseline",
                    text=f"The best candidate ({_label(best)}) is not distinguishable from the baseline: "
                    f"{_ci(vs)} includes 0. Evaluate it on more seeds before trusting it?",
                    command=_more_seeds(data, best),
                )
            )
    out += _promising(data)
    for failure in data.failures:
        if failure.count >= REPEATED and failure.kind != "vetoed":
            out.append(
                Question(
                    topic="failures",
                    text=f"`{failure.kind}` failures happened {failure.count} times "
                    f"({len(failure.candidates)} candidate(s)), e.g. {failure.example!r}. "
                    "Steer the designs away from it with a hint?",
                    command=f'disco control {run} hint "..."',
                )
            )
    for job in data.jobs:
        if job.state.startswith("failed"):
            out.append(
                Question(
                    topic="job",
                    text=f"The GPU job {job.job or ''} of {job.candidate or 'the run'} ended {job.state}"
                    + (f": {job.message}" if job.message else "")
                    + ". Retry it with other resources, or leave that candidate at its CPU score?",
                )
            )
    return out


def _state_questions(data: ReportData) -> list[Question]:
    run = data.run_id
    if data.state == "failed":
        text = f"The run failed: {data.reason}. Fix the cause and resume it?"
        return [Question(topic="run", text=text, command=f"disco resume {run}")]
    if data.state == "interrupted":
        text = "The run's process is gone without a final status (a crash, a kill or a reboot). Resume it?"
        return [Question(topic="run", text=text, command=f"disco resume {run}")]
    if data.state == "paused":
        text = f"The run is paused ({data.reason}). Resume it?"
        return [Question(topic="run", text=text, command=f"disco control {run} resume")]
    stops = data.budget_stops or ([data.reason] if "budget reached" in data.reason else [])
    if stops and data.state in ("finished", "stopped"):
        more = int((data.budget.get("max_candidates") or len(data.candidates)) * 2) or 10
        return [
            Question(
                topic="budget",
                text=f"The run stopped on its budget ({stops[-1]}). Is it worth more candidates?",
                command=f"disco control {run} budget candidates={more} && disco resume {run}",
            )
        ]
    return []


def _promising(data: ReportData) -> list[Question]:
    """Candidates whose last verdict is `promising`: better by a hair, not confirmed on the seeds run."""
    last: dict[str, EvidenceItem] = {}
    for item in data.evidence:
        last[item.candidate] = item
    out = []
    for cand in data.candidates:
        if cand.verdict != "promising":
            continue
        item = last.get(cand.id)
        detail = ""
        if item is not None:
            if item.p_better is not None:
                p = f"p_better = {item.p_better:.2f}"
            else:
                p = f"p of no better = {item.p_value:.2g}" if item.p_value is not None else "no p yet"
            detail = f" ({p} on seeds {item.seeds} against {item.incumbent or 'the incumbent'})"
        out.append(
            Question(
                topic="unconfirmed",
                text=f"Candidate {_label(cand)} looks better than the incumbent but is not "
                f"confirmed{detail}. Re-evaluate it on more seeds?",
                command=_more_seeds(data, cand),
            )
        )
    return out
