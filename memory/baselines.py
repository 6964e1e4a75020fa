"""A target's published methods in memory, marked `baseline`: the novelty gate rejects a rediscovery of
DPO, SLiC, IPO, … as a duplicate of a known loss, and the prompts show them as known, not as discoveries.

Each baseline is one record (`baseline-<target>-<name>`, run `baseline`, status `baseline`) with its
behavioural fingerprint when the target ships one. Seeding is idempotent: a baseline already in memory
is left as it is, so a run pays for it once per data dir.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from memory.records import BASELINE_RUN, CandidateRecord
from memory.store import MemoryStore

CHUNK = 4
"""Records per write: 8 texts an embedding call, the size the query-speed path (numpy MiniLM) takes."""


class Baseline(Protocol):
    name: str
    thought: str
    code: str
    fingerprint: list[float] | None


def baseline_id(target: str, name: str) -> str:
    return f"{BASELINE_RUN}-{target}-{name}"


def seed_baselines(store: MemoryStore, target: str, baselines: Sequence[Baseline]) -> int:
    """Put the target's baselines that memory lacks into it; returns how many were added."""
    ids = [baseline_id(target, b.name) for b in baselines]
    have = {r.id for r in store.get_many(ids)}
    todo = [(i, b) for i, b in zip(ids, baselines, strict=True) if i not in have]
    for start in range(0, len(todo), CHUNK):
        part = todo[start : start + CHUNK]
        records = [
            CandidateRecord(
                id=i, run_id=BASELINE_RUN, target=target, name=b.name, thought=b.thought, code=b.code,
                status="baseline",
            )
            for i, b in part
        ]  # fmt: skip
        store.record_many(records, [b.fingerprint for _, b in part])
    return len(todo)
