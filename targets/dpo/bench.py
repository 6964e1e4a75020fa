"""A loss benchmark: run a sweep, score it, and write the table, JSON, CSV and reward–KL plot.

The default protocol (`fresh`) never scores the seeds that chose β: each loss's β is chosen over the grid
on screening seeds (SCREEN_SEED_BASE and up), then the loss is trained at that β on the scoring seeds and
compared with DPO (at DPO's chosen β) seed by seed (targets.racing.compare_to_baseline). `in-sample` is
the former protocol, max over β on the same seeds that score it, kept to compare with old results: it
overstates a loss (evals/results/fitness_calibration).
"""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from targets.dpo.fitness import (
    SCREEN_SEEDS,
    TOY_SIGMA_PER_SEED,
    LossFitness,
    RunResult,
    chosen_beta,
    compute_fitness,
    fixed_beta_fitness,
    frontier,
    seed_item_scores,
)
from targets.dpo.sweep import ProgressFn, SweepJob, SweepPool, SweepSpec
from targets.racing import Comparison, RaceConfig, compare_to_baseline, seed_differences

BASELINE = "dpo"
Protocol = Literal["fresh", "in-sample"]
SCREEN_SEED_BASE = 1000
"""Screening seeds (β choice) are 1000, 1001, …: disjoint from the scoring seeds 0, 1, …"""


class BenchReport(BaseModel):
    spec: SweepSpec
    losses: list[str]
    fitness: dict[str, LossFitness]
    runs: list[RunResult]
    seconds: float
    """Wall clock of the whole benchmark, including start-up and the one-time task build."""
    seconds_per_loss: float
    """Wall clock of the sweep divided by the number of losses: the cost of one candidate's fitness."""
    protocol: Protocol = "fresh"
    screen_seeds: list[int] = Field(default_factory=list)
    """The seeds β was chosen on (fresh protocol with more than one β): never scored."""
    chosen_beta: dict[str, float] = Field(default_factory=dict)
    vs_dpo: dict[str, Comparison] = Field(default_factory=dict)
    """Each loss against DPO on the scoring seeds, with its verdict (fresh protocol)."""
    race: RaceConfig | None = None

    def summary(self) -> dict:
        """The JSON document of `disco bench losses --json`: per-run arrays left out."""
        results = {}
        for name in self.losses:
            entry = self.fitness[name].model_dump()
            if self.protocol == "fresh":
                entry.pop("vs_baseline", None)  # the bootstrap of the old protocol: vs_dpo replaces it
                entry["beta"] = self.chosen_beta.get(name)
                entry["vs_dpo"] = self.vs_dpo[name].model_dump() if name in self.vs_dpo else None
            results[name] = entry
        protocol: dict = {"name": self.protocol, "scoring_seeds": self.spec.seeds}
        if self.protocol == "fresh":
            protocol |= {
                "screen_seeds": self.screen_seeds,
                "beta": "chosen per loss on the screening seeds" if self.screen_seeds else "fixed",
                "sigma_per_seed": self.race.sigma if self.race else None,
                "q": self.race.q if self.race else None,
                "confidence": self.race.confidence if self.race else None,
            }
        return {
            "losses": self.losses,
            "protocol": protocol,
            "betas": self.spec.betas,
            "seeds": self.spec.seeds,
            "kl_penalty": self.spec.fitness.kl_penalty,
            "aggregate": self.spec.fitness.aggregate if self.protocol == "in-sample" else None,
            "seconds": round(self.seconds, 2),
            "seconds_per_loss": round(self.seconds_per_loss, 2),
            "results": results,
            "runs": [
                r.model_dump(exclude={"rewards", "kls"})
                | {"mean_reward": r.mean_reward, "mean_kl": r.mean_kl}
                for r in self.runs
            ],
        }


def run_bench(
    losses: dict[str, str],
    spec: SweepSpec,
    cache_dir: Path,
    progress: ProgressFn | None = None,
    protocol: Protocol = "fresh",
    screen_seeds: int = SCREEN_SEEDS,
) -> BenchReport:
    """Run `losses` (name → candidate code); DPO is added as the paired baseline when missing."""
    from targets.dpo.zoo import get_zoo_loss

    to_run = dict(losses)
    if BASELINE not in to_run:
        to_run[BASELINE] = get_zoo_loss(BASELINE).code
    start = time.perf_counter()
    with SweepPool(spec, cache_dir) as pool:
        if protocol == "in-sample":
            runs = pool.run(to_run, progress)
            seconds = time.perf_counter() - start
            by_loss = {name: [r for r in runs if r.loss == name] for name in to_run}
            return BenchReport(
                spec=spec,
                losses=list(to_run),
                fitness=compute_fitness(by_loss, spec.fitness, baseline=BASELINE),
                runs=runs,
                seconds=seconds,
                seconds_per_loss=seconds / len(to_run),
                protocol="in-sample",
            )
        screen = [SCREEN_SEED_BASE + i for i in range(screen_seeds)] if len(spec.betas) > 1 else []
        screened: list[RunResult] = []
        betas = dict.fromkeys(to_run, spec.betas[0])
        if screen:
            jobs = [
                SweepJob(loss=name, code=code, beta=beta, seed=seed)
                for name, code in to_run.items()
                for beta in spec.betas
                for seed in screen
            ]
            screened = pool.run_jobs(jobs, progress)
            for name in to_run:
                betas[name] = chosen_beta(frontier([r for r in screened if r.loss == name], spec.fitness))
        jobs = [
            SweepJob(loss=name, code=code, beta=betas[name], seed=seed)
            for name, code in to_run.items()
            for seed in spec.seeds
        ]
        scored = pool.run_jobs(jobs, progress)
    seconds = time.perf_counter() - start
    return score_fresh(to_run, spec, screened, scored, screen, betas, seconds, cache_dir)


def score_fresh(
    names: dict[str, str],
    spec: SweepSpec,
    screened: list[RunResult],
    scored: list[RunResult],
    screen: list[int],
    betas: dict[str, float],
    seconds: float,
    cache_dir: Path | None = None,
) -> BenchReport:
    """Fitness from the scoring runs at each loss's chosen β, and each loss against DPO seed by seed; σ is
    the pilot's measured for this instrument in `cache_dir` (`disco bench sigma`), else the default's."""
    from targets.dpo.sigma import race_sigma

    cfg = spec.fitness
    # No pilot for this instrument (another β grid, a pilot's own comparisons): the default task's σ, an
    # approximation the pilot (`disco bench sigma`) replaces.
    race = RaceConfig(sigma=race_sigma(cache_dir, spec) or TOY_SIGMA_PER_SEED)
    n_items = max((len(r.rewards) for r in scored if r.status == "ok"), default=spec.task.n_eval_prompts)
    by_loss = {name: [r for r in scored if r.loss == name] for name in names}
    items = {
        name: seed_item_scores(runs, betas[name], cfg, n_items=n_items) for name, runs in by_loss.items()
    }
    fitness = {}
    for name, runs in by_loss.items():
        fit = fixed_beta_fitness(runs, by_loss[BASELINE], cfg)
        shown = [r for r in screened if r.loss == name] or runs
        fitness[name] = fit.model_copy(update={"loss": name, "frontier": frontier(shown, cfg)})
    diffs = {name: seed_differences(items[name], items[BASELINE]) for name in names if name != BASELINE}
    return BenchReport(
        spec=spec,
        losses=list(names),
        fitness=fitness,
        runs=screened + scored,
        seconds=seconds,
        seconds_per_loss=seconds / len(names),
        protocol="fresh",
        screen_seeds=screen,
        chosen_beta=betas,
        vs_dpo=compare_to_baseline(diffs, race),
        race=race,
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
    colors = plt.get_cmap("tab20")  # a listed map: colors(k) is its k-th colour, for k < colors.N
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
            color=colors(i % colors.N),
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
