"""A candidate's difference to the baseline on seeds that chose nothing: the score every surface shows.

The evidence race trains a challenger on fresh seeds, and DPO (the baseline) on the same seeds (its runs are
cached in the data dir: a seed bank that grows as candidates need it). Each seed file keeps both item
scores, so the difference is paired seed by seed, with the interval from the measured σ (or the candidate's
own larger spread) and n. "Better than the baseline" is decided over the whole run by Benjamini–Hochberg,
never per candidate. Pure statistics and files: no target is imported (the report reads these).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel

if TYPE_CHECKING:
    from agent.runs import RunDir
    from targets.racing import RaceConfig

# targets.racing (scipy) is imported where it is used: `disco runs list` reads a score, nothing more.


FRESH = "vs_baseline.json"
"""A candidate's file with its difference to the baseline on seeds that chose nothing (`Fresh`)."""
CONFIRM = "seeds/confirm.json"
"""A claimed `best`'s confirmation seeds (agent.confirm): once it has scores on them, it is shown from those
alone, since the seeds that crowned it overstate it."""


class Fresh(BaseModel):
    """Candidate − baseline (DPO) on the candidate's seeds that chose nothing: what every surface shows as
    its score, with the interval from the measured σ (or its own larger spread) and n."""

    diff: float
    ci_low: float
    ci_high: float
    n_seeds: int
    seeds: list[int]
    p_value: float
    """One-sided p of "no better than the baseline" (Benjamini–Hochberg over the run decides `better`)."""
    confidence: float
    basis: Literal["fresh", "confirmation"] = "fresh"
    """`confirmation`: from the seeds a claimed `best` was trained on after its claim, and from those
    alone; `fresh`: from every seed that chose nothing (the race's included)."""


def fresh_vs_baseline(run: RunDir, cid: str, rules: RaceConfig) -> Fresh | None:
    """From the candidate's evaluation seeds that chose nothing (a target that selects on its default seeds,
    as DPO's β, names them `details.selection_seeds`) and its extra-seed files (seeds/N.json), each with the
    baseline's item scores on the same seed; None when it has none."""
    evaluation = run.read_candidate_json(cid, "evaluation.json") or {}
    chose = {str(s) for s in (evaluation.get("details") or {}).get("selection_seeds") or []}
    theirs = evaluation.get("baseline_item_scores") or {}
    mine = {
        k: v for k, v in (evaluation.get("item_scores") or {}).items() if k not in chose and theirs.get(k)
    }
    base = {k: theirs[k] for k in mine}
    folder = run.root / "candidates" / cid / "seeds"
    for path in sorted(folder.glob("[0-9]*.json")):
        saved = run.read_candidate_json(cid, f"seeds/{path.name}") or {}
        if saved.get("scores") and saved.get("baseline_scores"):
            mine[str(saved["seed"])] = saved["scores"]
            base[str(saved["seed"])] = saved["baseline_scores"]
    confirm = {str(s) for s in (run.read_candidate_json(cid, CONFIRM) or {}).get("seeds") or []}
    basis: Literal["fresh", "confirmation"] = "fresh"
    if confirm & set(mine):  # a claimed best: the seeds that crowned it are left out
        mine = {k: v for k, v in mine.items() if k in confirm}
        base = {k: v for k, v in base.items() if k in confirm}
        basis = "confirmation"
    from targets.racing import seed_differences, shown

    diffs = seed_differences(mine, base)
    if not diffs:
        return None
    try:
        look = shown(diffs, rules)
    except ValueError:  # no σ measured and too few seeds for their own spread
        return None
    return Fresh(
        diff=look.diff,
        ci_low=look.ci_low or 0.0,
        ci_high=look.ci_high or 0.0,
        n_seeds=look.n,
        seeds=sorted(int(k) for k in mine if k in base)[: look.n],
        p_value=look.p_value or 1.0,
        confidence=rules.confidence,
        basis=basis,
    )


def baseline_verdicts(fresh: Mapping[str, Fresh], q: float) -> dict[str, str]:
    """Per candidate, its verdict against the baseline over the whole run: `better` by Benjamini–Hochberg
    at FDR q over every candidate with a fresh difference, `worse` when its interval lies below 0,
    `not_separated` otherwise."""
    from targets.racing import benjamini_hochberg

    winners = benjamini_hochberg({cid: f.p_value for cid, f in fresh.items()}, q)
    return {
        cid: "better" if cid in winners else ("worse" if f.ci_high < 0 else "not_separated")
        for cid, f in fresh.items()
    }


def read_fresh(run: RunDir, cid: str | None) -> Fresh | None:
    """A candidate's saved difference to the baseline (`vs_baseline.json`), when it has one."""
    saved = run.read_candidate_json(cid, FRESH) if cid else None
    return Fresh.model_validate(saved) if saved else None


def fresh_text(fresh: Fresh, compact: bool = False) -> str:
    """The difference as the run lists show it: d̄ [low, high] and n (`compact`: as the TUI's columns)."""
    if compact:
        return f"{fresh.diff:+.2f}[{fresh.ci_low:+.2f},{fresh.ci_high:+.2f}] n{fresh.n_seeds}"
    return f"{fresh.diff:+.3f} [{fresh.ci_low:+.3f}, {fresh.ci_high:+.3f}] n{fresh.n_seeds}"
