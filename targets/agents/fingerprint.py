"""The behavioural fingerprint of an agent: how it used the model on the check's probe tasks — how many
calls, with which roles and output fields (the system prompts), at which temperatures. Two agents that
call the model alike are the same design whatever their code looks like; changing the number of samples,
rounds, roles or temperatures changes it. Fixed length (memory keeps one vector space per target)."""

from __future__ import annotations

import hashlib
import math

LENGTH = 7
DEFAULT_TEMPERATURE = 0.5


def call_pattern(log: list[tuple[str, float | None, str]], task_ids: list[str]) -> list[float]:
    per_task: dict[str, list[tuple[float | None, str]]] = {t: [] for t in task_ids}
    for task, temperature, system in log:
        per_task.setdefault(task, []).append((temperature, system))
    counts = [len(calls) for calls in per_task.values()] or [0]
    temps = [DEFAULT_TEMPERATURE if t is None else t for calls in per_task.values() for t, _ in calls] or [
        0.0
    ]
    systems = sorted({s for calls in per_task.values() for _, s in calls})
    digest = hashlib.sha256("\0".join(systems).encode()).digest()
    # Two independent hash coordinates in [0, 10): another set of prompts is far (memory's similarity is
    # exp(-RMS difference); a chance near-collision of both is ~1e-5).
    h1, h2 = (int.from_bytes(digest[i : i + 4], "big") / 2**32 * 10.0 for i in (0, 4))
    return [
        math.asinh(sum(counts) / len(counts)),
        math.asinh(max(counts)),
        math.asinh(len(systems)),
        sum(temps) / len(temps),
        max(temps),
        h1,
        h2,
    ]
