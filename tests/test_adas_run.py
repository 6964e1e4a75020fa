"""`disco run --target adas` end to end: the run first measures ADAS's seed archive (CoT, CoT-SC, Self-Refine,
LLM Debate, Step-back, Quality-Diversity, Role Assignment), then the meta agent (one FakeOpenAI) designs an
agent system and reflects twice, and the target checks and evaluates it with its inner agents calling
another FakeOpenAI under another model name, through the sandbox and the proxy; every candidate is
recorded with its fitness."""

from __future__ import annotations

import json
import os
from pathlib import Path

from adas_helpers import inner_responder, write_adas_config, write_mgsm
from agent_helpers import cli, kind_of, scripted_model
from fake_openai import FakeOpenAI

from targets.agents.seeds import cot_sc, seed_archive

CLEAN_ENV = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "DISCO_MODEL"))}


def design(step: str, n: int) -> str:
    """A different self-consistency agent for each step, so that the revision is what gets evaluated."""
    samples = {"design": 2, "reflect1": 3, "reflect2": 4}.get(step, 5)
    return cot_sc(samples, 0.7)


def test_disco_run_designs_and_evaluates_an_agent_system(tmp_path: Path, shared_cache: Path) -> None:
    data = write_mgsm(tmp_path / "mgsm", n=3)
    with FakeOpenAI(model="meta-model") as meta, FakeOpenAI(model="inner-model") as inner:
        meta.default = scripted_model(design)
        inner.default = inner_responder()
        tables = {"loop": {"reflections": 2}, "models.inner": {"temperature": 0.6},
                  "targets.adas": {"concurrency": 2}}  # fmt: skip
        config = write_adas_config(tmp_path / "disco.toml", data, inner.base_url, meta.base_url, tables)
        env = CLEAN_ENV | {"DISCO_CACHE": str(shared_cache)}
        proc = cli(tmp_path / "home", "run", "--config", str(config), "--run-id", "adas", env=env)
        meta_steps = [kind_of(b) for b in meta.requests]
        meta_models = {b["model"] for b in meta.requests}
        inner_models = {b["model"] for b in inner.requests}
        inner_calls = len(inner.requests)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # the seeds are known designs: no model call; the designed agent: design and two reflections
    assert meta_steps == ["design", "reflect1", "reflect2"] and meta_models == {"meta-model"}
    assert inner_models == {"inner-model"}, "the inner agents use [models.inner], never the meta model"
    shown = json.loads(cli(tmp_path / "home", "runs", "show", "adas", "--json", env=env).stdout)
    rows = sorted(shown["candidates"], key=lambda r: r["index"])
    seeds = [s.name for s in seed_archive("mgsm")]
    assert len(seeds) == 7 and [r["name"] for r in rows[:7]] == seeds, "the seed archive is measured first"
    assert len(rows) == 8, "the seeds do not count towards max_candidates = 1"
    assert all(r["status"] == "evaluated" and r["fitness"] is not None for r in rows), rows
    run = tmp_path / "home" / "runs" / "adas"
    saved = json.loads((run / "candidates" / "adas-0008" / "evaluation.json").read_text())
    assert saved["status"] == "ok" and len(saved["item_scores"]["0"]) == 3
    # the revision from reflect2 samples 4 times: 3 tasks × 4 calls on the default seed
    assert saved["metrics"]["model_calls"] == 12
    # every agent with what its accuracy cost in the inner model (issue 18.8)
    assert rows[7]["inner_calls"] == 12 and rows[7]["inner_tokens"] > 12
    # and against the standing baseline, CoT-SC with the chains its tokens pay for (issue 18.8): the fake
    # inner model always answers right, so no agent separates from it
    curve = saved["details"]["cot_sc"]
    assert curve["samples"] == 5 and curve["measured_tokens"] > 0, curve
    assert 1 <= rows[7]["cot_sc_chains"] <= 5 and rows[7]["cot_sc_diff"] == 0.0
    assert {r["cot_sc_verdict"] for r in rows} == {"not_separated"}, rows
    table = cli(tmp_path / "home", "runs", "show", "adas", env=env).stdout
    assert table.count("inner") >= 2 and "tokens" in table, table  # the cost columns (headers may wrap)
    assert "vs CoT-SC:" in table and f"×{rows[7]['cot_sc_chains']}" in table, table  # verdicts may wrap
    assert inner_calls > 2 * 4 + 3 * 4, "the seeds' checks and evaluations called the inner model too"
    assert "sk-inner" not in (run / "run.json").read_text(), "no secret in the run dir"


def test_an_offline_run_varies_the_seed_designs(tmp_path: Path, shared_cache: Path) -> None:
    """No meta model: the offline proposer designs; the inner model still answers the agents."""
    data = write_mgsm(tmp_path / "mgsm", n=3)
    with FakeOpenAI(model="inner-model") as inner:
        inner.default = inner_responder()
        tables = {"budget": {"max_candidates": 2}, "loop": {"seed_archive": "skip"}}
        config = write_adas_config(tmp_path / "disco.toml", data, inner.base_url, tables=tables)
        env = CLEAN_ENV | {"DISCO_CACHE": str(shared_cache)}
        proc = cli(tmp_path / "home", "run", "--config", str(config), "--run-id", "off", env=env)
        assert inner.requests, "the agents called the inner model"
    assert proc.returncode == 0, proc.stderr[-3000:]
    shown = json.loads(cli(tmp_path / "home", "runs", "show", "off", "--json", env=env).stdout)
    rows = shown["candidates"]
    assert len(rows) == 2 and all(r["status"] == "evaluated" for r in rows), rows
    assert len({r["name"] for r in rows}) == 2


def test_an_inner_model_that_is_down_blocks_the_candidate_and_is_never_repaired(
    tmp_path: Path, shared_cache: Path
) -> None:
    """Issue 18.8: every call of the agent failing at the inner model is not the candidate's fault. No repair
    is asked of the meta model and nothing is recorded against the code: the run waits, as for its own
    model endpoint, and checks the same code again once the inner model answers."""
    import threading
    import time

    from fake_openai import Error

    data = write_mgsm(tmp_path / "mgsm", n=3)
    run = tmp_path / "home" / "runs" / "blocked"
    with FakeOpenAI(model="meta-model") as meta, FakeOpenAI(model="inner-model") as inner:
        meta.default = scripted_model(design)
        healthy, up = inner_responder(), threading.Event()
        inner.default = lambda body: healthy(body) if up.is_set() else Error(503, "the GPU node is rebooting")

        def recover_after_the_block() -> None:
            deadline = time.monotonic() + 240
            while time.monotonic() < deadline and not up.is_set():
                text = (run / "events.jsonl").read_text() if (run / "events.jsonl").exists() else ""
                if "could not run" in text:
                    up.set()
                time.sleep(0.2)

        watcher = threading.Thread(target=recover_after_the_block, daemon=True)
        watcher.start()
        tables = {
            "loop": {"reflections": 2, "seed_archive": "skip"},
            "endpoint": {"backoff_s": [0.5, 0.5, 0.5], "probe_every_s": 0.5},
            "models.inner": {"max_retries": 0},
            "targets.adas": {"concurrency": 2},
        }
        config = write_adas_config(tmp_path / "disco.toml", data, inner.base_url, meta.base_url, tables)
        env = CLEAN_ENV | {"DISCO_CACHE": str(shared_cache)}
        proc = cli(tmp_path / "home", "run", "--config", str(config), "--run-id", "blocked", env=env)
        watcher.join(timeout=1)
        meta_steps = [kind_of(b) for b in meta.requests]
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert up.is_set(), "the run never reported the blocked check"
    assert meta_steps == ["design", "reflect1", "reflect2"], "the meta model was asked to repair"
    events = [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()]
    blocked = [
        e for e in events if e["kind"] == "error" and "could not run" in e["payload"].get("message", "")
    ]
    assert blocked and blocked[0]["payload"]["error_kind"] == "unreachable"
    assert "inner model answered none" in blocked[0]["payload"]["message"]
    checks = [e for e in events if e["kind"] == "check"]
    assert [c["payload"]["passed"] for c in checks] == [True], "a blocked check was recorded as a failure"
    saved = json.loads((run / "candidates" / "blocked-0001" / "evaluation.json").read_text())
    assert saved["status"] == "ok" and saved["fitness"] is not None
