"""A loss benchmark: run a sweep, score it, and write the table, JSON, CSV and reward–KL plot."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

from pydantic import BaseModel

from targets.dpo.fitness import LossFitness, RunResult, compute_fitness
from targets.dpo.sweep import ProgressFn, SweepSpec, run_sweep

BASELINE = "dpo"


class BenchReport(BaseModel):
    spec: SweepSpec
    losses: list[str]
    fitness: dict[str, LossFitness]
    runs: list[RunResult]
    seconds: float
    """Wall clock of the whole benchmark, including start-up and the one-time task build."""
    seconds_per_loss: float
    """Wall clock of the sweep divided by the number of losses: the cost of one candidate's fitness."""

    def summary(self) -> dict:
        """The JSON document of `disco bench losses --json`: per-run arrays left out."""
        return {
            "losses": self.losses,
            "betas": self.spec.betas,
            "seeds": self.spec.seeds,
            "kl_penalty": self.spec.fitness.kl_penalty,
            "aggregate": self.spec.fitness.aggregate,
            "seconds": round(self.seconds, 2),
            "seconds_per_loss": round(self.seconds_per_loss, 2),
            "results": {name: self.fitness[name].model_dump() for name in self.losses},
            "runs": [
                r.model_dump(exclude={"rewards", "kls"})
                | {"mean_reward": r.mean_reward, "mean_kl": r.mean_kl}
                for r in self.runs
            ],
        }


def run_bench(
    losses: dict[str, str], spec: SweepSpec, cache_dir: Path, progress: ProgressFn | None = None
) -> BenchReport:
    """Run `losses` (name → candidate code); DPO is added as the paired baseline when missing."""
    from targets.dpo.zoo import get_zoo_loss

    to_run = dict(losses)
    if BASELINE not in to_run:
        to_run[BASELINE] = get_zoo_loss(BASELINE).code
    start = time.perf_counter()
    runs = run_sweep(to_run, spec, cache_dir, progress=progress)
    seconds = time.perf_counter() - start
    by_loss = {name: [r for r in runs if r.loss == name] for name in to_run}
    fitness = compute_fitness(by_loss, spec.fitness, baseline=BASELINE)
    return BenchReport(
        spec=spec,
        losses=list(to_run),
        fitness=fitness,
        runs=runs,
        seconds=seconds,
        seconds_per_loss=seconds / len(to_run),
    )


def write_outputs(report: BenchReport, out_dir: Path) -> list[Path]:
    """runs.csv (one row per run), summary.json, and frontier.png; returns the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path = out_dir / "runs.csv"
    with csv_path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(
            [
                "loss",
                "beta",
                "seed",
                "status",
                "mean_reward",
                "mean_kl",
                "steps",
                "train_seconds",
                "eval_seconds",
                "reason",
            ]
        )
        for r in report.runs:
            writer.writerow(
                [
                    r.loss,
                    r.beta,
                    r.seed,
                    r.status,
                    r.mean_reward,
                    r.mean_kl,
                    r.steps,
                    round(r.train_seconds, 3),
                    round(r.eval_seconds, 3),
                    r.reason or "",
                ]
            )
    json_path = out_dir / "summary.json"
    json_path.write_text(json.dumps(report.summary(), indent=2))
    png_path = out_dir / "frontier.png"
    plot_frontier(report.fitness, png_path)
    return [csv_path, json_path, png_path]


def plot_frontier(fitness: dict[str, LossFitness], path: Path, title: str = "Reward–KL frontier") -> None:
    """One line per loss through its β points (KL on x, reward on y), as in the paper's IMDb figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5.5), dpi=120)
    colors = plt.get_cmap("tab20").colors
    markers = "osD^v<>pP*Xh"
    for i, (name, fit) in enumerate(fitness.items()):
        pts = [(p.kl, p.reward, p.beta) for p in fit.frontier if p.reward is not None and p.kl is not None]
        if not pts:
            continue
        pts.sort(key=lambda p: p[2])  # along β, so the line traces the trade-off
        xs, ys, _ = zip(*pts, strict=True)
        label = f"{name} ({fit.fitness.value:+.3f})"
        ax.plot(
            xs,
            ys,
            marker=markers[i % len(markers)],
            color=colors[i % len(colors)],
            ms=4,
            lw=2.5 if name == BASELINE else 1.2,
            label=label,
        )
        for x, y, b in pts:
            ax.annotate(f"{b:g}", (x, y), fontsize=6, alpha=0.6, xytext=(2, 2), textcoords="offset points")
    ax.set_xlabel("KL(π ‖ π_ref) [nats]")
    ax.set_ylabel("mean exact reward")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(
        fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), title="loss (fitness)", title_fontsize=7
    )
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
