"""The fresh-seed protocol of `disco bench losses` (targets/dpo/bench.score_fresh) on runs whose truth is
known: β comes from the screening runs, the score and the verdict from the other seeds only."""

from __future__ import annotations

import numpy as np

from targets.dpo.bench import score_fresh
from targets.dpo.fitness import RunResult
from targets.dpo.sweep import SweepSpec

N_ITEMS = 64


def run(loss: str, beta: float, seed: int, level: float, noise: float = 0.0, status: str = "ok") -> RunResult:
    rng = np.random.default_rng(seed * 1009 + int(beta * 1000))
    seed_effect = rng.normal(0, noise)  # shared by every loss on this seed: what pairing removes
    rewards = (level + seed_effect + rng.normal(0, 0.02, N_ITEMS)).tolist() if status == "ok" else []
    kls = [0.0] * N_ITEMS if status == "ok" else []
    return RunResult(loss=loss, beta=beta, seed=seed, status=status, rewards=rewards, kls=kls)


def scored(levels: dict[str, float], seeds: range, noise: float = 0.05) -> list[RunResult]:
    return [run(name, 0.5, s, level, noise) for name, level in levels.items() for s in seeds]


def test_a_clearly_better_loss_is_better_a_copy_is_not_separated_a_broken_one_worse() -> None:
    spec = SweepSpec(betas=[0.5], seeds=list(range(8)))
    names = {"dpo": "", "strong": "", "copy": "", "broken": ""}
    runs = scored({"dpo": 0.1, "strong": 0.3, "copy": 0.1}, range(8))
    runs += [run("broken", 0.5, s, 0.0, status="diverged") for s in range(8)]
    report = score_fresh(names, spec, [], runs, [], dict.fromkeys(names, 0.5), seconds=1.0)
    verdicts = {name: vs.verdict for name, vs in report.vs_dpo.items()}
    assert verdicts == {"strong": "better", "copy": "not_separated", "broken": "worse"}
    strong = report.vs_dpo["strong"]
    assert strong.n_seeds == 8 and strong.ci_low < 0.2 < strong.ci_high
    assert "Benjamini" in strong.tested_at
    summary = report.summary()
    assert summary["results"]["strong"]["vs_dpo"]["verdict"] == "better"
    assert summary["results"]["dpo"]["vs_dpo"] is None and "vs_baseline" not in summary["results"]["strong"]


def test_the_score_ignores_the_screening_seeds_that_chose_beta() -> None:
    """A loss that was lucky on the screening seeds (far ahead there) but equal to DPO on the scoring
    seeds is scored as equal: the screening runs only choose β and draw the frontier."""
    spec = SweepSpec(betas=[0.1, 0.5], seeds=[0, 1, 2, 3])
    names = {"dpo": "", "lucky": ""}
    screened = [run("lucky", b, 1000, 0.9) for b in (0.1, 0.5)] + [
        run("dpo", b, 1000, 0.1) for b in (0.1, 0.5)
    ]
    runs = scored({"dpo": 0.1, "lucky": 0.1}, range(4), noise=0.0)
    report = score_fresh(names, spec, screened, runs, [1000], {"dpo": 0.5, "lucky": 0.5}, seconds=1.0)
    assert abs(report.vs_dpo["lucky"].diff) < 0.02 and report.vs_dpo["lucky"].verdict == "not_separated"
    assert abs(report.fitness["lucky"].fitness.value - 0.1) < 0.02
    assert [p.beta for p in report.fitness["lucky"].frontier] == [0.1, 0.5]  # the screening frontier
    assert report.summary()["protocol"]["screen_seeds"] == [1000]


def test_the_sigma_the_bench_uses_is_the_one_the_calibration_measured() -> None:
    import json
    from pathlib import Path

    from targets.dpo.bench import TOY_SIGMA_PER_SEED

    summary = Path(__file__).parents[1] / "evals" / "results" / "fitness_calibration" / "summary.json"
    assert round(json.loads(summary.read_text())["sigma_used"], 4) == TOY_SIGMA_PER_SEED


def test_the_cli_table_shows_the_difference_its_interval_n_and_the_verdict() -> None:
    from rich.console import Console

    from targets.dpo.commands import fitness_table

    spec = SweepSpec(betas=[0.5], seeds=list(range(8)))
    names = {"dpo": "", "strong": ""}
    runs = scored({"dpo": 0.1, "strong": 0.3}, range(8))
    report = score_fresh(names, spec, [], runs, [], dict.fromkeys(names, 0.5), seconds=1.0)
    console = Console(width=200, record=True)
    console.print(fitness_table(report))
    text = console.export_text()
    row = next(line for line in text.splitlines() if "strong" in line)
    assert "better" in row and " 8 " in row and "+0.2" in row
    assert "Benjamini" in text and "baseline" in text
