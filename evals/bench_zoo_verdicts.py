"""The thirteen zoo losses re-ranked under the one protocol (issue 16.7): each loss's β chosen on screening
seeds that are never scored, the loss trained at it on fresh seeds, its per-seed difference to DPO with an
interval (the shipped σ or its own larger spread), and a verdict (`better` by Benjamini–Hochberg at FDR q
over the thirteen, `worse`, `not_separated`): which published discoveries hold on this task.

This is `disco bench losses --losses <zoo> --seeds N --json` (targets/dpo/bench.run_bench), with a
report. The zoo's older tables (evals/results/zoo/report.md) rank by max over β on the seeds that
scored it, which overstates every loss.

    python evals/bench_zoo_verdicts.py [--seeds 16]        # ~20 min on 2 cores

Writes evals/results/zoo/verdicts/{summary.json, report.md}.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from agent.home import cache_dir  # noqa: E402
from targets.dpo.bench import run_bench  # noqa: E402
from targets.dpo.fitness import RunResult  # noqa: E402
from targets.dpo.sweep import sweep_spec  # noqa: E402
from targets.dpo.zoo import list_zoo  # noqa: E402

OUT = REPO / "evals" / "results" / "zoo" / "verdicts"
CLASSIC = {"dpo", "cdpo", "slic", "ipo", "kto_pair", "robust_dpo"}
"""The rest are the published discoveries (DiscoPOP's LRML and the losses its search found)."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=16, help="scoring seeds per loss")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    zoo = {z.name: z for z in list_zoo()}
    spec = sweep_spec("default").model_copy(update={"seeds": list(range(args.seeds))})
    start = time.perf_counter()

    def progress(run: RunResult, done: int, total: int) -> None:
        if done % 10 == 0 or done == total:
            print(f"  {done}/{total} runs, {time.perf_counter() - start:.0f} s", flush=True)

    report = run_bench({name: z.code for name, z in zoo.items()}, spec, cache_dir(), progress=progress)
    summary = report.summary() | {"titles": {name: z.title for name, z in zoo.items()}}
    summary.pop("runs", None)
    (OUT / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (OUT / "report.md").write_text(render(summary))
    print((OUT / "report.md").read_text())


def render(s: dict) -> str:
    rows = [(name, r) for name, r in s["results"].items() if r.get("vs_dpo")]
    rows.sort(key=lambda nr: -nr[1]["vs_dpo"]["diff"])
    tested = rows[0][1]["vs_dpo"]["tested_at"] if rows else ""
    lines = [
        "# The zoo under the one protocol (evals/bench_zoo_verdicts.py)",
        "",
        f"β chosen per loss on screening seeds {s['protocol']['screen_seeds']} among {s['betas']}, scored at "
        f"it on seeds {s['seeds'][0]}–{s['seeds'][-1]} ({len(s['seeds'])} seeds), each against DPO seed by "
        f"seed. Verdicts: {tested}. {s['seconds']:.0f} s on 2 workers.",
        "",
        "| loss | kind | β | − DPO | 95% interval | n | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in rows:
        v = r["vs_dpo"]
        kind = "classic" if name in CLASSIC else "published discovery"
        lines.append(
            f"| {name} | {kind} | {r['beta']:g} | {v['diff']:+.4f} | "
            f"[{v['ci_low']:+.4f}, {v['ci_high']:+.4f}] | {v['n_seeds']} | {v['verdict']} |"
        )
    held = [n for n, r in rows if n not in CLASSIC and r["vs_dpo"]["verdict"] == "better"]
    worse = [n for n, r in rows if n not in CLASSIC and r["vs_dpo"]["verdict"] == "worse"]
    open_ = [n for n, r in rows if n not in CLASSIC and r["vs_dpo"]["verdict"] == "not_separated"]
    lines += [
        "",
        "Published discoveries on this task: better than DPO: " + (", ".join(held) or "none")
        + "; worse: " + (", ".join(worse) or "none")
        + "; not separated at this many seeds: " + (", ".join(open_) or "none") + ".",
    ]  # fmt: skip
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
