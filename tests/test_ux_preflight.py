"""Preflight before the first candidate (issue 19.5): the target can run (ADAS: an inner model and its
data), each model endpoint answers one cheap request and serves the model named, `--base-url` without
`--model` takes the server's only model aloud, and the data dir is writable. Each failure is one sentence,
exit code 2, and nothing is recorded (no run dir, no memory); a dead URL fails at once."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from adas_helpers import write_mgsm
from agent_helpers import cli
from fake_openai import FakeOpenAI, free_port

CLEAN_ENV = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "DISCO_"))}


def refused(proc, home: Path, sentence: str) -> None:
    """Exit 2, the one sentence, and nothing recorded in the data dir."""
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and sentence in lines[0] and "Traceback" not in proc.stderr, proc.stderr
    assert not (home / "runs").exists() and not (home / "memory").exists(), "nothing recorded"


def adas_config(tmp_path: Path, data: Path | None, inner_url: str | None) -> Path:
    config = tmp_path / "adas.toml"
    inner = f'[models.inner]\nmodel = "inner-model"\nbase_url = "{inner_url}"\n' if inner_url else ""
    data_line = f'data_path = "{data}"\n' if data else ""
    config.write_text(f'target = "adas"\n{inner}[targets.adas]\n{data_line}n_valid = 3\n')
    return config


def test_adas_without_an_inner_model_stops_before_any_candidate(tmp_path: Path) -> None:
    home = tmp_path / "home"
    config = adas_config(tmp_path, write_mgsm(tmp_path / "mgsm", n=3), None)
    proc = cli(home, "run", "--config", str(config), env=CLEAN_ENV | {"DISCO_MODEL": "offline"})
    refused(proc, home, "the agent-system target needs an inner model for its agents")


def test_adas_with_a_missing_data_file_stops_before_any_candidate(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with FakeOpenAI(model="inner-model") as inner:
        config = adas_config(tmp_path, tmp_path / "nowhere", inner.base_url)
        proc = cli(home, "run", "--config", str(config), env=CLEAN_ENV)
        assert inner.requests == [], "no agent ran"
    refused(proc, home, f"the mgsm data path {tmp_path / 'nowhere'} does not exist")


def test_adas_with_a_dead_inner_model_stops_before_any_candidate(tmp_path: Path) -> None:
    home = tmp_path / "home"
    dead = f"http://127.0.0.1:{free_port()}/v1"
    config = adas_config(tmp_path, write_mgsm(tmp_path / "mgsm", n=3), dead)
    proc = cli(home, "run", "--config", str(config), env=CLEAN_ENV)
    refused(proc, home, f"the inner model endpoint {dead} is unreachable (connection refused)")


def test_a_dead_url_fails_at_start_not_after_hours(tmp_path: Path) -> None:
    home = tmp_path / "home"
    dead = f"http://127.0.0.1:{free_port()}/v1"
    started = time.monotonic()
    proc = cli(home, "run", "--model", "m", "--base-url", dead, "--max-candidates", "1", env=CLEAN_ENV)
    assert time.monotonic() - started < 20
    refused(
        proc, home, f"the meta model endpoint {dead} is unreachable (connection refused): start the server"
    )


def test_a_model_the_server_does_not_serve_is_refused(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with FakeOpenAI(model="served-model") as server:
        proc = cli(home, "run", "--model", "typo-model", "--base-url", server.base_url, env=CLEAN_ENV)
        assert server.requests == [] and server.paths == ["GET /v1/models"], "one cheap request"
    refused(proc, home, "does not serve 'typo-model' (it serves served-model): fix --model")


def test_base_url_alone_takes_the_servers_only_model_and_says_so(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with FakeOpenAI(model="the-only-model") as server:
        args = ("run", "--base-url", server.base_url, "--hours", "0.000001", "--run-id", "b")
        proc = cli(home, *args, env=CLEAN_ENV | {"DISCO_CACHE": str(tmp_path / "cache")})
        assert server.requests == [], "the time budget stops it before the first design"
        url = server.base_url
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "--base-url without --model: using the server's only model, the-only-model" in proc.stderr
    meta = json.loads((home / "runs" / "b" / "run.json").read_text())
    assert meta["model"] == "the-only-model" and meta["config"]["models"]["meta"]["base_url"] == url


@pytest.fixture
def two_models() -> Iterator[str]:
    """A real server on loopback whose /models lists two models."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps({"object": "list", "data": [{"id": "alpha"}, {"id": "beta"}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def test_base_url_alone_with_several_models_asks_for_one(tmp_path: Path, two_models: str) -> None:
    home = tmp_path / "home"
    proc = cli(home, "run", "--base-url", two_models, env=CLEAN_ENV)
    refused(
        proc, home, f"--base-url was given without --model and {two_models} serves 2 models (alpha, beta)"
    )


def test_base_url_alone_at_a_dead_url_is_refused(tmp_path: Path) -> None:
    home = tmp_path / "home"
    dead = f"http://127.0.0.1:{free_port()}/v1"
    refused(cli(home, "run", "--base-url", dead, env=CLEAN_ENV), home, "is unreachable")


def test_a_data_dir_that_cannot_be_written_is_refused(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    home = blocker / "home"
    proc = cli(home, "run", "--max-candidates", "1", env=CLEAN_ENV | {"DISCO_MODEL": "offline"})
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert f"the data dir {home} cannot be created: {blocker} is not a folder" in proc.stderr


def test_resume_checks_the_endpoint_too(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = CLEAN_ENV | {"DISCO_CACHE": str(tmp_path / "cache")}
    with FakeOpenAI() as server:
        args = ("run", "--model", "fake-model", "--base-url", server.base_url, "--hours", "0.000001")
        proc = cli(home, *args, "--run-id", "gone", env=env)
        url = server.base_url
    assert proc.returncode == 0, proc.stderr[-2000:]
    status = (home / "runs" / "gone" / "status.json").read_text()
    proc = cli(home, "resume", "gone", env=env)  # the server is gone now
    # What it tries to resume (said at once, before the checks), then the check's one sentence.
    said = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(said) == 2, proc.stderr
    assert said[0].startswith("resuming run gone (stopped: time budget reached")
    assert f"the meta model endpoint {url} is unreachable" in said[1]
    assert (home / "runs" / "gone" / "status.json").read_text() == status, "the run is left as it was"
