"""`disco models probe` and the capability cache (issue 18.1) against the project's fake server, configured
to refuse each structured-output mode in turn the way real servers do (llama-cpp-python: HTTP 500 to
`json_schema`; servers without tools: an error to `tools`), and to honour only some cap fields."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from agent_helpers import cli
from fake_openai import FakeOpenAI

from agent.models import ModelSettings
from agent.models.probe import LONG_REQUEST, cached, probed, with_probed

CLEAN_ENV = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "DISCO_"))}

CASES = [  # (what the server refuses, the mode auto mode starts at)
    pytest.param({}, "json_schema", id="everything"),
    pytest.param({"json_schema": 500}, "json_object", id="no-json-schema-500"),
    pytest.param({"json_schema": 400, "json_object": 422}, "function_calling", id="no-response-format"),
    pytest.param({"json_schema": 500, "json_object": 500, "tools": 400}, "prompt", id="text-only"),
]


@pytest.mark.parametrize(("refused", "best"), CASES)
def test_probe_shows_each_fallback(tmp_path: Path, refused: dict[str, int], best: str) -> None:
    with FakeOpenAI(model="local-model") as server:
        server.reject, server.caps = refused, ("max_tokens",)
        args = ("models", "probe", "--base-url", server.base_url, "--model", "local-model")
        shown = cli(tmp_path, *args, env=CLEAN_ENV)
        as_json = cli(tmp_path, *args, "--json", env=CLEAN_ENV)
        assert server.requests == [], "probe requests are the probe's, not a run's"
    assert shown.returncode == 0, shown.stderr
    for mode in refused.keys() - {"tools"}:
        assert f"{mode:<17} no   refused:" in shown.stdout, shown.stdout
    if "tools" in refused:
        assert "function_calling  no   refused:" in shown.stdout
    assert f"auto mode starts at {best}; the cap goes in max_tokens." in shown.stdout
    assert "max_completion_tokens  ignored: the reply ran to" in shown.stdout
    found = json.loads(as_json.stdout)
    assert found["best_mode"] == best and found["caps"]["max_tokens"] == "ok"
    assert (tmp_path / "models" / "capabilities.json").is_file()


def test_a_reply_that_ends_by_itself_under_the_cap_proves_nothing(tmp_path: Path) -> None:
    """A small model sampled at the server's temperature sometimes answers in a few tokens: a
    reply that stopped by itself under the cap says nothing of the field (before, it read as "honoured",
    so a field a server ignores could be chosen to cap every reply). It is asked again, then `unknown`."""
    with FakeOpenAI(model="local-model") as server:
        server.caps, server.count_reply = ("max_tokens",), "1 2 3."
        args = ("models", "probe", "--base-url", server.base_url, "--model", "local-model", "--json")
        found = json.loads(cli(tmp_path, *args, env=CLEAN_ENV).stdout)
        counts = [b for b in server.probes if b["messages"][-1]["content"] == LONG_REQUEST]
    assert found["caps"]["max_tokens"].startswith("unknown: 3 replies ended by themselves"), found
    assert found["caps"]["max_completion_tokens"].startswith("unknown"), found
    assert len(counts) == 6, "each field asked three times"


def test_probe_without_a_model_uses_the_one_the_server_lists(tmp_path: Path) -> None:
    with FakeOpenAI(model="only-one") as server:
        proc = cli(tmp_path, "models", "probe", "--base-url", server.base_url, env=CLEAN_ENV)
    assert proc.returncode == 0, proc.stderr
    assert "model: only-one (the only one" in proc.stderr and "only-one at " in proc.stdout


def test_probe_of_a_dead_endpoint_is_one_sentence(tmp_path: Path) -> None:
    proc = cli(
        tmp_path, "models", "probe", "--base-url", "http://127.0.0.1:9/v1", "--model", "m", env=CLEAN_ENV
    )
    assert proc.returncode == 2 and "unreachable" in proc.stderr and "Traceback" not in proc.stderr


def test_a_run_probes_once_per_data_dir_and_starts_where_the_probe_says(tmp_path: Path) -> None:
    with FakeOpenAI(model="m") as server:
        server.reject, server.caps = {"json_schema": 500}, ("max_tokens",)
        settings = ModelSettings(model="m", base_url=server.base_url, max_retries=0)
        found, said = probed(tmp_path, settings)
        asked = len(server.probes)
        again, said_again = probed(tmp_path, settings)
        assert len(server.probes) == asked > 0, "the second run reads the cache"
    assert found is not None and again == found and found.best_mode == "json_object"
    assert said.startswith("probed m in") and "from the probe of" in said_again
    used, start = with_probed(settings, cached(tmp_path, settings))
    assert start == "json_object" and used.cap_field == "max_tokens"
    forced = settings.model_copy(update={"structured": "prompt"})
    assert probed(tmp_path / "other", forced) == (None, ""), "a mode the person chose is not probed"


def test_model_call_settings_come_from_flags_and_environment() -> None:
    """`--structured / --timeout / --reply-tokens / --inner-model / --inner-base-url` (flags win over
    DISCO_STRUCTURED / DISCO_TIMEOUT_S / DISCO_REPLY_TOKENS), with no config file (issue 18.6)."""
    from agent.config import load_config, meta_model_overrides

    env = {"DISCO_STRUCTURED": "json_object", "DISCO_TIMEOUT_S": "600", "DISCO_REPLY_TOKENS": "512"}
    env["DISCO_CONTEXT_TOKENS"] = "8192"
    meta = load_config(None, meta_model_overrides("m", "http://127.0.0.1:1/v1"), env=env).models.meta
    assert (meta.structured, meta.timeout_s, meta.max_tokens, meta.context_tokens) == (
        "json_object", 600, 512, 8192,
    )  # fmt: skip
    flags = meta_model_overrides(
        "m", None, structured="function_calling", timeout_s=30, reply_tokens=64, inner_model="small",
        inner_base_url="http://127.0.0.1:2/v1", context_tokens=4096,
    )  # fmt: skip
    config = load_config(None, flags, env=env)
    meta = config.models.meta
    assert (meta.structured, meta.timeout_s, meta.max_tokens, meta.context_tokens) == (
        "function_calling", 30, 64, 4096,
    )  # fmt: skip
    assert config.models.inner.model == "small" and config.models.inner.base_url == "http://127.0.0.1:2/v1"


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--structured", "yaml"], {}, "structured: Input should be 'auto', 'json_schema'"),
        (["--reply-tokens", "0"], {}, "max_tokens: Input should be greater than 0"),
        ([], {"DISCO_CONTEXT_TOKENS": "big"}, "DISCO_CONTEXT_TOKENS: Input should be a valid integer"),
        ([], {"DISCO_TIMEOUT_S": "soon"}, "DISCO_TIMEOUT_S: Input should be a valid number"),
    ],
)
def test_bad_model_settings_are_one_sentence(
    tmp_path: Path, args: list[str], env: dict[str, str], message: str
) -> None:
    proc = cli(
        tmp_path, "run", "--model", "m", "--base-url", "http://127.0.0.1:9/v1", *args, env=CLEAN_ENV | env
    )
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
