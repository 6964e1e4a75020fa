"""The race replayed on real training runs (issue 16.7): does the rule hold what it states on the task's own
noise, and does the simulation in bench_fitness_calibration.py predict what the real runs do?

Trains DPO, cDPO, SLiC, IPO and KTO-pair, each at the β the default screen picks on the zoo's seeds 0–1, on
64 fresh seeds (100–163) with the DPO target's default evaluation (runs saved by an earlier call are kept).
Then, with the race's default settings and the σ it uses:

- **truth**: each loss's paired difference to DPO over the 64 seeds, with its standard error;
- **replay**: many random orders of the seeds; the race (targets/racing.race) on the first seeds of each
  order until it stops; how often its interval covers the difference over the seeds it did not use (a
  held-out truth, itself noisy: the coverage shown is a lower bound), its verdicts and seeds used; beside
  it, the simulation's prediction for the same true difference (Gaussian noise with σ);
- **a real null run**: 50 candidates that are DPO itself, each compared with DPO on other seeds (candidate
  DPO at seed a against DPO at seed b ≠ a: the true difference is exactly 0 and the noise is the task's
  own, unpaired, so larger than a paired null's); whole runs of them raced with the run's own rule: false
  "best" per run, and the share of candidates that Benjamini–Hochberg would send to confirmation. A null
  written as DPO under another text is no use here: training is deterministic per seed, so its difference
  is 0 to the last digit on most seeds (measured below).

    python evals/bench_race_replay.py [--orders 2000] [--fresh]     # ~25 min on 2 cores the first time

Writes evals/results/race_replay/{summary.json, report.md, runs.jsonl.gz}.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from agent.home import cache_dir  # noqa: E402
from targets.dpo.fitness import SCREEN_BETAS, FitnessConfig, RunResult  # noqa: E402
from targets.dpo.sweep import (  # noqa: E402
    SweepJob,
    SweepPool,
    sweep_spec,
)
from targets.dpo.target import DPOTargetConfig  # noqa: E402
from targets.dpo.zoo import get_zoo_loss  # noqa: E402
from targets.racing import RaceConfig, benjamini_hochberg, race  # noqa: E402

OUT = REPO / "evals" / "results" / "race_replay"
ZOOS = REPO / "evals" / "results" / "zoo"
LOSSES = ["dpo", "cdpo", "slic", "ipo", "kto_pair"]
SEEDS = list(range(100, 164))
NULLS_PER_RUN = 50
SCREEN_SEEDS = (0, 1)
NULL_TEXTS = {
    "softplus × 0.7": "    return 0.7 * F.softplus(-self.beta * rho)\n",
    "-logsigmoid": "    return -F.logsigmoid(self.beta * rho)\n",
}
SIG = (
    "def {name}(self, policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, "
    "reference_rejected_logps):\n"
    "    rho = (policy_chosen_logps - policy_rejected_logps) - (reference_chosen_logps - "
    "reference_rejected_logps)\n"
)


def seed_score(run: dict, fit: FitnessConfig) -> float:
    if run["status"] != "ok":
        return fit.failure_score
    return float(np.mean(np.asarray(run["rewards"]) - fit.kl_penalty * np.asarray(run["kls"])))


def zoo_dir(samples: int) -> Path:
    return ZOOS / ("default" if samples == 1 else f"samples{samples}")


def screened_betas(samples: int) -> dict[str, float]:
    """Per loss, the screen's β (best mean score over SCREEN_BETAS on the zoo's seeds 0–1, at this
    evaluation setting): what the agent's evaluation would fix it at."""
    fit = FitnessConfig()
    sums: dict[tuple[str, float], list[float]] = {}
    with gzip.open(zoo_dir(samples) / "runs_items.jsonl.gz", "rt") as fh:
        for line in fh:
            r = json.loads(line)
            if r["loss"] in LOSSES and float(r["beta"]) in SCREEN_BETAS and int(r["seed"]) in SCREEN_SEEDS:
                sums.setdefault((r["loss"], float(r["beta"])), []).append(seed_score(r, fit))
    return {loss: max(SCREEN_BETAS, key=lambda b: np.mean(sums[(loss, b)])) for loss in LOSSES}


def train(jobs: list[SweepJob], samples: int) -> tuple[list[dict], float]:
    spec = sweep_spec("default", samples_per_prompt=samples)
    start = time.perf_counter()

    def progress(run: RunResult, done: int, total: int) -> None:
        if done % 10 == 0 or done == total:
            print(f"  {done}/{total} runs, {time.perf_counter() - start:.0f} s", flush=True)

    if not jobs:
        return [], 0.0
    with SweepPool(spec, cache_dir()) as pool:
        runs = pool.run_jobs(jobs, progress)
    wall = time.perf_counter() - start
    return [r.model_dump(include={"loss", "beta", "seed", "status", "rewards", "kls"}) for r in runs], wall


def null_text_runs(samples: int, beta: float) -> list[dict]:
    """DPO under two other texts on 4 of the seeds: how far a 'null' text's training strays from DPO's."""
    jobs = [
        SweepJob(loss=label, code=SIG.format(name=f"null_{i}") + body, beta=beta, seed=s)
        for i, (label, body) in enumerate(NULL_TEXTS.items())
        for s in SEEDS[:4]
    ]
    runs, _ = train(jobs, samples)
    return runs


# ------------------------------------------------------------------------------------- analysis
def truth(scores: dict[str, np.ndarray]) -> dict[str, dict]:
    out = {}
    for loss in LOSSES[1:]:
        d = scores[loss] - scores["dpo"]
        out[loss] = {
            "diff": float(d.mean()),
            "se": float(d.std(ddof=1) / math.sqrt(len(d))),
            "sd": float(d.std(ddof=1)),
        }
    return out


def replay(d: np.ndarray, cfg: RaceConfig, orders: int, rng: np.random.Generator) -> dict:
    """The race on random orders of one loss's real per-seed differences to DPO."""
    covered, covered_all, verdicts, seeds_used = 0, 0, {"better": 0, "drop": 0, "not_separated": 0}, []
    truth_all = float(d.mean())
    for _ in range(orders):
        order = rng.permutation(len(d))
        looks = race(d[order].tolist(), cfg)
        last = looks[-1]
        held_out = d[order[last.n :]]
        target = float(held_out.mean()) if len(held_out) else truth_all
        covered += last.ci_low <= target <= last.ci_high
        covered_all += last.ci_low <= truth_all <= last.ci_high
        verdicts[last.decision if last.decision in verdicts else "not_separated"] += 1
        seeds_used.append(last.n)
    return {
        "coverage_held_out": covered / orders,
        "coverage_64": covered_all / orders,
        "share": {k: v / orders for k, v in verdicts.items()},
        "seeds_mean": float(np.mean(seeds_used)),
    }


def simulated(delta: float, cfg: RaceConfig, orders: int, rng: np.random.Generator) -> dict:
    """The simulation's prediction for the same true difference: Gaussian seeds with the race's σ."""
    assert cfg.sigma is not None
    covered, verdicts, seeds_used = 0, {"better": 0, "drop": 0, "not_separated": 0}, []
    top = cfg.stages[-1]
    for _ in range(orders):
        d = rng.normal(delta, cfg.sigma, top)
        last = race(d.tolist(), cfg)[-1]
        covered += last.ci_low <= delta <= last.ci_high
        verdicts[last.decision if last.decision in verdicts else "not_separated"] += 1
        seeds_used.append(last.n)
    return {
        "coverage": covered / orders,
        "share": {k: v / orders for k, v in verdicts.items()},
        "seeds_mean": float(np.mean(seeds_used)),
    }


def null_runs(dpo: np.ndarray, cfg: RaceConfig, runs: int, rng: np.random.Generator) -> dict:
    """Whole runs of NULLS_PER_RUN DPO-against-DPO candidates, each on its own random pairing of distinct
    seeds: any 'best' is false; Benjamini–Hochberg over the run on the race's p-values (the step that sends
    candidates to confirmation) shows how often confirmation is spent on nothing."""
    n = len(dpo)
    top = cfg.stages[-1]
    false_best_runs, selected, seeds = 0, 0, []
    for _ in range(runs):
        p_values, any_best = {}, False
        for k in range(NULLS_PER_RUN):
            a = rng.permutation(n)[:top]
            shift = rng.integers(1, n)
            b = (a + shift) % n  # a different seed for each, never the same one
            looks = race((dpo[a] - dpo[b]).tolist(), cfg)
            last = looks[-1]
            any_best |= last.decision == "better"
            p_values[str(k)] = last.p_value if last.p_value is not None else 1.0
            seeds.append(last.n)
        false_best_runs += any_best
        selected += len(benjamini_hochberg(p_values, cfg.q))
    return {
        "runs": runs,
        "candidates_per_run": NULLS_PER_RUN,
        "false_best_per_run": false_best_runs / runs,
        "selected_for_confirmation_per_run": selected / runs,
        "seeds_mean": float(np.mean(seeds)),
        "sd_per_seed": float(np.std(dpo, ddof=1) * math.sqrt(2)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=2000, help="random seed orders per loss")
    parser.add_argument("--null-runs", type=int, default=400, help="whole null runs of 50 candidates")
    parser.add_argument("--fresh", action="store_true", help="train every run again (default: the missing)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    samples = DPOTargetConfig().samples_per_prompt
    betas = screened_betas(samples)
    saved = OUT / "runs.jsonl.gz"
    started = time.perf_counter()
    rows: list[dict] = []
    if saved.exists() and not args.fresh:
        with gzip.open(saved, "rt") as fh:
            rows = [r for r in map(json.loads, fh) if r.get("role")]  # rows of another code's runs: dropped
    have = {(r["loss"], r["seed"]) for r in rows if r["role"] == "zoo"}
    jobs = [
        SweepJob(loss=loss, code=get_zoo_loss(loss).code, beta=betas[loss], seed=s)
        for loss in LOSSES
        for s in SEEDS
        if (loss, s) not in have
    ]
    print(f"{len(have)} runs saved, {len(jobs)} to train at {samples} sample(s) per prompt", flush=True)
    fresh, wall = train(jobs, samples)
    rows += [r | {"role": "zoo"} for r in fresh]
    if not any(r["role"] == "null_text" for r in rows):
        rows += [r | {"role": "null_text"} for r in null_text_runs(samples, betas["dpo"])]
    if jobs:
        previous = json.loads((OUT / "summary.json").read_text()) if (OUT / "summary.json").exists() else {}
        wall += 0.0 if args.fresh else previous.get("training_seconds", 0.0)
        with gzip.open(saved, "wt") as fh:
            for r in rows:
                fh.write(json.dumps(r | {"rewards": [round(x, 4) for x in r["rewards"]],
                                         "kls": [round(x, 4) for x in r["kls"]]}) + "\n")  # fmt: skip
    else:
        wall = json.loads((OUT / "summary.json").read_text())["training_seconds"]
    fit = FitnessConfig()
    zoo_rows = [r for r in rows if r.get("role", "zoo") == "zoo"]
    by = {(r["loss"], r["seed"]): seed_score(r, fit) for r in zoo_rows}
    scores = {loss: np.asarray([by[(loss, s)] for s in SEEDS]) for loss in LOSSES}
    null_rows = [r for r in rows if r.get("role") == "null_text"]
    null_texts = {
        label: [abs(seed_score(r, fit) - by[("dpo", r["seed"])]) for r in null_rows if r["loss"] == label]
        for label in NULL_TEXTS
    }

    from targets.dpo.target import DPOTarget

    sigma = DPOTarget(DPOTargetConfig(), cache_dir=Path("/nonexistent")).seed_sigma
    cfg = RaceConfig(sigma=sigma)
    rng = np.random.default_rng(args.seed)
    truths = truth(scores)
    per_loss = {}
    for loss, t in truths.items():
        d = scores[loss] - scores["dpo"]
        per_loss[loss] = {
            "beta": betas[loss],
            "truth": t,
            "replay": replay(d, cfg, args.orders, rng),
            "simulated": simulated(t["diff"], cfg, args.orders, rng),
        }
    nulls = null_runs(scores["dpo"], cfg, args.null_runs, rng)
    summary = {
        "samples_per_prompt": samples,
        "sigma_used": sigma,
        "seeds": [SEEDS[0], SEEDS[-1]],
        "betas": betas,
        "race": cfg.model_dump(mode="json"),
        "losses": per_loss,
        "null_run": nulls,
        "null_texts_abs_diff": null_texts,
        "training_seconds": wall,
        "seconds": time.perf_counter() - started,
    }
    (OUT / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (OUT / "report.md").write_text(render(summary))
    print((OUT / "report.md").read_text())


def render(s: dict) -> str:
    lines = [
        "# The race replayed on real runs (evals/bench_race_replay.py)",
        "",
        f"{len(LOSSES)} losses at the screen's β on seeds {s['seeds'][0]}–{s['seeds'][1]}, "
        f"{s['samples_per_prompt']} sample(s) per prompt; the race's default settings, "
        f"σ {s['sigma_used']:.4f}.",
        "",
        "| loss | β | truth (64 seeds) | replay: coverage of the 64-seed truth / of the held-out seeds "
        "| replay: better / drop / n.s. | seeds | simulated: coverage | simulated: better / drop / n.s. "
        "| seeds |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for loss, row in s["losses"].items():
        t, r, m = row["truth"], row["replay"], row["simulated"]
        share = lambda x: " / ".join(f"{x['share'][k]:.2f}" for k in ("better", "drop", "not_separated"))  # noqa: E731
        lines.append(
            f"| {loss} | {row['beta']:g} | {t['diff']:+.4f} ± {t['se']:.4f} (sd {t['sd']:.3f}) | "
            f"{r['coverage_64']:.3f} / {r['coverage_held_out']:.3f} | {share(r)} | {r['seeds_mean']:.1f} | "
            f"{m['coverage']:.3f} | "
            f"{share(m)} | {m['seeds_mean']:.1f} |"
        )
    n = s["null_run"]
    lines += [
        "",
        f"**Real null runs**: {n['runs']} runs of {n['candidates_per_run']} candidates that are DPO against "
        f"DPO on other seeds (sd of a difference {n['sd_per_seed']:.3f}): false 'best' per run "
        f"**{n['false_best_per_run']:.4f}**; Benjamini–Hochberg on the race's p-values would send "
        f"{n['selected_for_confirmation_per_run']:.3f} candidates a run to confirmation; "
        f"{n['seeds_mean']:.1f} seeds a candidate.",
        "",
        "DPO under other texts, |difference to DPO| on seeds "
        + ", ".join(f"{x}" for x in SEEDS[:4])
        + ": "
        + "; ".join(
            f"{k}: " + ", ".join(f"{v:.2g}" for v in vals) for k, vals in s["null_texts_abs_diff"].items()
        )
        + ". Training is deterministic per seed, so such a 'null' mostly reproduces DPO exactly: it cannot "
        "measure the rule's false-claim rate, which is why the null runs above pair DPO with DPO on other "
        "seeds.",
        "",
        f"Training: {s['training_seconds']:.0f} s on 2 workers.",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
