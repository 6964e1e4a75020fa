"""The loop's typed state, checkpointed by LangGraph after every node.

Run-level fields carry over from candidate to candidate; the rest describe the candidate in flight and
are reset by `plan`, which sets every `Required` one (the nodes after it read those by key). Values are
plain JSON (dicts, not pydantic objects) so that a checkpoint written by one version of disco is read by
the next.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any, Required, TypedDict


class LoopState(TypedDict, total=False):
    # ---- the run
    done: int
    """Candidates recorded so far."""
    best_id: str | None
    """The incumbent: the last candidate that the evidence rule made `first` or `best`."""
    best_fitness: float | None
    prompt_tokens: int
    completion_tokens: int
    usd: float
    # ---- the candidate in flight
    index: Required[int]
    candidate_id: Required[str]
    draft: Required[dict[str, Any] | None]
    """Draft fields (thought, name, code) of the current version of the candidate."""
    parent_ids: list[str]
    reflections: list[dict[str, Any]]
    """One entry per reflection round: the critique, or why it was skipped."""
    repairs: int
    checks: Required[dict[str, Any] | None]
    """The latest CheckReport (JSON)."""
    passed: bool
    fingerprint: list[float] | None
    """The passing check's behavioural fingerprint (CheckReport.fingerprint), for the record: kept in the
    checkpoint, so a resumed run records it though the target that computed it is gone."""
    attempts: list[dict[str, Any]]
    """Versions that failed their checks, each with its failing checks (what the repairs were fed)."""
    evaluation: Required[dict[str, Any] | None]
    status: str
    error: str | None
    replay_broken: bool
    """A replay found no recorded answer for a step: the candidate failed for the replay's sake, not its
    own, so its record stays out of memory."""
    cand_prompt_tokens: int
    cand_completion_tokens: int
    cand_usd: float
    job_id: str | None
    verdict: str | None
    """The evidence rule's verdict: first | best | promising | not_better (agent.evidence)."""
    evidence: dict[str, Any] | None
    """The last comparison with the incumbent (agent.evidence.Evidence, JSON)."""


def last_values(checkpoints: Path, thread_id: str) -> dict[str, Any]:
    """The loop's state as the last checkpoint of a run holds it (empty before the first)."""
    from langgraph.checkpoint.sqlite import SqliteSaver

    conn = sqlite3.connect(checkpoints, check_same_thread=False)
    try:
        tup = SqliteSaver(conn).get_tuple({"configurable": {"thread_id": thread_id}})
        return dict(tup.checkpoint["channel_values"]) if tup else {}
    finally:
        conn.close()
