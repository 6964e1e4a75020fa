"""The example files the README names (issue 19.5, 19.10) load, validate and get a run past preflight: the
DPO config and the ADAS config against fake model servers on loopback (stopped by a tiny time budget
before the first candidate, so nothing trains), and the job spec through the job queue's own loader."""

from __future__ import annotations

import os
import re
from pathlib import Path

from adas_helpers import write_mgsm
from agent_helpers import REPO, cli
from fake_openai import FakeOpenAI

from agent.config import load_config
from tools.jobs.specfile import load_spec_file

EXAMPLES = REPO / "examples"
CLEAN_ENV = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "DISCO_"))}


def test_the_readme_names_example_files_that_exist() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    named = set(re.findall(r"examples/[\w./-]+\.toml", readme))
    assert {"examples/config.toml", "examples/adas.toml", "examples/job.toml"} <= named
    assert all((REPO / n).is_file() for n in named), named
    assert "--config adas.toml" not in readme, "the README's ADAS line names the shipped file"


def test_the_config_example_validates() -> None:
    config = load_config(EXAMPLES / "config.toml", env={})
    assert config.target == "dpo" and config.models.meta.model == "qwen2.5-coder-32b"
    assert config.budget.max_candidates == 50 and config.budget.hours == 8 and not config.budget.defaulted


def test_disco_run_with_the_config_example_gets_past_preflight(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with FakeOpenAI(model="qwen2.5-coder-32b") as server:
        env = CLEAN_ENV | {"OPENAI_BASE_URL": server.base_url, "DISCO_CACHE": str(tmp_path / "cache")}
        args = ("run", "--config", str(EXAMPLES / "config.toml"), "--hours", "0.000001", "--run-id", "ex")
        proc = cli(home, *args, env=env)
        paths, requests = list(server.paths), list(server.requests)
    assert proc.returncode == 0, proc.stderr[-2000:]
    # the preflight's GET /models, then the capability probe's (its requests are the fake's own; it reads
    # the context window from /v1/models and /props): no design was asked for
    assert paths[0] == "GET /v1/models" and requests == [], "stopped before the first design"
    assert set(paths) <= {"GET /v1/models", "GET /props"}, paths
    assert "budgets: 50 candidates, 1e-06 h; no limit on" in proc.stderr
    assert "time budget reached" in proc.stderr and (home / "runs" / "ex" / "run.json").is_file()


def test_the_adas_example_validates() -> None:
    config = load_config(EXAMPLES / "adas.toml", env={})
    assert config.target == "adas" and config.models.inner.model == "qwen2.5-7b-instruct"
    assert config.targets["adas"]["benchmark"] == "mgsm" and config.budget.max_candidates == 30


def test_disco_run_with_the_adas_example_gets_past_preflight(tmp_path: Path) -> None:
    """~/data/mgsm is the example's data path: HOME is a folder of the test's, holding a small MGSM."""
    home, user_home = tmp_path / "home", tmp_path / "user"
    with FakeOpenAI(model="gpt-4.1") as meta, FakeOpenAI(model="qwen2.5-7b-instruct") as inner:
        env = CLEAN_ENV | {
            "HOME": str(user_home),
            "OPENAI_BASE_URL": meta.base_url,
            "OPENAI_API_KEY": "sk-example",
            "DISCO_INNER_BASE_URL": inner.base_url,
            "DISCO_CACHE": str(tmp_path / "cache"),
        }
        args = ("run", "--config", str(EXAMPLES / "adas.toml"), "--hours", "0.000001")
        missing = cli(home, *args, env=env)  # no MGSM yet: the preflight says so
        write_mgsm(user_home / "data" / "mgsm", n=6)
        proc = cli(home, *args, "--run-id", "adas-ex", env=env)
        probes = (list(meta.paths), list(inner.paths), meta.requests + inner.requests)
    assert missing.returncode == 2, missing.stderr
    assert missing.stderr.strip() == f"the mgsm data path {user_home / 'data' / 'mgsm'} does not exist."
    assert proc.returncode == 0, proc.stderr[-2000:]
    meta_paths, inner_paths, asked = probes
    assert inner_paths == ["GET /v1/models"] and asked == [], "each endpoint probed, no agent ran"
    assert meta_paths[0] == "GET /v1/models" and set(meta_paths) <= {"GET /v1/models", "GET /props"}
    assert "budgets: 30 candidates, 1e-06 h, $20; no limit on" in proc.stderr


def test_the_job_spec_example_validates() -> None:
    spec = load_spec_file(EXAMPLES / "job.toml")
    assert spec.candidate_name == "ipo" and spec.resources.gpus == 1
    real = spec.normalized().train
    assert real["model"] == "Qwen/Qwen2.5-0.5B-Instruct" and real["train"]["max_steps"] == 200
