"""Which lever lowers the fitness's noise per second of training? (issue 16, items 2 and 3)

The racing rule needs ~200 seeds for +0.02 at σ 0.067 (evals/results/fitness_calibration). σ is the
per-seed sd of a paired difference between two losses; this bench measures what each cheap lever does to
it, on fresh seeds (100–115, never used by the zoo bench), with the pilot's losses (DPO, cDPO, SLiC, IPO),
each at the β the default screen picks for it most often on the zoo's seeds:

- **samples per prompt** (`ToyTaskConfig.eval_samples_per_prompt`): cuts the item-sampling share;
- **training settings** (learning rate × steps): a gentler or shorter run may stay off the grammar cliff,
  where the training share of the noise comes from, but also moves the losses apart less;
- **a DPO seed bank** instead of pairing: the candidate's seed mean against the mean of B bank seeds of
  DPO. Pairing pays only as much as two losses' seed scores correlate (ρ); the bank's standard error is
  √(σ_c²/n + σ_DPO²/B) against the pair's √(σ_c² + σ_DPO² − 2ρσ_cσ_DPO)/√n.

A lever is worth it when it lowers (σ / signal)² × seconds per run: the training seconds that resolve the
same difference relative to the spread between the losses (signal: the sd of the four losses' means), since
a setting that lowers σ by moving every loss less from the SFT model has bought nothing.

    python evals/bench_variance_levers.py [--seeds 16] [--reuse]

Writes evals/results/variance_levers/{summary.json, report.md, runs.jsonl.gz}. A benchmark, not a test:
about 20 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import gzip
import itertools
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
from targets.dpo.sweep import SweepJob, SweepPool, SweepSpec, ToyTrainSettings  # noqa: E402
from targets.dpo.toy.config import ToyTaskConfig  # noqa: E402
from targets.dpo.zoo import get_zoo_loss  # noqa: E402
from targets.racing import RaceConfig  # noqa: E402

OUT = REPO / "evals" / "results" / "variance_levers"
ZOO_ITEMS = REPO / "evals" / "results" / "zoo" / "default" / "runs_items.jsonl.gz"
LOSSES = ("dpo", "cdpo", "slic", "ipo")
FIRST_SEED = 100
BANK_SIZES = (32, 64)
SETTINGS: dict[str, dict] = {
    "default (1 sample, lr 2e-4 × 100 steps)": {},
    "4 samples per prompt": {"task": {"eval_samples_per_prompt": 4}},
    "lr 1e-4 × 100 steps": {"train": {"learning_rate": 1e-4}},
    "lr 2e-4 × 50 steps": {"train": {"max_steps": 50}},
    "lr 4e-4 × 50 steps": {"train": {"learning_rate": 4e-4, "max_steps": 50}},
}
"""The settings compared; each changes one thing (or trades steps against the learning rate)."""


def chosen_betas() -> dict[str, float]:
    """Per loss, the β in the default screen's grid with the best mean score on the zoo's seeds 0–1 (the
    default screen's own seeds): what the agent's evaluation would fix it at."""
    fit = FitnessConfig()
    sums: dict[tuple[str, float], list[float]] = {}
    with gzip.open(ZOO_ITEMS, "rt") as fh:
        for line in fh:
            r = json.loads(line)
            if r["loss"] in LOSSES and float(r["beta"]) in SCREEN_BETAS and int(r["seed"]) < 2:
                score = (
                    float(np.mean(np.asarray(r["rewards"]) - fit.kl_penalty * np.asarray(r["kls"])))
                    if r["status"] == "ok"
                    else fit.failure_score
                )
                sums.setdefault((r["loss"], float(r["beta"])), []).append(score)
    return {loss: max(SCREEN_BETAS, key=lambda b: np.mean(sums[(loss, b)])) for loss in LOSSES}


def spec_for(change: dict) -> SweepSpec:
    task = ToyTaskConfig().model_copy(update=change.get("task", {}))
    train = ToyTrainSettings().model_copy(update=change.get("train", {}))
    return SweepSpec(betas=list(SCREEN_BETAS), seeds=[0], task=task, train=train)


def train(seeds: list[int], betas: dict[str, float]) -> list[dict]:
    rows: list[dict] = []
    for label, change in SETTINGS.items():
        spec = spec_for(change)
        jobs = [
            SweepJob(loss=loss, code=get_zoo_loss(loss).code, beta=betas[loss], seed=s)
            for loss in LOSSES
            for s in seeds
        ]
        start = time.perf_counter()

        def progress(run: RunResult, done: int, total: int, label: str = label, start: float = start) -> None:
            if done % 8 == 0 or done == total:
                print(f"  [{label}] {done}/{total} runs, {time.perf_counter() - start:.0f} s", flush=True)

        with SweepPool(spec, cache_dir()) as pool:
            runs = pool.run_jobs(jobs, progress)
        wall = time.perf_counter() - start
        for run in runs:
            row = run.model_dump(mode="json")
            row |= {"setting": label, "wall_per_run": wall / len(runs) * spec.workers}
            rows.append(row)
    return rows


def seed_score(row: dict, fit: FitnessConfig) -> float:
    if row["status"] != "ok":
        return fit.failure_score
    return float(np.mean(np.asarray(row["rewards"]) - fit.kl_penalty * np.asarray(row["kls"])))


def analyse(rows: list[dict]) -> dict:
    fit = FitnessConfig()
    race = RaceConfig()
    z_need = _z(1 - race.alpha / race.candidate_budget) + _z(0.8)  # one look at the run-level bar, 80% power
    out: dict[str, dict] = {}
    for label in SETTINGS:
        mine = [r for r in rows if r["setting"] == label]
        if not mine:
            continue
        seeds = sorted({r["seed"] for r in mine})
        by_key = {(r["loss"], r["seed"]): r for r in mine}
        score = {loss: np.array([seed_score(by_key[(loss, s)], fit) for s in seeds]) for loss in LOSSES}
        n = len(seeds)
        single_var = float(np.mean([v.var(ddof=1) for v in score.values()]))
        pair_vars, rhos, effects = [], [], {}
        for a, b in itertools.combinations(LOSSES, 2):
            d = score[a] - score[b]
            pair_vars.append(float(d.var(ddof=1)))
            rhos.append(float(np.corrcoef(score[a], score[b])[0, 1]))
            effects[f"{a}-{b}"] = {"diff": float(d.mean()), "sd": float(d.std(ddof=1))}
        sigma = math.sqrt(float(np.mean(pair_vars)))
        means = {loss: float(v.mean()) for loss, v in score.items()}
        signal = float(np.std(list(means.values()), ddof=1))
        s_run = float(np.mean([r["wall_per_run"] for r in mine]))
        seeds_002 = (z_need * sigma / 0.02) ** 2
        dpo_sd = float(score["dpo"].std(ddof=1))
        bank = {
            f"se_at_{m}": {
                "paired": sigma / math.sqrt(m),
                **{f"bank_{b}": math.sqrt(single_var / m + dpo_sd**2 / b) for b in BANK_SIZES},
            }
            for m in (2, 8, 32)
        }
        out[label] = {
            "n_seeds": n,
            "sigma_paired": sigma,
            "sigma_single": math.sqrt(single_var),
            "rho_mean": float(np.mean(rhos)),
            "loss_means": means,
            "loss_sds": {loss: float(v.std(ddof=1)) for loss, v in score.items()},
            "failed_runs": sum(r["status"] != "ok" for r in mine),
            "signal_sd_of_means": signal,
            "seconds_per_run": s_run,
            "seeds_for_0.02_at_80pct": seeds_002,
            "seconds_for_0.02": seeds_002 * s_run,
            "relative_cost": (sigma / signal) ** 2 * s_run if signal > 0 else None,
            "pairs": effects,
            "bank": bank,
        }
    return out


def _z(p: float) -> float:
    from statistics import NormalDist

    return NormalDist().inv_cdf(p)


def render(summary: dict, betas: dict[str, float]) -> str:
    base = next(iter(summary.values()))
    lines = [
        "# Variance levers (evals/bench_variance_levers.py)",
        "",
        f"{base['n_seeds']} fresh seeds ({FIRST_SEED}…), losses {', '.join(LOSSES)} at fixed β "
        + ", ".join(f"{k} {v:g}" for k, v in betas.items())
        + " (the default screen's choice on the zoo's seeds 0–1). σ: per-seed sd of a paired difference, "
        "pooled over the six pairs; signal: the sd of the four losses' means; relative cost: (σ/signal)² × "
        "seconds per run, the training time that resolves the same relative difference (lower is better); "
        "seeds for +0.02: one look at the run-level bar (α 0.05 over 50 candidates), 80% power.",
        "",
        "| setting | σ paired | σ one loss | ρ | signal | s/run | relative cost | seeds for +0.02 | failed |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for label, s in summary.items():
        rel = f"{s['relative_cost']:.1f}" if s["relative_cost"] is not None else "—"
        lines.append(
            f"| {label} | {s['sigma_paired']:.4f} | {s['sigma_single']:.4f} | {s['rho_mean']:+.2f} | "
            f"{s['signal_sd_of_means']:.4f} | {s['seconds_per_run']:.1f} | {rel} | "
            f"{s['seeds_for_0.02_at_80pct']:.0f} | {s['failed_runs']} |"
        )
    lines += [
        "",
        "Each loss's mean (sd) per setting:",
        "",
        "| setting | " + " | ".join(LOSSES) + " |",
        "|---|" + "---|" * len(LOSSES),
    ]
    for label, s in summary.items():
        cells = [f"{s['loss_means'][k]:.3f} ({s['loss_sds'][k]:.3f})" for k in LOSSES]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    pairs = list(base["pairs"])
    lines += [
        "",
        "Each pair's effect per seed, |mean difference| / sd of the per-seed difference (higher: fewer "
        "seeds tell the pair apart; seeds needed scale as its inverse square), and that squared per second "
        "of a run (per-second efficiency, the default's = 1):",
        "",
        "| setting | " + " | ".join(pairs) + " | efficiency (median over pairs) |",
        "|---|" + "---|" * (len(pairs) + 1),
    ]
    base_rate = {k: (v["diff"] / v["sd"]) ** 2 / base["seconds_per_run"] for k, v in base["pairs"].items()}
    for label, s in summary.items():
        effect = {k: abs(v["diff"]) / v["sd"] for k, v in s["pairs"].items()}
        ratio = [effect[k] ** 2 / s["seconds_per_run"] / base_rate[k] for k in pairs if base_rate[k] > 0]
        s["efficiency_vs_default"] = float(np.median(ratio))
        cells = " | ".join(f"{effect[k]:.2f}" for k in pairs)
        lines.append(f"| {label} | {cells} | {s['efficiency_vs_default']:.2f} |")
    lines += [
        "",
        "Standard error of a candidate's difference to DPO after n seeds: paired on the same seeds, or its "
        "seed mean against a DPO bank of B seeds:",
        "",
        "| setting | n | paired | " + " | ".join(f"bank {b}" for b in BANK_SIZES) + " |",
        "|---|---|---|" + "---|" * len(BANK_SIZES),
    ]
    for label, s in summary.items():
        for key, se in s["bank"].items():
            cells = " | ".join(f"{se[f'bank_{b}']:.4f}" for b in BANK_SIZES)
            lines.append(f"| {label} | {key.removeprefix('se_at_')} | {se['paired']:.4f} | {cells} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=16)
    ap.add_argument("--reuse", action="store_true", help="re-analyse the saved runs instead of training")
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    betas = chosen_betas()
    runs_path = OUT / "runs.jsonl.gz"
    if args.reuse:
        with gzip.open(runs_path, "rt") as fh:
            rows = [json.loads(line) for line in fh]
    else:
        print(f"β per loss: {betas}", flush=True)
        rows = train(list(range(FIRST_SEED, FIRST_SEED + args.seeds)), betas)
        with gzip.open(runs_path, "wt") as fh:
            for row in rows:
                fh.write(json.dumps(row) + "\n")
    summary = analyse(rows)
    (OUT / "report.md").write_text(render(summary, betas))  # adds each setting's efficiency_vs_default
    (OUT / "summary.json").write_text(json.dumps({"betas": betas, "settings": summary}, indent=2) + "\n")
    print((OUT / "report.md").read_text())


if __name__ == "__main__":
    main()
