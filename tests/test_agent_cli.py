"""The meta-agent's commands as a person types them: `disco run` with a model from the environment,
`runs list|show`, `control`, and one-sentence errors for what a person can get wrong."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from agent_helpers import cli, distinct, kind_of, scripted_model
from fake_openai import FakeOpenAI

CLEAN_ENV = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "DISCO_MODEL"))}


def test_run_uses_the_model_configured_in_the_environment(tmp_path: Path, shared_cache: Path) -> None:
    with FakeOpenAI() as server:
        server.default = scripted_model(distinct)
        env = CLEAN_ENV | {
            "DISCO_CACHE": str(shared_cache),
            "OPENAI_BASE_URL": server.base_url,
            "OPENAI_API_KEY": "sk-test",
            "DISCO_MODEL": "fake-model",
        }
        proc = cli(tmp_path, "run", "--preset", "tiny", "--max-candidates", "1", "--run-id", "env", env=env)
        steps = [kind_of(b) for b in server.requests]
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert steps == ["design", "reflect1", "reflect2"]
    assert "env: finished" in proc.stderr and "candidates budget reached" in proc.stderr
    assert "reflect2_1" in proc.stdout, "the leaderboard is printed, with the revised candidate"
    shown = json.loads(cli(tmp_path, "runs", "show", "env", "--json", env=env).stdout)
    assert shown["run"]["model"] == "fake-model"
    (row,) = shown["candidates"]
    assert row["status"] == "evaluated" and row["fitness"] is not None
    llm = [json.loads(x) for x in (tmp_path / "runs" / "env" / "events.jsonl").read_text().splitlines()]
    llm = [e["payload"] for e in llm if e["kind"] == "llm"]
    assert [e["key"] for e in llm] == ["c0001/design", "c0001/reflect1", "c0001/reflect2"]
    assert all(e["prompt_tokens"] > 0 and e["completion_tokens"] > 0 for e in llm)
    assert "sk-test" not in (tmp_path / "runs" / "env" / "run.json").read_text(), "no secret in the run dir"
    listed = json.loads(cli(tmp_path, "runs", "list", "--json", env=env).stdout)
    assert [(r["run_id"], r["state"], r["candidates"]) for r in listed] == [("env", "finished", 1)]
    # The best's score is its difference to DPO on fresh seeds, with n: never the in-sample fitness
    (best,) = listed
    fresh = json.loads(
        (tmp_path / "runs" / "env" / "candidates" / best["best_id"] / "vs_baseline.json").read_text()
    )
    assert best["best_vs_baseline"] == fresh and fresh["n_seeds"] >= 2
    table = cli(tmp_path, "runs", "list", env=env | {"COLUMNS": "200"}).stdout
    assert f"{fresh['diff']:+.3f}" in table and f"n{fresh['n_seeds']}" in table and "~" not in table


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "--model", "gpt-x"], "has no endpoint"),
        (["run", "--target", "chess"], "unknown target 'chess'"),
        (["run", "--config", "missing.toml"], "config file missing.toml does not exist"),
        (["resume", "nope"], "no run 'nope'"),
        (["control", "nope", "pause"], "no run 'nope'"),
        (["runs", "show", "nope"], "no run 'nope'"),
    ],
)
def test_mistakes_get_one_sentence_and_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    proc = cli(tmp_path, *args, env=CLEAN_ENV)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and ".." not in proc.stderr


def test_bad_toml_and_bad_control_commands(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[budget\nmax_candidates = 3\n")
    proc = cli(tmp_path, "run", "--config", str(bad), env=CLEAN_ENV)
    assert proc.returncode == 2 and "is not valid TOML" in proc.stderr
    wrong = tmp_path / "wrong.toml"
    wrong.write_text("[budget]\nmax_candidates = 'many'\n")
    proc = cli(tmp_path, "run", "--config", str(wrong), env=CLEAN_ENV)
    assert proc.returncode == 2 and "budget.max_candidates" in proc.stderr
    (tmp_path / "runs" / "r1").mkdir(parents=True)
    (tmp_path / "runs" / "r1" / "run.json").write_text(
        json.dumps({"run_id": "r1", "target": "dpo", "model": "m"})
    )
    for args, message in [
        (["fly"], "unknown command 'fly'"),
        (["hint"], "`hint` needs the hint's text"),
        (["budget", "hours=-1"], "must not be negative"),
    ]:
        proc = cli(tmp_path, "control", "r1", *args, env=CLEAN_ENV)
        assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    proc = cli(tmp_path, "control", "r1", "hint", "use", "a", "margin", env=CLEAN_ENV)
    assert proc.returncode == 0 and "applied when the run is resumed" in proc.stdout
    sent = json.loads((tmp_path / "runs" / "r1" / "control.jsonl").read_text())
    assert (sent["action"], sent["arg"]) == ("hint", "use a margin")
