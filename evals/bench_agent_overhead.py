"""The agent's own overhead per candidate, excluding model latency and training (goal: ≤ 2 s).

Two runs of the real loop on the DPO target's `tiny` preset (training takes seconds, so the rest shows):
  offline   the built-in proposer designs (no model, reflections skipped);
  model     a scripted model behind a fake OpenAI-compatible server on loopback (tests/fake_openai.py),
            through the real langchain-openai client: design, two reflections, repairs when checks fail.
Per candidate: the wall time of every node, minus the time inside the target's evaluator and inside model
calls (the `llm` events' latency), split by node. Checkpointing, memory queries and writes, prompt
rendering, sandboxed checks and the event log are what remains.

    python evals/bench_agent_overhead.py [--candidates 20]

Results: evals/results/agent_overhead/report.md and report.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]
OUT = REPO / "evals" / "results" / "agent_overhead"


def per_candidate(run_dir: Path) -> list[dict[str, float]]:
    from agent.events import EvaluationPayload, LlmPayload, NodePayload, read_events

    rows: dict[str, dict[str, float]] = {}
    current: str | None = None
    for e in read_events(run_dir / "events.jsonl"):
        if e.candidate:
            current = e.candidate
        cid = e.candidate or current
        if cid is None:
            continue
        row = rows.setdefault(cid, {"total": 0.0, "evaluator": 0.0, "model": 0.0})
        match e.data:
            case NodePayload(phase="leave", seconds=float() as seconds):
                row["total"] += seconds
                row[f"node:{e.data.node}"] = row.get(f"node:{e.data.node}", 0.0) + seconds
            case EvaluationPayload(seconds=seconds):
                row["evaluator"] += seconds
            case LlmPayload(cached=False, latency_s=latency_s):
                row["model"] += latency_s
    for row in rows.values():
        row["overhead"] = row["total"] - row["evaluator"] - row["model"]
        row["node:evaluate"] = row.get("node:evaluate", 0.0) - row["evaluator"]  # evaluate's own share
    return list(rows.values())


def summarise(rows: list[dict[str, float]]) -> dict:
    overhead = sorted(r["overhead"] for r in rows)
    nodes = sorted({k for r in rows for k in r if k.startswith("node:")})
    return {
        "candidates": len(rows),
        "overhead_mean_s": statistics.mean(overhead),
        "overhead_median_s": statistics.median(overhead),
        "overhead_p95_s": overhead[int(0.95 * (len(overhead) - 1))],
        "model_latency_mean_s": statistics.mean(r["model"] for r in rows),
        "evaluator_mean_s": statistics.mean(r["evaluator"] for r in rows),
        "by_node_mean_s": {n[5:]: statistics.mean(r.get(n, 0.0) for r in rows) for n in nodes},
    }


def run_offline(home: Path, n: int) -> Path:
    from agent_helpers import start, tiny_config

    runner, run = start(home / "runs", tiny_config(budget={"max_candidates": n}), "offline")
    runner.execute()
    return run.root


def run_model(home: Path, n: int) -> Path:
    from agent_helpers import distinct, scripted_model, start, tiny_config
    from fake_openai import FakeOpenAI

    with FakeOpenAI() as server:
        server.default = scripted_model(distinct)
        models = {"meta": {"model": "fake-model", "base_url": server.base_url, "api_key": "k"}}
        runner, run = start(home / "runs", tiny_config(models=models, budget={"max_candidates": n}), "model")
        runner.execute()
    return run.root


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--candidates", type=int, default=20)
    args = parser.parse_args()
    from agent.home import set_home

    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        os.environ.setdefault("DISCO_CACHE", str(Path(tmp) / "cache"))
        set_home(home)
        results = {}
        for name, fn in (("offline", run_offline), ("model", run_model)):
            rows = per_candidate(fn(home, args.candidates))
            results[name] = summarise(rows[1:])  # the first candidate pays one-time start-up (workers, model)
            results[name]["first_candidate_overhead_s"] = rows[0]["overhead"]
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "report.json").write_text(json.dumps(results, indent=2))
    lines = [
        "# The agent's own overhead per candidate (goal ≤ 2 s)",
        "",
        "Node wall time minus the target's evaluator (training, scoring) and model latency, on the DPO "
        f"target's `tiny` preset, {args.candidates} candidates per run; the first candidate (one-time start "
        "of sandbox and training workers, embedding model load) is reported apart.",
        "",
        "| run | overhead mean | median | p95 | first candidate | model latency | evaluator "
        "| by node (mean s) |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name, r in results.items():
        nodes = ", ".join(f"{k} {v:.3f}" for k, v in r["by_node_mean_s"].items())
        lines.append(
            f"| {name} | {r['overhead_mean_s']:.2f} s | {r['overhead_median_s']:.2f} s "
            f"| {r['overhead_p95_s']:.2f} s "
            f"| {r['first_candidate_overhead_s']:.1f} s | {r['model_latency_mean_s']:.2f} s "
            f"| {r['evaluator_mean_s']:.1f} s | {nodes} |"
        )
    (OUT / "report.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
