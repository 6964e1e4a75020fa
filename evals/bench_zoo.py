"""Benchmark of the DPO-loss target's fitness: the whole zoo, the full β grid, and how well it ranks.

Writes under evals/results/zoo/:
  full_grid/  runs.csv, summary.json, frontier.png  — every zoo loss over the paper's β grid
  default/    runs.csv, summary.json, frontier.png  — the default sweep with more seeds
  report.md, report.json — each loss's paired fitness difference to DPO with its CI, which of the
  classic losses the task separates from each other, and seconds per candidate fitness.

Run: .venv/bin/python evals/bench_zoo.py [--seeds-full 2] [--seeds-default 4] [--losses a,b]
It is a benchmark, not a test: it takes tens of minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

from agent.home import cache_dir
from targets.dpo.bench import BASELINE, BenchReport, plot_frontier, write_outputs
from targets.dpo.fitness import FULL_BETA_GRID, RunResult, compute_fitness, pairwise_separation
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
    )


def largest_separated_group(pairs: dict, names: list[str]) -> list[str]:
    """The largest set of losses whose every pairwise difference has a CI excluding zero."""
    for size in range(len(names), 1, -1):
        for group in itertools.combinations(names, size):
            if all(
                pairs[(a, b)].separated if (a, b) in pairs else pairs[(b, a)].separated
                for a, b in itertools.combinations(group, 2)
            ):
                return list(group)
    return []


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds-full", type=int, default=2)
    parser.add_argument("--seeds-default", type=int, default=4)
    parser.add_argument("--losses", default=",".join(z.name for z in list_zoo()))
    parser.add_argument("--skip-full", action="store_true", help="only the default-setting study")
    args = parser.parse_args()

    zoo = {z.name: z.code for z in list_zoo()}
    names = [n.strip() for n in args.losses.split(",") if n.strip()]
    losses = {n: zoo[n] for n in names}
    OUT.mkdir(parents=True, exist_ok=True)
    result: dict = {"losses": names}

    default = SweepSpec(seeds=list(range(args.seeds_default)))
    print(f"default sweep: β={default.betas}, seeds={default.seeds}, {len(names)} losses", flush=True)
    runs, seconds = sweep(losses, default, "default")
    rep = report_for(runs, default, names, seconds)
    write_outputs(rep, OUT / "default")
    plot_frontier(rep.fitness, OUT / "default" / "frontier.png", title="Reward–KL, default sweep")
    result["default"] = {
        "betas": default.betas,
        "seeds": default.seeds,
        "kl_penalty": default.fitness.kl_penalty,
        "workers": default.workers,
        "seconds": seconds,
        "seconds_per_candidate": seconds / len(names) * len(default.seeds) / 2,
        "fitness": {n: rep.fitness[n].fitness.model_dump() for n in names},
        "vs_dpo": {n: rep.fitness[n].vs_baseline.model_dump() for n in names if rep.fitness[n].vs_baseline},
    }
    classic = [n for n in CLASSIC if n in names]
    pairs = pairwise_separation(
        {n: [r for r in runs if r.loss == n] for n in classic}, classic, default.fitness
    )
    result["classic_pairs"] = {f"{a} - {b}": p.model_dump() for (a, b), p in pairs.items()}
    result["largest_separated_group"] = largest_separated_group(pairs, classic)

    if not args.skip_full:
        full = SweepSpec(betas=list(FULL_BETA_GRID), seeds=list(range(args.seeds_full)))
        print(f"full grid: β={full.betas}, seeds={full.seeds}", flush=True)
        runs_full, seconds_full = sweep(losses, full, "full")
        rep_full = report_for(runs_full, full, names, seconds_full)
        write_outputs(rep_full, OUT / "full_grid")
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


def render_markdown(result: dict) -> str:
    d = result["default"]
    lines = [
        "# Zoo benchmark of the DPO-loss fitness",
        "",
        f"Default sweep: β = {d['betas']}, seeds = {d['seeds']}, fitness = mean over β of reward − "
        f"{d['kl_penalty']}·KL, 95% CI by a seeded bootstrap over seeds × prompts, paired with DPO.",
        "",
        f"Wall clock: {d['seconds']:.0f} s for {len(result['losses'])} losses on {d['workers']} workers; "
        f"**{d['seconds_per_candidate']:.0f} s per candidate fitness** at the default 2 seeds "
        "(scaled from this run's seed count).",
        "",
        "| loss | fitness | 95% CI | − DPO | 95% CI of the difference | separated from DPO |",
        "|---|---:|---:|---:|---:|:---:|",
    ]
    for n in sorted(result["losses"], key=lambda n: -d["fitness"][n]["value"]):
        f = d["fitness"][n]
        v = d["vs_dpo"].get(n)
        diff = f"{v['diff']['value']:+.4f}" if v else "—"
        ci = f"[{v['diff']['ci_low']:+.4f}, {v['diff']['ci_high']:+.4f}]" if v else "—"
        sep = ("yes" if v["separated"] else "no") if v else "baseline"
        lines.append(
            f"| {n} | {f['value']:+.4f} | [{f['ci_low']:+.4f}, {f['ci_high']:+.4f}] | {diff} | {ci} | {sep} |"
        )
    lines += [
        "",
        "## Classic losses, pairwise (row − column)",
        "",
        "| pair | difference | 95% CI | separated |",
        "|---|---:|---:|:---:|",
    ]
    for pair, p in result["classic_pairs"].items():
        lines.append(
            f"| {pair} | {p['diff']['value']:+.4f} | [{p['diff']['ci_low']:+.4f}, "
            f"{p['diff']['ci_high']:+.4f}] | {'yes' if p['separated'] else 'no'} |"
        )
    group = result["largest_separated_group"]
    lines += [
        "",
        f"Largest group of classic losses separated pairwise beyond their CIs: "
        f"**{', '.join(group) if group else 'none'}** ({len(group)}).",
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
            lines.append(
                f"| {n} | {f['value']:+.4f} | [{f['ci_low']:+.4f}, {f['ci_high']:+.4f}] | "
                f"{fg['failed_runs'][n]} |"
            )
        lines += ["", "![full grid](full_grid/frontier.png)"]
    lines += ["", "![default sweep](default/frontier.png)", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
