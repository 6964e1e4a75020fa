"""The failure taxonomy: every way a candidate fell short, by kind, read from checks, evaluations, jobs,
vetoes and model errors.

A check round, an evaluation, a job or an error event counts once per kind, so that a loss failing three
finiteness checks in one round is one NaN failure, not three. Kinds are named from check names and
reason texts only, so the taxonomy works for any target.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING

from agent.events import ErrorPayload, Event, JobPayload
from agent.report.files import Failure, Origin, check_rounds, read_json
from agent.runs import RunDir

if TYPE_CHECKING:
    from agent.report.collect import Candidate

_TEXT_KINDS = (
    ("nan", re.compile(r"\bnan\b|\binf\b|diverg|non-?finite|not finite", re.I)),
    ("oom", re.compile(r"\boom\b|out of memory|memory limit", re.I)),
    ("timeout", re.compile(r"time ?out|timed out|ran out of time", re.I)),
)


_SETUP = re.compile(
    r"needs an inner model|no model is configured|api key|endpoint|unreachable|connection (?:refused|error)"
    r"|cannot be trained in isolation|sandbox .*(?:unavailable|refused)|jail refused|not installed"
    r"|no space left",
    re.I,
)
"""Reasons that blame the configuration or the machine, not the candidate's code. (A check message may
quote a candidate's own output, so a candidate could mislabel its failure: the label is for the reader,
nothing scores by it.)"""


def origin(kind: str, message: str, source: str) -> Origin:
    """Who a failure is on: `setup` (configuration, machine, model endpoint), `person` (a veto), or the
    `candidate`. `source`: check | evaluation | job | event | veto."""
    if source == "veto":
        return "person"
    if source == "event":
        return "setup"  # the run's own errors: a model endpoint, an internal error
    return "setup" if _SETUP.search(message) else "candidate"


def text_kind(text: str, default: str) -> str:
    """The kind a reason text names (NaN, OOM, timeout), else `default`."""
    for kind, pattern in _TEXT_KINDS:
        if pattern.search(text):
            return kind
    return default


def check_kind(name: str, message: str) -> str:
    """The kind of one failed check, by its name (and for the sandbox, by what stopped it)."""
    if name in ("policy", "novelty"):
        return name
    if name == "sandbox":
        return text_kind(message, "sandbox")
    if name.startswith("finite") or "nan" in name:
        return "nan"
    if name in ("time_budget", "timeout"):
        return "timeout"
    return f"check: {name}"


def failures(run: RunDir, candidates: list[Candidate], events: Iterable[Event]) -> list[Failure]:
    seen: dict[tuple[str, str], Failure] = {}

    def add(kind: str, cid: str | None, message: str, source: str) -> None:
        who = origin(kind, message, source)
        entry = seen.setdefault(
            (kind, who),
            Failure(kind=kind, count=0, candidates=[], example=message[:240], origin=who),
        )
        entry.count += 1
        if cid and cid not in entry.candidates:
            entry.candidates.append(cid)

    for cand in candidates:
        folder = run.root / "candidates" / cand.id
        for _, checks in check_rounds(folder):
            kinds: dict[str, str] = {}
            for check in checks:
                if not check.passed and check.level == "error":
                    kinds.setdefault(check_kind(check.name, check.message), f"{check.name}: {check.message}")
            for kind, message in kinds.items():
                add(kind, cand.id, message, "check")
        evaluation = read_json(folder / "evaluation.json") or {}
        if evaluation.get("status") == "failed":
            reason = str(evaluation.get("reason") or "evaluation failed")
            add(text_kind(reason, "evaluation"), cand.id, reason, "evaluation")
        if cand.status == "rejected" and (cand.error or "").startswith("vetoed"):
            add("vetoed", cand.id, cand.error or "", "veto")
    for event in events:
        try:
            data = event.data
        except ValueError:  # a line that does not fit its kind: skipped, as every reader does
            continue
        if isinstance(data, JobPayload) and data.state.startswith("failed"):
            kind = data.state.partition(":")[2] or text_kind(data.message, "crash")
            add(kind, event.candidate, data.message or data.state, "job")
        elif isinstance(data, ErrorPayload):
            kind = data.error_kind or "internal error"
            if data.endpoint:  # the runner's: the endpoint slow, down or rate-limited
                kind = f"model endpoint {data.endpoint}"
            elif data.step:
                kind = f"model {kind}"
            add(kind, event.candidate, data.message, "event")
    order = {"candidate": 0, "person": 1, "setup": 2}
    return sorted(seen.values(), key=lambda f: (order[f.origin], -f.count, f.kind))
