"""What isolating each candidate's training costs (issue 15.9; goal: < 1 s per training run on 2 cores).

Side by side in one process, on the DPO target's default training settings (100 steps), run by run:
  in-process   what a warm worker did before: train with the candidate in the worker, evaluate there;
  isolated     what it does now: fork a child from the worker, jail it (namespaces, allow-listed mounts,
               unprivileged uid, seccomp), train there, hand the weights back as safetensors, validate them
               and evaluate in the worker, which never ran candidate code.
Both use one thread (a worker's setting when two train side by side) and the same seeds, alternating, so
that machine noise falls on both. The overhead per run is the difference of the paired wall times; the
breakdown times the isolated path's own steps (fork + jail, saving, loading and checking the weights).

Then the whole default evaluation of one candidate (5 β × 2 seeds, two workers) by today's code and by a
checkout of the code before isolation (`--before REV`, a git revision), each in a fresh process and cache.

    python evals/bench_isolation_overhead.py [--runs 4] [--before b1937a8] [--repeats 3] [--skip-candidate]

Results: evals/results/isolation_overhead/report.md and report.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
OUT = REPO / "evals" / "results" / "isolation_overhead"
CANDIDATE_SNIPPET = """
import json, sys, time
from pathlib import Path
from targets.dpo.target import DPOTarget, DPOTargetConfig
from targets.dpo.zoo import get_zoo_loss
target = DPOTarget(DPOTargetConfig(preset="default"), cache_dir=Path(sys.argv[1]))
target._baseline_runs()  # the one-time builds and DPO's runs are not the candidate's cost
t = time.perf_counter()
ev = target.evaluate(get_zoo_loss("ipo").code, "ipo")
print(json.dumps({"seconds": time.perf_counter() - t, "fitness": ev.fitness.value if ev.fitness else None}))
target.close()
"""


def paired_runs(n_runs: int, cache: Path) -> dict:
    import torch

    from sandbox.forked import run_forked
    from sandbox.jail import JailSpec
    from targets.dpo.candidate import load_candidate
    from targets.dpo.fitness import RunResult
    from targets.dpo.sweep import (
        SweepJob,
        _score,
        _train_in_child,
        _worker_state,
        load_trained_policy,
        sweep_spec,
    )
    from targets.dpo.toy.evaluate import evaluate_policy
    from targets.dpo.trainer import DPOTrainConfig, train_candidate
    from targets.dpo.zoo import get_zoo_loss

    torch.set_num_threads(1)
    spec = sweep_spec("default", 2)
    state = _worker_state(spec, cache)
    code = get_zoo_loss("dpo").code
    rows = []
    for seed in range(n_runs):
        job = SweepJob(loss="dpo", code=code, beta=0.1, seed=seed)
        t0 = time.perf_counter()  # in-process, as before
        policy = state["task"].load_sft_model()
        config = DPOTrainConfig(
            beta=job.beta, seed=job.seed, learning_rate=spec.train.learning_rate,
            per_device_train_batch_size=spec.train.batch_size, max_steps=spec.train.max_steps,
            lr_scheduler_type=spec.train.lr_scheduler_type, max_grad_norm=spec.train.max_grad_norm,
            max_length=spec.train.max_length,
        )  # fmt: skip
        train_candidate(load_candidate(code), policy, state["task"].tokenizer, state["prepared"], config)
        before = evaluate_policy(policy.eval(), state["reference"], state["task"], seed=10_000 + seed)
        inproc = time.perf_counter() - t0

        scratch = Path(tempfile.mkdtemp(prefix="disco-train-"))
        t1 = time.perf_counter()  # isolated, as now
        outcome = run_forked(
            lambda job=job, scratch=scratch: _train_in_child([job], spec, state, scratch),
            JailSpec(writable=[scratch]),
            scratch,
            600,
        )
        t2 = time.perf_counter()
        weights = scratch / "run-0.safetensors"
        load_trained_policy(weights, state["task"])
        t3 = time.perf_counter()
        base = RunResult(loss="dpo", beta=job.beta, seed=seed, status="error")
        after = _score(job, 0, base, state, scratch, outcome)
        t4 = time.perf_counter()
        report = json.loads((scratch / "run-0.json").read_text())
        shutil.rmtree(scratch, ignore_errors=True)
        child_train = report["seconds"]
        rows.append(
            {
                "seed": seed,
                "in_process_s": inproc,
                "isolated_s": (t2 - t1) + (t4 - t3),  # the check of the weights is timed once, below
                "child_s": t2 - t1,
                "child_training_loop_s": child_train,
                "load_and_check_weights_s": t3 - t2,
                "evaluate_s": after.eval_seconds,
                "same_rewards": after.rewards == before.rewards,
                "weights_mb": weights.stat().st_size / 2**20 if weights.exists() else None,
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    overhead = [r["isolated_s"] - r["in_process_s"] for r in rows]
    return {
        "runs": rows,
        "in_process_mean_s": statistics.fmean(r["in_process_s"] for r in rows),
        "isolated_mean_s": statistics.fmean(r["isolated_s"] for r in rows),
        "overhead_per_run_mean_s": statistics.fmean(overhead),
        "overhead_per_run_max_s": max(overhead),
        "ratio_isolated_over_in_process": statistics.fmean(r["isolated_s"] for r in rows)
        / statistics.fmean(r["in_process_s"] for r in rows),
    }


def candidate_time(tree: Path, cache: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    proc = subprocess.run(
        [sys.executable, "-c", CANDIDATE_SNIPPET, str(cache)],
        cwd=tree, env=env, capture_output=True, text=True, check=True, timeout=1800,
    )  # fmt: skip
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _median_of(timings: list[dict]) -> dict:
    """The median wall time of repeated whole-candidate evaluations, with every timing kept."""
    seconds = [t["seconds"] for t in timings]
    return {"seconds": statistics.median(seconds), "all_seconds": seconds, "fitness": timings[-1]["fitness"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--before", default="b1937a8", help="git revision before isolation")
    parser.add_argument("--skip-candidate", action="store_true")
    parser.add_argument(
        "--repeats", type=int, default=3, help="whole-candidate timings per side, alternated (median shown)"
    )
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="disco-iso-bench-") as tmp:
        root = Path(tmp)
        result: dict = {"machine_cores": os.cpu_count(), "paired": paired_runs(args.runs, root / "cache-now")}
        if not args.skip_candidate:
            old = root / "before"
            subprocess.run(
                ["git", "worktree", "add", "--detach", str(old), args.before], cwd=REPO, check=True
            )
            try:
                before, now = [], []
                for _ in range(args.repeats):  # alternated, so that machine noise falls on both
                    before.append(candidate_time(old, root / "cache-before"))
                    now.append(candidate_time(REPO, root / "cache-now2"))
            finally:
                subprocess.run(["git", "worktree", "remove", "--force", str(old)], cwd=REPO, check=False)
            result["candidate_before"] = _median_of(before) | {"rev": args.before}
            result["candidate_now"] = _median_of(now)
            result["candidate_ratio_now_over_before"] = (
                result["candidate_now"]["seconds"] / result["candidate_before"]["seconds"]
            )
    (OUT / "report.json").write_text(json.dumps(result, indent=2))
    (OUT / "report.md").write_text(render(result))
    print(render(result))


def _listed(timing: dict) -> str:
    return "(" + ", ".join(f"{x:.1f}" for x in timing.get("all_seconds", [timing["seconds"]])) + ")"


def render(r: dict) -> str:
    p = r["paired"]
    lines = [
        "# Isolation overhead per training run (issue 15.9)",
        "",
        f"{len(p['runs'])} paired runs of DPO at the default preset's training settings (100 steps), "
        f"one thread, on {r['machine_cores']} cores; `python evals/bench_isolation_overhead.py`.",
        "",
        "| seed | in-process s | isolated s | child (fork+jail+train+save) s | its training loop s "
        "| load+check weights s | evaluate s | same rewards |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in p["runs"]:
        lines.append(
            f"| {row['seed']} | {row['in_process_s']:.2f} | {row['isolated_s']:.2f} | {row['child_s']:.2f} | "
            f"{row['child_training_loop_s']:.2f} | {row['load_and_check_weights_s']:.3f} | "
            f"{row['evaluate_s']:.2f} | {row['same_rewards']} |"
        )
    lines += [
        "",
        f"- mean per run: in-process {p['in_process_mean_s']:.2f} s, isolated {p['isolated_mean_s']:.2f} s "
        f"(ratio {p['ratio_isolated_over_in_process']:.3f})",
        f"- **overhead per run: {p['overhead_per_run_mean_s']:+.3f} s mean, "
        f"{p['overhead_per_run_max_s']:+.3f} s max** (goal: < 1 s)",
    ]
    if "candidate_now" in r:
        lines += [
            "- one candidate at the default preset (5 β × 2 seeds, 2 workers), median of "
            f"{len(r['candidate_now'].get('all_seconds', [0]))} alternated timings: "
            f"before ({r['candidate_before']['rev']}) {r['candidate_before']['seconds']:.1f} s "
            f"{_listed(r['candidate_before'])}, now {r['candidate_now']['seconds']:.1f} s "
            f"{_listed(r['candidate_now'])}, "
            f"**ratio {r['candidate_ratio_now_over_before']:.3f}** (goal: ≤ 1.10)",
        ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
