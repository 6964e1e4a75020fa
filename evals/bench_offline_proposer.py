"""The offline proposer as a search baseline, and the agent's own overhead per candidate.

Runs `disco run` offline (no model) for N candidates on the DPO target's default sweep, then reports:
  - the best fitness after 20 and after N candidates, against DPO's fitness on the same sweep;
  - the best candidates re-evaluated on fresh seeds, paired with DPO (best-of-N is optimistic: the
    winner's curse), which is the evidence that counts;
  - candidates by status; seconds per candidate;
  - the agent's overhead per candidate: wall time of every node minus the time spent inside the target's
    evaluator (training and scoring) and inside model calls (none offline).

    python evals/bench_offline_proposer.py --candidates 50            # ~40 min on 2 cores
    python evals/bench_offline_proposer.py --run-dir DIR --no-run     # report on an existing run

Results: evals/results/offline_proposer/report.md and report.json.
"""

from __future__ import annotations

import argparse
import json
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


def overhead(run_dir: Path) -> dict:
    """Per candidate: node time minus evaluator and model time, from the event log."""
    from agent.events import read_events

    per: dict[str, dict[str, float]] = {}
    for e in read_events(run_dir / "events.jsonl"):
        cid = e.candidate
        if not cid:
            continue
        slot = per.setdefault(cid, {"nodes": 0.0, "evaluator": 0.0, "model": 0.0, "check": 0.0})
        if e.kind == "node" and e.payload.get("phase") == "leave":
            slot["nodes"] += e.payload["seconds"]
            if e.payload["node"] == "check":
                slot["check"] += e.payload["seconds"]
        elif e.kind == "evaluation":
            slot["evaluator"] += e.payload.get("seconds", 0.0)
    rows = [v["nodes"] - v["evaluator"] - v["model"] for v in per.values()]
    checks = [v["check"] for v in per.values()]
    rows.sort()
    return {
        "candidates": len(rows),
        "overhead_s_mean": statistics.mean(rows) if rows else None,
        "overhead_s_median": statistics.median(rows) if rows else None,
        "overhead_s_p95": rows[int(0.95 * (len(rows) - 1))] if rows else None,
        "of_which_sandboxed_checks_s_mean": statistics.mean(checks) if checks else None,
    }


def best_after(rows: list[dict], n: int) -> dict | None:
    scored = [r for r in rows if r["index"] <= n and r["fitness"] is not None]
    return max(scored, key=lambda r: r["fitness"]) if scored else None


def reevaluate(home: Path, codes: dict[str, str], seeds: list[int]) -> dict:
    """The given candidates and DPO on fresh seeds (same β grid), paired with DPO."""
    os.environ["DISCO_HOME"] = str(home)
    from agent.home import cache_dir
    from targets.dpo.bench import run_bench
    from targets.dpo.sweep import SweepSpec

    report = run_bench(codes, SweepSpec(seeds=seeds), cache_dir())
    return {
        name: report.fitness[name].model_dump(mode="json", exclude={"frontier"}) for name in report.losses
    }


def dpo_fitness(home: Path, run_dir: Path) -> dict:
    from targets.dpo.fitness import RunResult, compute_fitness
    from targets.dpo.sweep import SweepSpec

    (path,) = (home / "cache" / "baselines").glob("dpo-*.json")
    runs = [RunResult.model_validate(r) for r in json.loads(path.read_text())]
    return compute_fitness({"dpo": runs}, SweepSpec().fitness, baseline=None)["dpo"].fitness.model_dump()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--candidates", type=int, default=50)
    parser.add_argument("--preset", default="default")
    parser.add_argument("--home", type=Path, default=Path("/tmp/disco-proposer-study"))
    parser.add_argument("--run-id", default="proposer-study")
    parser.add_argument("--no-run", action="store_true", help="report on an existing run")
    parser.add_argument("--fresh-seeds", default="2,3,4,5")
    args = parser.parse_args()

    wall = None if args.no_run else run_disco(args.home, args.run_id, args.candidates, args.preset)
    run_dir = args.home / "runs" / args.run_id
    from agent.leaderboard import candidate_rows
    from agent.runs import RunDir

    rows = [r.model_dump() for r in candidate_rows(RunDir(run_dir))]
    by_status: dict[str, int] = {}
    for r in rows:
        by_status[r["status"]] = by_status.get(r["status"], 0) + 1
    checkpoints = sorted({min(20, len(rows)), len(rows)})
    best = {n: best_after(rows, n) for n in checkpoints}
    dpo = dpo_fitness(args.home, run_dir)
    seeds = [int(s) for s in args.fresh_seeds.split(",")]
    codes = {}
    for n, row in best.items():
        if row:
            codes[f"best_after_{n}"] = (run_dir / "candidates" / row["id"] / "record.json").read_text()
    codes = {k: json.loads(v)["code"] for k, v in codes.items()}
    fresh = reevaluate(args.home, codes, seeds) if codes else {}
    doc = {
        "candidates": len(rows),
        "preset": args.preset,
        "wall_s": wall,
        "seconds_per_candidate": (wall / len(rows)) if wall and rows else None,
        "by_status": by_status,
        "dpo_fitness": dpo,
        "best": {str(n): best[n] for n in checkpoints},
        "fresh_seeds": seeds,
        "reevaluated": fresh,
        "overhead": overhead(run_dir),
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "report.json").write_text(json.dumps(doc, indent=2, default=str))
    (OUT / "report.md").write_text(render(doc))
    print(render(doc))


def render(doc: dict) -> str:
    def ci(f: dict | None) -> str:
        return f"{f['value']:+.3f} [{f['ci_low']:+.3f}, {f['ci_high']:+.3f}]" if f else "—"

    lines = [
        "# The offline proposer as a search baseline (DPO target, default sweep: 5 β × 2 seeds)",
        "",
        f"{doc['candidates']} candidates, offline (no model); wall clock "
        f"{doc['wall_s'] or 0:.0f} s ({doc['seconds_per_candidate'] or 0:.1f} s per candidate).",
        f"Status: {', '.join(f'{k} {v}' for k, v in sorted(doc['by_status'].items()))}.",
        f"DPO on the same sweep: fitness {ci(doc['dpo_fitness'])}.",
        "",
        "| after | best candidate | fitness [95% CI] | vs DPO, same seeds | re-evaluated on fresh seeds "
        "| vs DPO, fresh seeds |",
        "|---:|---|---|---|---|---|",
    ]
    for n, row in doc["best"].items():
        if not row:
            continue
        fresh = doc["reevaluated"].get(f"best_after_{n}", {})
        fit = {"value": row["fitness"], "ci_low": row["ci_low"], "ci_high": row["ci_high"]}
        vs = {"value": row["vs_baseline"], "ci_low": row["vs_low"], "ci_high": row["vs_high"]}
        vs_fresh = (fresh.get("vs_baseline") or {}).get("diff")
        lines.append(
            f"| {n} | {row['name']} | {ci(fit)} | {ci(vs)} | {ci(fresh.get('fitness'))} | {ci(vs_fresh)} |"
        )
    o = doc["overhead"]
    lines += [
        "",
        f"Fresh seeds: {doc['fresh_seeds']} (DPO re-run on the same seeds: "
        f"{ci(doc['reevaluated'].get('dpo', {}).get('fitness'))}).",
        "",
        "## The agent's own overhead per candidate",
        "Node wall time minus the time inside the target's evaluator (training, scoring) and model calls:",
        f"mean {o['overhead_s_mean']:.2f} s, median {o['overhead_s_median']:.2f} s, "
        f"p95 {o['overhead_s_p95']:.2f} s "
        f"over {o['candidates']} candidates; of which the sandboxed validity checks and fingerprint "
        f"{o['of_which_sandboxed_checks_s_mean']:.2f} s on average.",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
