"""Benchmark of the DPO-loss target's fitness: the whole zoo, the full β grid, and how well it ranks.

Writes under evals/results/zoo/:
  default/    runs.csv, summary.json, frontier.png, runs_items.jsonl.gz — the default sweep, more seeds
  full_grid/  the same for every zoo loss over the paper's β grid
  report.md, report.json — each loss's paired fitness difference to DPO with its CI, which classic
  losses the task separates from each other (fitness = mean over β, and = best β), and seconds per
  candidate fitness.

Run: .venv/bin/python evals/bench_zoo.py [--seeds-full 2] [--seeds-default 4] [--losses a,b]
     [--reuse-default] [--reuse-full]   (re-analyse saved runs instead of training again)
It is a benchmark, not a test: it takes about half an hour on 2 cores.
"""

from __future__ import annotations

import argparse
import gzip
import itertools
import json
import time
from pathlib import Path

from agent.home import cache_dir
from targets.dpo.bench import BASELINE, BenchReport, plot_frontier, write_outputs
from targets.dpo.fitness import (
    FULL_BETA_GRID,
    PairedComparison,
    RunResult,
    compute_fitness,
    pairwise_separation,
)
from targets.dpo.sweep import SweepSpec, run_sweep
from targets.dpo.zoo import list_zoo

CLASSIC = ["dpo", "cdpo", "ipo", "slic", "robust_dpo", "kto_pair"]
OUT = Path(__file__).parent / "results" / "zoo"


def sweep(losses: dict[str, str], spec: SweepSpec, label: str) -> tuple[list[RunResult], float]:
    start = time.perf_counter()

    def progress(run: RunResult, done: int, total: int) -> None:
        if done % 10 == 0 or done == total:
            print(f"  [{label}] {done}/{total} runs, {time.perf_counter() - start:.0f} s", flush=True)

    runs = run_sweep(losses, spec, cache_dir(), progress=progress)
    return runs, time.perf_counter() - start


def report_for(runs: list[RunResult], spec: SweepSpec, names: list[str], seconds: float) -> BenchReport:
    by_loss = {n: [r for r in runs if r.loss == n] for n in names}
    fitness = compute_fitness(by_loss, spec.fitness, baseline=BASELINE)
    return BenchReport(
        spec=spec,
        losses=names,
        fitness=fitness,
        runs=runs,
        seconds=seconds,
        seconds_per_loss=seconds / len(names),
        protocol="in-sample",
    )


def save_runs(runs: list[RunResult], path: Path) -> None:
    """Every run with its per-prompt rewards and KLs (rounded), so the analysis can be redone offline."""
    with gzip.open(path, "wt") as fh:
        for r in runs:
            doc = r.model_dump()
            doc["rewards"] = [round(x, 4) for x in r.rewards]
            doc["kls"] = [round(x, 4) for x in r.kls]
            fh.write(json.dumps(doc) + "\n")


def load_runs(path: Path) -> list[RunResult]:
    with gzip.open(path, "rt") as fh:
        return [RunResult(**json.loads(line)) for line in fh]


def largest_separated_group(pairs: dict[tuple[str, str], PairedComparison], names: list[str]) -> list[str]:
    """The largest set of losses whose every pairwise difference has a CI excluding zero."""

    def separated(a: str, b: str) -> bool:
        return (pairs[(a, b)] if (a, b) in pairs else pairs[(b, a)]).separated

    for size in range(len(names), 1, -1):
        for group in itertools.combinations(names, size):
            if all(separated(a, b) for a, b in itertools.combinations(group, 2)):
                return list(group)
    return []


def classic_analysis(runs: list[RunResult], names: list[str], spec: SweepSpec) -> dict:
    """Pairwise paired differences among the classic losses, for both ways of aggregating over β."""
    classic = [n for n in CLASSIC if n in names]
    by_loss = {n: [r for r in runs if r.loss == n] for n in classic}
    out = {}
    for aggregate in ("mean", "max"):
        cfg = spec.fitness.model_copy(update={"aggregate": aggregate})
        pairs = pairwise_separation(by_loss, classic, cfg)
        fits = compute_fitness(by_loss, cfg, baseline=None)
        out[aggregate] = {
            "pairs": {f"{a} - {b}": p.model_dump() for (a, b), p in pairs.items()},
            "largest_separated_group": largest_separated_group(pairs, classic),
            "fitness": {n: f.fitness.model_dump() for n, f in fits.items()},
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds-full", type=int, default=2)
    parser.add_argument("--seeds-default", type=int, default=4)
    parser.add_argument("--losses", default=",".join(z.name for z in list_zoo()))
    parser.add_argument("--reuse-default", action="store_true", help="re-analyse the saved default runs")
    parser.add_argument("--reuse-full", action="store_true", help="keep the full-grid results of report.json")
    parser.add_argument(
        "--classic-seeds",
        type=int,
        default=0,
        help="train the classic losses on more seeds for their pairwise study",
    )
    args = parser.parse_args()

    zoo = {z.name: z.code for z in list_zoo()}
    names = [n.strip() for n in args.losses.split(",") if n.strip()]
    losses = {n: zoo[n] for n in names}
    OUT.mkdir(parents=True, exist_ok=True)
    previous = json.loads((OUT / "report.json").read_text()) if (OUT / "report.json").exists() else {}
    result: dict = {"losses": names}

    default = SweepSpec(seeds=list(range(args.seeds_default)))
    items = OUT / "default" / "runs_items.jsonl.gz"
    if args.reuse_default and items.exists():
        runs, seconds = load_runs(items), previous["default"]["seconds"]
    else:
        print(f"default sweep: β={default.betas}, seeds={default.seeds}, {len(names)} losses", flush=True)
        runs, seconds = sweep(losses, default, "default")
    rep = report_for(runs, default, names, seconds)
    write_outputs(rep, OUT / "default")
    save_runs(runs, items)
    plot_frontier(rep.fitness, OUT / "default" / "frontier.png", title="Reward–KL, default sweep")
    result["default"] = {
        "betas": default.betas,
        "seeds": default.seeds,
        "kl_penalty": default.fitness.kl_penalty,
        "aggregate": default.fitness.aggregate,
        "workers": default.workers,
        "seconds": seconds,
        "seconds_per_candidate": seconds / len(names) * 2 / len(default.seeds),
        "fitness": {n: rep.fitness[n].fitness.model_dump() for n in names},
        "vs_dpo": {n: rep.fitness[n].vs_baseline.model_dump() for n in names if rep.fitness[n].vs_baseline},
        "failed_runs": {n: sum(r.status != "ok" for r in runs if r.loss == n) for n in names},
    }
    classic_runs = [r for r in runs if r.loss in CLASSIC]
    if args.classic_seeds > len(default.seeds):
        extra_seeds = list(range(len(default.seeds), args.classic_seeds))
        extra_items = OUT / "default" / "classic_extra_items.jsonl.gz"
        extra = load_runs(extra_items) if args.reuse_default and extra_items.exists() else []
        if {r.seed for r in extra} != set(extra_seeds):
            spec = SweepSpec(seeds=extra_seeds)
            print(f"classic losses on extra seeds {extra_seeds}", flush=True)
            extra, _ = sweep({n: losses[n] for n in CLASSIC if n in losses}, spec, "classic")
            save_runs(extra, extra_items)
        classic_runs += extra
    classic_seeds = sorted({r.seed for r in classic_runs})
    result["classic"] = classic_analysis(
        classic_runs, names, default.model_copy(update={"seeds": classic_seeds})
    )
    result["classic"]["seeds"] = classic_seeds

    full = SweepSpec(betas=list(FULL_BETA_GRID), seeds=list(range(args.seeds_full)))
    full_items = OUT / "full_grid" / "runs_items.jsonl.gz"
    if args.reuse_full and full_items.exists():
        runs_full, seconds_full = load_runs(full_items), previous["full_grid"]["seconds"]
    else:
        print(f"full grid: β={full.betas}, seeds={full.seeds}", flush=True)
        runs_full, seconds_full = sweep(losses, full, "full")
    rep_full = report_for(runs_full, full, names, seconds_full)
    write_outputs(rep_full, OUT / "full_grid")
    save_runs(runs_full, full_items)
    result["full_grid"] = {
        "betas": full.betas,
        "seeds": full.seeds,
        "seconds": seconds_full,
        "fitness": {n: rep_full.fitness[n].fitness.model_dump() for n in names},
        "failed_runs": {n: sum(r.status != "ok" for r in runs_full if r.loss == n) for n in names},
    }

    (OUT / "report.json").write_text(json.dumps(result, indent=2))
    (OUT / "report.md").write_text(render_markdown(result))
    print((OUT / "report.md").read_text())


def _interval(f: dict) -> str:
    return f"[{f['ci_low']:+.4f}, {f['ci_high']:+.4f}]"


def render_markdown(result: dict) -> str:
    d = result["default"]
    lines = [
        "# Zoo benchmark of the DPO-loss fitness",
        "",
        f"Default sweep: β = {d['betas']}, seeds = {d['seeds']}; fitness = {d['aggregate']} over β of "
        f"reward − {d['kl_penalty']}·KL; 95% CI by a seeded bootstrap over seeds × prompts, paired with "
        "DPO on the same seeds and prompts. A failed run (NaN, degenerate text) scores the reward floor, −1.",
        "",
        f"Wall clock: {d['seconds']:.0f} s for {len(result['losses'])} losses × {len(d['betas'])} β × "
        f"{len(d['seeds'])} seeds on {d['workers']} worker processes: "
        f"**{d['seconds_per_candidate']:.0f} s per candidate fitness** at the default 2 seeds "
        "(scaled from this run; the machine was shared with other work).",
        "",
        "| loss | fitness | 95% CI | − DPO | 95% CI of the difference | separated from DPO | failed runs |",
        "|---|---:|---:|---:|---:|:---:|---:|",
    ]
    for n in sorted(result["losses"], key=lambda n: -d["fitness"][n]["value"]):
        f, v = d["fitness"][n], d["vs_dpo"].get(n)
        diff = f"{v['diff']['value']:+.4f}" if v else "—"
        ci = _interval(v["diff"]) if v else "—"
        sep = ("yes" if v["separated"] else "no") if v else "baseline"
        lines.append(
            f"| {n} | {f['value']:+.4f} | {_interval(f)} | {diff} | {ci} | {sep} | {d['failed_runs'][n]} |"
        )
    for aggregate, title in (("max", "best β of each loss"), ("mean", "mean over β")):
        c = result["classic"][aggregate]
        lines += [
            "",
            f"## Classic losses, paired differences (row − column), fitness = {title}, "
            f"seeds {result['classic']['seeds']}",
            "",
            "| pair | difference | 95% CI | separated |",
            "|---|---:|---:|:---:|",
        ]
        for pair, p in c["pairs"].items():
            lines.append(
                f"| {pair} | {p['diff']['value']:+.4f} | {_interval(p['diff'])} | "
                f"{'yes' if p['separated'] else 'no'} |"
            )
        group = c["largest_separated_group"]
        lines += [
            "",
            f"Largest group separated pairwise beyond their CIs: **{', '.join(group) or 'none'}** "
            f"({len(group)}).",
        ]
    if "full_grid" in result:
        fg = result["full_grid"]
        lines += [
            "",
            f"## Full β grid {fg['betas']}, seeds {fg['seeds']} ({fg['seconds']:.0f} s)",
            "",
            "| loss | fitness | 95% CI | failed runs |",
            "|---|---:|---:|---:|",
        ]
        for n in sorted(result["losses"], key=lambda n: -fg["fitness"][n]["value"]):
            f = fg["fitness"][n]
            lines.append(f"| {n} | {f['value']:+.4f} | {_interval(f)} | {fg['failed_runs'][n]} |")
        lines += ["", "![full grid](full_grid/frontier.png)"]
    lines += ["", "![default sweep](default/frontier.png)", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
