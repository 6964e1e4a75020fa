"""The zoo at the default screen's βs under another evaluation setting (samples per prompt), in the zoo
bench's file format, so `bench_fitness_calibration.py --zoo samplesK` can measure the instrument with it.

Trains the thirteen zoo losses at β ∈ {0.5, 1} on seeds 0–3 and the classic six also on seeds 4–7, each run
scored with K completions per prompt (the first is the one-sample draw). Writes, under
evals/results/zoo/samplesK/: runs_items.jsonl.gz, classic_extra_items.jsonl.gz (per-prompt rewards and
KLs, rounded as the zoo bench rounds them) and runs.csv (train and evaluation seconds per run).

    python evals/bench_zoo_samples.py --samples 4        # ~15 min on 2 cores
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench_zoo import save_runs  # noqa: E402  (evals/, the script's own folder, is on the path)

from agent.home import cache_dir  # noqa: E402
from targets.dpo.fitness import SCREEN_BETAS, RunResult  # noqa: E402
from targets.dpo.sweep import SweepJob, SweepPool, SweepSpec  # noqa: E402
from targets.dpo.toy.config import ToyTaskConfig  # noqa: E402
from targets.dpo.zoo import get_zoo_loss, list_zoo  # noqa: E402

CLASSIC = ["dpo", "cdpo", "ipo", "slic", "robust_dpo", "kto_pair"]
ZOO = REPO / "evals" / "results" / "zoo"


def train(spec: SweepSpec, jobs: list[SweepJob], label: str) -> list[RunResult]:
    start = time.perf_counter()

    def progress(run: RunResult, done: int, total: int) -> None:
        if done % 10 == 0 or done == total:
            print(f"  [{label}] {done}/{total} runs, {time.perf_counter() - start:.0f} s", flush=True)

    with SweepPool(spec, cache_dir()) as pool:
        return pool.run_jobs(jobs, progress)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=4, help="completions scored per prompt")
    args = parser.parse_args()
    out = ZOO / f"samples{args.samples}"
    out.mkdir(parents=True, exist_ok=True)
    spec = SweepSpec(
        betas=list(SCREEN_BETAS), seeds=[0], task=ToyTaskConfig(eval_samples_per_prompt=args.samples)
    )
    names = [z.name for z in list_zoo()]
    plans = {
        "runs_items.jsonl.gz": [(n, s) for n in names for s in range(4)],
        "classic_extra_items.jsonl.gz": [(n, s) for n in CLASSIC for s in range(4, 8)],
    }
    rows: list[dict] = []
    for file, plan in plans.items():
        jobs = [
            SweepJob(loss=n, code=get_zoo_loss(n).code, beta=b, seed=s) for n, s in plan for b in SCREEN_BETAS
        ]
        runs = train(spec, jobs, file.split(".")[0])
        save_runs(runs, out / file)
        rows += [
            r.model_dump(exclude={"rewards", "kls"}) | {"mean_reward": r.mean_reward, "mean_kl": r.mean_kl}
            for r in runs
        ]
    with open(out / "runs.csv", "w", newline="") as fh:
        fields = ["loss", "beta", "seed", "status", "mean_reward", "mean_kl", "steps", "train_seconds",
                  "eval_seconds", "reason"]  # fmt: skip
        writer = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
