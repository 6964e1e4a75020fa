"""Memory knows the target's published methods (issue 19.10): the DPO zoo seeded as `baseline` records with
their shipped fingerprints, so that the novelty gate calls plain DPO (however renamed) a known loss, not a
discovery, while the baselines stay out of every ranking. A real Chroma directory and MiniLM."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_memory_helpers import DPO_RENAMED, DPO_TAU_CHANGED, shared_minilm
from typer.testing import CliRunner

from agent.cli import app
from agent.home import set_home
from memory.baselines import seed_baselines
from memory.store import MemoryStore
from targets.dpo.zoo import get_zoo_loss, list_zoo
from targets.dpo.zoo.fingerprints import compute, shipped
from targets.registry import get_target


@pytest.fixture
def store(tmp_path: Path) -> MemoryStore:
    return MemoryStore(tmp_path / "memory", embedder=shared_minilm())


def test_the_shipped_fingerprints_are_the_zoo_losses_own() -> None:
    """Recomputed here (torch, in-process: the zoo is our code): a changed loss file or fingerprint version
    makes this fail until `python -m targets.dpo.zoo.fingerprints` is run again."""
    fresh = compute()
    saved = shipped()
    assert set(saved) == {z.name for z in list_zoo()} == set(fresh)
    for name, entry in fresh.items():
        assert np.allclose(saved[name], entry["fingerprint"], atol=1e-5), name


def test_seeded_baselines_make_dpo_a_known_loss_and_stay_out_of_rankings(
    store: MemoryStore, tmp_path: Path
) -> None:
    from targets.dpo.fingerprint import loss_fingerprint

    target = get_target("dpo", None, tmp_path / "cache")
    assert seed_baselines(store, "dpo", target.baselines()) == 13
    assert seed_baselines(store, "dpo", target.baselines()) == 0, "once per data dir"
    dpo = get_zoo_loss("dpo").code
    same = store.novelty(dpo, "dpo", loss_fingerprint(dpo))
    assert (same.novel, same.nearest, same.by) == (False, "baseline-dpo-dpo", "code_hash")
    assert "a published method of the target: no discovery" in same.message
    renamed = store.novelty(DPO_RENAMED, "dpo", loss_fingerprint(DPO_RENAMED))
    assert (renamed.novel, renamed.nearest, renamed.by) == (False, "baseline-dpo-dpo", "fingerprint")
    assert store.novelty(DPO_TAU_CHANGED, "dpo", loss_fingerprint(DPO_TAU_CHANGED)).novel, "a new constant"
    # known, never ranked: no fitness, no failure, a status of their own
    assert store.top_by_score("dpo") == [] and store.recent_failures("dpo") == []
    assert store.stats().by_status == {"baseline": 13}
    hit = store.search(get_zoo_loss("slic").code, k=1, target="dpo")[0]
    assert (hit.id, hit.record.status, hit.record.run_id) == ("baseline-dpo-slic", "baseline", "baseline")


def test_novelty_from_a_fresh_data_dir_knows_dpo(tmp_path: Path) -> None:
    """`disco memory novelty` before any run: plain DPO was 'novel' (memory was empty)."""
    shared_minilm()
    path = tmp_path / "dpo.py"
    path.write_text(get_zoo_loss("dpo").code, encoding="utf-8")
    try:
        result = CliRunner().invoke(
            app, ["--home", str(tmp_path / "home"), "memory", "novelty", str(path), "--json"]
        )
    finally:
        set_home(None)
    assert result.exit_code == 1, result.output
    assert json.loads(result.output.strip().splitlines()[-1]) == {
        "novel": False,
        "nearest": "baseline-dpo-dpo",
        "similarity": 1.0,
    }
