"""The offline proposer as a search baseline under the run's own protocol (issue 16.8), and the agent's
overhead per candidate.

Runs `disco run` offline (no model) for N candidates on the DPO target's default preset: each candidate's
β is chosen on screening seeds that are never scored, it races the incumbent on fresh seeds (DPO trained
on each of them too), and "better than DPO" is decided over the whole run by Benjamini–Hochberg. Reports:
  - the run's best by evidence and the top candidates by their shrunk fresh difference to DPO, each with
    its interval, n and verdict; and the candidate with the highest in-sample screen fitness (the old
    protocol's "best"), to show what the winner's curse would have announced;
  - how far the race took the candidates (seeds reached) and the verdicts over the run;
  - candidates by status; seconds per candidate;
  - the agent's own overhead per candidate: wall time of every node minus the time spent inside the
    target's evaluator (training and scoring) and inside model calls (none offline).

    python evals/bench_offline_proposer.py --candidates 50            # ~40 min on 2 cores
    python evals/bench_offline_proposer.py --no-run                   # report on an existing run

Results: evals/results/offline_proposer/report.md and report.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
OUT = REPO / "evals" / "results" / "offline_proposer"


def run_disco(home: Path, run_id: str, candidates: int, preset: str) -> float:
    cmd = [
        sys.executable,
        "-m",
        "agent.cli",
        "--home",
        str(home),
        "run",
        "--run-id",
        run_id,
        "--model",
        "offline",
        "--max-candidates",
        str(candidates),
        "--preset",
        preset,
    ]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=REPO, env=os.environ | {"DISCO_MODEL": "offline"})
    return time.perf_counter() - start


def race_training(run_dir: Path) -> dict[str, float]:
    """Per candidate, the seconds its race spent inside the target's evaluator on extra seeds (its own and
    the incumbent's, trained for it): each batch once, from the seed files (`seeds/N.json`) it wrote."""
    import re

    batches: dict[tuple[str, tuple[int, ...]], tuple[str, float]] = {}
    for path in sorted(run_dir.glob("candidates/*/seeds/[0-9]*.json")):
        saved = json.loads(path.read_text())
        owner = path.parent.parent.name
        match = re.search(r"seeds for (\S+)$", str(saved.get("for") or ""))
        key = (owner, tuple(saved.get("evaluated_seeds") or [saved.get("seed")]))
        batches[key] = (match.group(1) if match else owner, float(saved.get("seconds") or 0.0))
    out: dict[str, float] = {}
    for cid, seconds in batches.values():
        out[cid] = out.get(cid, 0.0) + seconds
    return out


def overhead(run_dir: Path) -> dict:
    """Per candidate: node time minus evaluator and model time, from the event log."""
    from agent.events import EvaluationPayload, NodePayload, read_events

    per: dict[str, dict[str, float]] = {}
    for e in read_events(run_dir / "events.jsonl"):
        cid = e.candidate
        if not cid:
            continue
        slot = per.setdefault(cid, {"nodes": 0.0, "evaluator": 0.0, "model": 0.0, "check": 0.0})
        match e.data:
            case NodePayload(phase="leave", seconds=float() as seconds):
                slot["nodes"] += seconds
                if e.data.node == "check":
                    slot["check"] += seconds
            case EvaluationPayload(seconds=seconds):
                slot["evaluator"] += seconds
    for cid, seconds in race_training(run_dir).items():
        if cid in per:
            per[cid]["evaluator"] += seconds
    rows = [v["nodes"] - v["evaluator"] - v["model"] for v in per.values()]
    checks = [v["check"] for v in per.values()]
    rows.sort()
    return {
        "candidates": len(rows),
        "overhead_s_mean": statistics.mean(rows) if rows else None,
        "overhead_s_median": statistics.median(rows) if rows else None,
        "overhead_s_p95": rows[max(0, math.ceil(0.95 * len(rows)) - 1)] if rows else None,
        "of_which_sandboxed_checks_s_mean": statistics.mean(checks) if checks else None,
    }


def summarise(run_dir: Path) -> dict:
    """The run's candidates as the leaderboard ranks them, with the race's reach and the verdicts."""
    from agent.leaderboard import candidate_rows, incumbent, ranked, shrunk_scores
    from agent.runs import RunDir

    rows = candidate_rows(RunDir(run_dir))
    shrunk = shrunk_scores(rows)
    order = [r for r in ranked(rows) if r.id in shrunk]
    order.sort(key=lambda r: -shrunk[r.id])

    def brief(r: object) -> dict:
        out = r.model_dump()  # type: ignore[attr-defined]
        return out | {"shrunk": shrunk.get(out["id"])}

    scored = [r for r in rows if r.fitness is not None]
    top = incumbent(rows)
    reach: dict[int, int] = {}
    for r in scored:
        reach[r.vs_n or 0] = reach.get(r.vs_n or 0, 0) + 1  # fresh seeds trained with DPO beside it
    verdicts: dict[str, int] = {}
    for r in rows:
        if r.vs_verdict:
            verdicts[r.vs_verdict] = verdicts.get(r.vs_verdict, 0) + 1
    by_status: dict[str, int] = {}
    for r in rows:
        by_status[r.status] = by_status.get(r.status, 0) + 1
    return {
        "candidates": len(rows),
        "by_status": by_status,
        "incumbent": brief(top) if top else None,
        "top_by_shrunk_fresh": [brief(r) for r in order[:5]],
        "max_screen_fitness": brief(max(scored, key=lambda r: r.fitness or 0.0)) if scored else None,
        "seeds_reached": {str(k): v for k, v in sorted(reach.items())},
        "vs_dpo_verdicts": verdicts,
        "better_than_dpo": [r.name for r in rows if r.vs_verdict == "better"],
        "confirmed": [r.name for r in rows if r.vs_basis == "confirmation"],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--candidates", type=int, default=50)
    parser.add_argument("--preset", default="default")
    parser.add_argument("--home", type=Path, default=Path("/tmp/disco-proposer-study"))
    parser.add_argument("--run-id", default="proposer-study")
    parser.add_argument("--no-run", action="store_true", help="report on an existing run")
    args = parser.parse_args()

    if args.no_run:  # the wall clock of the run the saved report measured, when it is the same run
        saved = json.loads((OUT / "report.json").read_text()) if (OUT / "report.json").exists() else {}
        wall = saved.get("wall_s") if saved.get("run_dir") == str(args.home / "runs" / args.run_id) else None
    else:
        wall = run_disco(args.home, args.run_id, args.candidates, args.preset)
    run_dir = args.home / "runs" / args.run_id
    doc = {"preset": args.preset, "wall_s": wall, "run_dir": str(run_dir)} | summarise(run_dir)
    doc["seconds_per_candidate"] = (wall / doc["candidates"]) if wall and doc["candidates"] else None
    doc["overhead"] = overhead(run_dir)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "report.json").write_text(json.dumps(doc, indent=2, default=str))
    (OUT / "report.md").write_text(render(doc))
    print(render(doc))


def render(doc: dict) -> str:
    def ci(v: float | None, lo: float | None, hi: float | None) -> str:
        return (
            f"{v:+.3f} [{lo:+.3f}, {hi:+.3f}]" if v is not None and lo is not None and hi is not None else "—"
        )

    def row(label: str, r: dict | None) -> str:
        if not r:
            return f"| {label} | — | | | | | |"
        return (
            f"| {label} | #{r['index']} {r['name']} | {ci(r['vs_baseline'], r['vs_low'], r['vs_high'])} "
            f"| {r['vs_n'] or ''}{' (c)' if r.get('vs_basis') == 'confirmation' else ''} "
            f"| {r['vs_verdict'] or ''} | {r['verdict'] or ''} "
            f"| {ci(r['fitness'], r['ci_low'], r['ci_high'])} |"
        )

    top = doc["incumbent"]
    if top and top["vs_baseline"] is not None:
        basis = "confirmation" if top.get("vs_basis") == "confirmation" else "fresh"
        headline = (
            f"The run's best by evidence is #{top['index']} {top['name']}: vs DPO "
            f"{ci(top['vs_baseline'], top['vs_low'], top['vs_high'])} on {top['vs_n']} "
            f"{basis} seeds, "
            f"verdict **{top['vs_verdict']}** (Benjamini–Hochberg at q = 0.1 over the run's "
            f"{doc['candidates']} candidates)."
        )
    else:
        headline = "The run has no best by evidence."
    better = doc["better_than_dpo"]
    lines = [
        "# The offline proposer as a search baseline (DPO target, the run's own protocol)",
        "",
        f"{doc['candidates']} candidates, offline (no model), preset `{doc['preset']}`; wall clock "
        f"{doc['wall_s'] or 0:.0f} s ({doc['seconds_per_candidate'] or 0:.1f} s per candidate, races "
        "included).",
        f"Status: {', '.join(f'{k} {v}' for k, v in sorted(doc['by_status'].items()))}.",
        "",
        headline,
        f"Better than DPO over the run: {', '.join(better) if better else 'none'}; verdicts "
        + ", ".join(f"{k} {v}" for k, v in sorted(doc["vs_dpo_verdicts"].items()))
        + ". 'Better' stands on confirmation seeds alone: a candidate Benjamini–Hochberg calls better on "
        "the seeds it raced on is trained on 16 seeds it never saw, and is better only if "
        "Benjamini–Hochberg over the confirmed says so on those (agent.fresh). Confirmed (n marked (c): "
        "confirmation seeds): " + (", ".join(doc.get("confirmed") or []) or "none") + ".",
        "Fresh seeds each candidate reached, with DPO trained beside it (n: candidates): "
        + ", ".join(f"{k}: {v}" for k, v in doc["seeds_reached"].items())
        + ".",
        "",
        "| | candidate | vs DPO, fresh seeds | n | vs DPO verdict | evidence | screen fitness (in-sample) |",
        "|---|---|---|---:|---|---|---|",
        row("best by evidence", top),
    ]
    lines += [row(f"top {i} by shrunk fresh", r) for i, r in enumerate(doc["top_by_shrunk_fresh"], start=1)]
    lines += [
        row("highest screen fitness", doc["max_screen_fitness"]),
        "",
        "The highest screen fitness is what ranking by the in-sample number would have announced.",
    ]
    o = doc["overhead"]
    lines += [
        "",
        "## The agent's own overhead per candidate",
        "Node wall time minus the time inside the target's evaluator (training and scoring, the race's extra "
        "seeds included) and model calls:",
        f"mean {o['overhead_s_mean']:.2f} s, median {o['overhead_s_median']:.2f} s, "
        f"p95 {o['overhead_s_p95']:.2f} s "
        f"over {o['candidates']} candidates; of which the sandboxed validity checks and fingerprint "
        f"{o['of_which_sandboxed_checks_s_mean']:.2f} s on average.",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
