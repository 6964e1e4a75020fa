"""From sandbox runs to an Evaluation: per-item scores (percent) per seed, the pooled bootstrap fitness,
the candidate's model usage, and a failure, with its first error, when the agent failed on every task."""

from __future__ import annotations

from typing import Any

from targets.agents.benchmarks import Benchmark, Item
from targets.agents.runner import RunOutcome
from targets.agents.scoring import bootstrap
from targets.base import Evaluation, Interval

ANSWER_CHARS = 300


def _first_error(outcomes: dict[int, RunOutcome]) -> str:
    for out in outcomes.values():
        if out.failure:
            return out.failure
        for task in out.tasks:
            if task.error:
                return f"task {task.id}: {task.error}"
    return "no task result came back"


def summarise(
    bench: Benchmark, items: list[Item], outcomes: dict[int, RunOutcome], n_boot: int, seconds: float
) -> Evaluation:
    item_scores: dict[str, list[float]] = {}
    runs: dict[str, Any] = {}
    answered = 0
    usage = {"calls": 0, "errors": 0, "refused": 0, "prompt_tokens": 0, "completion_tokens": 0, "usd": 0.0,
             "estimated_calls": 0}  # fmt: skip
    for seed, out in outcomes.items():
        for key in usage:
            usage[key] += getattr(out.usage, key)
        by_id = {t.id: t for t in out.tasks}
        scores, rows = [], []
        for item in items:
            task = by_id.get(item.id)
            ok = task is not None and not task.error
            answered += ok
            score = 100.0 * bench.score(task.answer, item) if ok and task is not None else 0.0
            scores.append(score)
            rows.append(
                {
                    "id": item.id,
                    "score": score,
                    "answer": None if task is None else str(task.answer)[:ANSWER_CHARS],
                    "error": "no result" if task is None else task.error,
                    "seconds": 0.0 if task is None else task.seconds,
                }
            )
        item_scores[str(seed)] = scores
        runs[str(seed)] = {"failure": out.failure, "tasks": rows, "sandbox_seconds": out.seconds}
    metrics = {
        "items": float(len(items)),
        "tasks_failed": float(len(items) * len(outcomes) - answered),
        "model_calls": float(usage["calls"]),
        "model_errors": float(usage["errors"]),
        "model_refused": float(usage["refused"]),
        "prompt_tokens": float(usage["prompt_tokens"]),
        "completion_tokens": float(usage["completion_tokens"]),
        "usd": float(usage["usd"]),
        "model_calls_estimated": float(usage["estimated_calls"]),
    }
    details = {"benchmark": bench.name, "seeds": list(outcomes), "runs": runs}
    blocked = [out.blocked_by() for out in outcomes.values()]
    if blocked and all(blocked):
        return Evaluation(
            status="failed",
            reason=blocked[0],
            blocked=blocked[0],
            metrics=metrics,
            seconds=seconds,
            details=details,
        )
    if answered == 0:
        reason = f"the agent failed on every task: {_first_error(outcomes)}"
        last = next((o.usage.last_error for o in outcomes.values() if o.usage.last_error), "")
        if usage["calls"] == 0 and last:
            reason += f" (the inner model answered no call: {last})"
        return Evaluation(
            status="failed", reason=reason[:1500], metrics=metrics, seconds=seconds, details=details
        )
    pooled = [s for scores in item_scores.values() for s in scores]
    boot = bootstrap(pooled, n_boot=n_boot, seed=0)
    metrics["score_mean"] = boot.mean
    return Evaluation(
        status="ok",
        fitness=Interval(value=boot.value, ci_low=boot.ci_low, ci_high=boot.ci_high),
        metrics=metrics,
        seconds=seconds,
        details=details,
        item_scores=item_scores,
    )
