"""A candidate's difference to the baseline on seeds that chose nothing: the score every surface shows.

The evidence race trains a challenger on fresh seeds, and DPO (the baseline) on the same seeds (its runs are
cached in the data dir: a seed bank that grows as candidates need it). Each seed file keeps both item
scores, so the difference is paired seed by seed, with the interval from the measured σ (or the candidate's
own larger spread) and n. "Better than the baseline" is decided over the whole run by Benjamini–Hochberg,
never per candidate, and stands only on a candidate's confirmation seeds. Pure statistics and files: no
target is imported (the report reads these).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel

if TYPE_CHECKING:
    from agent.runs import RunDir
    from targets.racing import Look, RaceConfig

# targets.racing (scipy) is imported where it is used: `disco runs list` reads a score, nothing more.


FRESH = "vs_baseline.json"
"""A candidate's file with its difference to the baseline on seeds that chose nothing (`Fresh`)."""
CONFIRM = "seeds/confirm.json"
"""A claimed candidate's confirmation seeds (agent.confirm: a race's `best`, or one Benjamini–Hochberg calls
better than the baseline): once it has scores on them, it is shown from those alone, since the seeds that
selected it overstate it."""


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
    """`confirmation`: from the seeds a claimed candidate was trained on after its claim, and from those
    alone; `fresh`: from every seed that chose nothing (the race's included)."""
    selection_p: float | None = None
    """One-sided p on the seeds it raced on alone (its confirmation seeds left out): what selects a
    candidate for confirmation (`confirmation_claims`), never what confirms it."""


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
    raced = {k: v for k, v in mine.items() if k not in confirm}
    selection = _look(raced, base, rules)
    if confirm & set(mine):  # a claimed candidate: the seeds that selected it are left out
        mine = {k: v for k, v in mine.items() if k in confirm}
        basis: Literal["fresh", "confirmation"] = "confirmation"
    else:
        basis = "fresh"
    look = _look(mine, base, rules)
    if look is None:
        return None
    return Fresh(
        diff=look.diff,
        ci_low=look.ci_low or 0.0,
        ci_high=look.ci_high or 0.0,
        n_seeds=look.n,
        seeds=sorted(int(k) for k in mine if k in base)[: look.n],
        p_value=_p(look),
        confidence=rules.confidence,
        basis=basis,
        selection_p=_p(selection) if selection else None,
    )


def _look(mine: Mapping[str, list[float]], base: Mapping[str, list[float]], rules: RaceConfig) -> Look | None:
    """The paired difference over the seeds both have; None when none, or no spread to show it with."""
    from targets.racing import seed_differences, shown

    diffs = seed_differences({k: v for k, v in mine.items() if k in base}, base)
    if not diffs:
        return None
    try:
        return shown(diffs, rules)
    except ValueError:  # no σ measured and too few seeds for their own spread
        return None


def _p(look: Look) -> float:
    return look.p_value if look.p_value is not None else 1.0  # an underflowed 0.0 is a p, not a None


def baseline_verdicts(fresh: Mapping[str, Fresh], q: float) -> dict[str, str]:
    """Per candidate, its verdict against the baseline over the whole run: `better` when its difference
    comes from its confirmation seeds and Benjamini–Hochberg at FDR q over the run's confirmed candidates
    rejects it; `worse` when its interval lies below 0; `not_separated` otherwise.

    Two stages, each on its own seeds: the seeds a candidate raced on select it for confirmation (a claimed
    best, or Benjamini–Hochberg over the run on those seeds: `confirmation_claims`), and fresh seeds that
    selected nothing test it. The selection never looks at a confirmation seed, so a null candidate's
    confirmation p-value is uniform whatever was selected, and Benjamini–Hochberg over the selected holds
    its FDR (the race's seeds alone would not: a race goes on because a candidate looked good)."""
    from targets.racing import benjamini_hochberg

    confirmed = {cid: f.p_value for cid, f in fresh.items() if f.basis == "confirmation"}
    winners = benjamini_hochberg(confirmed, q)
    return {
        cid: "better" if cid in winners else ("worse" if f.ci_high < 0 else "not_separated")
        for cid, f in fresh.items()
    }


def confirmation_claims(fresh: Mapping[str, Fresh], q: float) -> set[str]:
    """The candidates not confirmed yet that Benjamini–Hochberg at FDR q calls better than the baseline over
    the run so far on the seeds they raced on (`selection_p`, never a confirmation seed's): the ones to
    train on confirmation seeds before any claim about them may stand."""
    from targets.racing import benjamini_hochberg

    raced = {cid: f.selection_p for cid, f in fresh.items() if f.selection_p is not None}
    return {cid for cid in benjamini_hochberg(raced, q) if fresh[cid].basis != "confirmation"}


def read_fresh(run: RunDir, cid: str | None) -> Fresh | None:
    """A candidate's saved difference to the baseline (`vs_baseline.json`), when it has one."""
    saved = run.read_candidate_json(cid, FRESH) if cid else None
    return Fresh.model_validate(saved) if saved else None


def fresh_text(fresh: Fresh, compact: bool = False) -> str:
    """The difference as the run lists show it: d̄ [low, high] and n (`compact`: as the TUI's columns)."""
    if compact:
        return f"{fresh.diff:+.2f}[{fresh.ci_low:+.2f},{fresh.ci_high:+.2f}] n{fresh.n_seeds}"
    return f"{fresh.diff:+.3f} [{fresh.ci_low:+.3f}, {fresh.ci_high:+.3f}] n{fresh.n_seeds}"
