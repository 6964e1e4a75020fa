"""Cold-start time of the commands a researcher types interactively (issue 19.11): each is run as a fresh
process (`python -m agent.cli …`), 5 times, median and max; the goal is ≤ 3 s on 2 cores.

A data dir with one finished run and its memory is made first (an offline tiny run: no model, ~1 min), so
that `memory search` has something to search and `runs show` something to show. `--repo` times another
checkout of disco on the same data dir (e.g. a worktree of an earlier commit: the "before"); both results
go side by side into evals/results/cold_start/.

    python evals/bench_cold_start.py [--label after] [--repo PATH] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "evals" / "results" / "cold_start"
HOME = Path("/tmp/disco-cold-start")
RUN = "cold"
COMMANDS = {
    "disco --help": ["--help"],
    "disco memory search": ["memory", "search", "a bounded hinge on the margin"],
    "disco memory show": ["memory", "show", f"{RUN}-0001"],
    "disco memory stats": ["memory", "stats"],
    "disco runs list": ["runs", "list"],
    "disco runs show": ["runs", "show", RUN],
}
GOAL_S = 3.0


def ensure_data(repo: Path) -> None:
    """One finished offline run (tiny preset) and its memory, made once."""
    if (HOME / "runs" / RUN / "status.json").exists():
        return
    cmd = [sys.executable, "-m", "agent.cli", "--home", str(HOME), "run", "--run-id", RUN]
    cmd += ["--model", "offline", "--max-candidates", "2", "--preset", "tiny", "--quiet"]
    subprocess.run(cmd, cwd=repo, check=True, env=os.environ | {"DISCO_MODEL": "offline"})


def time_command(repo: Path, args: list[str], repeats: int) -> list[float]:
    out = []
    env = {k: v for k, v in os.environ.items() if k not in ("DISCO_MODEL",)} | {"HF_HUB_OFFLINE": "1"}
    for _ in range(repeats):
        start = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "agent.cli", "--home", str(HOME), *args],
            cwd=repo,
            env=env,
            capture_output=True,
            text=True,
        )
        out.append(time.perf_counter() - start)
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(args)} failed in {repo}: {proc.stderr[-800:]}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--label", default="after")
    parser.add_argument("--repo", type=Path, default=REPO)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    ensure_data(REPO)
    OUT.mkdir(parents=True, exist_ok=True)
    results = {}
    for name, cli_args in COMMANDS.items():
        times = time_command(args.repo, cli_args, args.repeats)
        results[name] = {"median_s": statistics.median(times), "max_s": max(times), "runs_s": times}
        print(
            f"{args.label:>8}  {name:<22} median {statistics.median(times):5.2f} s  max {max(times):5.2f} s"
        )
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=args.repo, capture_output=True, text=True
    ).stdout.strip()
    doc = {
        "label": args.label,
        "commit": commit,
        "cpus": os.cpu_count(),
        "goal_s": GOAL_S,
        "commands": results,
    }
    (OUT / f"{args.label}.json").write_text(json.dumps(doc, indent=2) + "\n")
    write_report()


def write_report() -> None:
    labels = [p.stem for p in sorted(OUT.glob("*.json"), key=lambda p: p.stem != "before")]
    docs = {label: json.loads((OUT / f"{label}.json").read_text()) for label in labels}
    repeats = len(next(iter(docs.values()))["commands"]["disco --help"]["runs_s"])
    lines = [
        "# Cold start of the interactive commands (evals/bench_cold_start.py)",
        "",
        f"Each command a fresh process, median (max) of {repeats} runs, seconds; goal ≤ {GOAL_S:g} s. "
        + "; ".join(f"{label}: commit {doc['commit']}" for label, doc in docs.items())
        + ".",
        "",
        "| command | " + " | ".join(labels) + " |",
        "|---|" + "---|" * len(labels),
    ]
    for name in COMMANDS:
        cells = []
        for label in labels:
            row = docs[label]["commands"].get(name)
            cells.append(f"{row['median_s']:.2f} ({row['max_s']:.2f})" if row else "—")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    (OUT / "report.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
