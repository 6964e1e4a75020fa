"""Whether a run has used up a budget: a pure function of what it has used, so it is tested alone."""

from __future__ import annotations

from pydantic import BaseModel

from agent.config import BudgetConfig


class Usage(BaseModel):
    """What the run has used so far, as the budgets count it."""

    candidates: int | None = None
    """Candidates designed, the seed archive aside; None between the steps of one candidate (the candidate
    budget binds only before a new one starts)."""
    tokens: int = 0
    usd: float = 0.0
    elapsed_s: float = 0.0
    cpu_s: float = 0.0
    gpu_s: float = 0.0


def exceeded(budget: BudgetConfig, used: Usage) -> str | None:
    """The budget that is used up, in words (starting with its name), or None."""
    b = budget
    if used.candidates is not None and b.max_candidates is not None and used.candidates >= b.max_candidates:
        return f"candidates budget reached: {used.candidates} of {int(b.max_candidates)}"
    if b.max_tokens is not None and used.tokens >= b.max_tokens:
        return f"token budget reached: {used.tokens} of {int(b.max_tokens)}"
    if b.max_usd is not None and used.usd >= b.max_usd:
        return f"cost budget reached: ${used.usd:.4f} of ${b.max_usd:.2f}"
    if b.hours is not None and used.elapsed_s >= b.hours * 3600:
        return f"time budget reached: {used.elapsed_s / 3600:.2f} h of {b.hours} h"
    for what, seconds, limit in (("CPU", used.cpu_s, b.max_cpu_hours), ("GPU", used.gpu_s, b.max_gpu_hours)):
        if limit is not None and seconds >= limit * 3600:
            return f"{what} budget reached: {seconds / 3600:.3f} h of {limit} h"
    return None
