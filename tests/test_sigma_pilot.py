"""The σ pilot (issue 16, item 4): measured once per instrument with the real CLI and real training, kept
sealed in the data dir's cache, and what the race uses from then on; a forged file is never believed."""

from __future__ import annotations

import json
import math
from pathlib import Path

from agent_helpers import cli

from targets.dpo.fitness import TOY_SIGMA_PER_SEED
from targets.dpo.pilot import pooled_sigma
from targets.dpo.target import DPOTarget, DPOTargetConfig


def test_sigma_pools_every_pair_of_losses() -> None:
    scores = {
        "a": {"0": [0.0, 0.0], "1": [1.0, 1.0], "2": [2.0, 2.0]},
        "b": {"0": [0.0, 0.0], "1": [0.0, 0.0], "2": [0.0, 0.0]},
        "c": {"0": [1.0, 1.0], "1": [1.0, 1.0], "2": [1.0, 1.0]},
    }
    # a−b: 0, 1, 2 (squares about the mean 2); a−c: −1, 0, 1 (2); b−c: −1, −1, −1 (0); 2 dof each
    assert pooled_sigma(scores) == (math.sqrt(4 / 6), 6)


def test_a_pilot_measured_once_is_what_the_race_uses(tmp_path: Path) -> None:
    cache = tmp_path / "cache"  # its own cache: the agent tests' shared one must keep no measured σ
    proc = cli(
        tmp_path / "home", "bench", "sigma", "--preset", "tiny", "--seeds", "3", "--json",
        env={"DISCO_CACHE": str(cache)}, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    pilot = json.loads(proc.stdout)
    assert pilot["losses"] == ["dpo", "cdpo", "slic", "ipo"] and pilot["n_seeds"] == 3
    assert pilot["dof"] == 6 * 2 and pilot["failed_runs"] == 0
    assert pilot["sigma_upper"] > pilot["sigma"] > 0
    assert "training runs" in proc.stderr  # what it is doing, before the minutes it takes

    tiny = DPOTarget(DPOTargetConfig(preset="tiny"), cache_dir=cache)
    assert tiny.seed_sigma == pilot["sigma_upper"]  # the race's σ for this preset from now on
    other = DPOTarget(DPOTargetConfig(preset="tiny", samples_per_prompt=2), cache_dir=cache)
    assert other.seed_sigma is None, "another evaluation setting is another instrument: not measured"
    shipped = DPOTarget(DPOTargetConfig(preset="default"), cache_dir=cache)
    assert shipped.seed_sigma == TOY_SIGMA_PER_SEED

    # A file this data dir's parent did not seal (what a candidate could write) is never believed
    path = Path(pilot["path"])
    doc = json.loads(path.read_text())
    doc["text"] = json.dumps(json.loads(doc["text"]) | {"sigma_upper": 1e-6})
    path.write_text(json.dumps(doc))
    assert tiny.seed_sigma is None
