"""disco against a real llama-cpp-python server (issue 18.9), run by `make test-llm`: the capability probe,
the README's run command with no config file in default auto mode, the token cap, every token counted,
the server killed mid-call and restarted, and an agent system whose inner model is the same server."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from conftest import MODEL, REPO, LlamaServer

CAP = 256
CLEAN_ENV = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "DISCO_"))}
CLEAN_ENV |= {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def disco(home: Path, *args: str, env: dict[str, str], timeout: float = 900) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "agent.cli", "--home", str(home), *args]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def events(run: Path) -> list[dict]:
    lines = (run / "events.jsonl").read_text().splitlines() if (run / "events.jsonl").exists() else []
    return [json.loads(line) for line in lines if line.endswith("}")]


def test_probe_says_what_the_real_server_honours(llama: LlamaServer, tmp_path: Path) -> None:
    proc = disco(tmp_path, "models", "probe", "--base-url", llama.base_url, "--json", env=CLEAN_ENV)
    assert proc.returncode == 0, proc.stderr
    found = json.loads(proc.stdout)
    assert found["model"] == MODEL, "the server's only model, taken without --model"
    assert found["modes"]["json_schema"].startswith("refused"), found  # llama-cpp-python: HTTP 500
    assert found["best_mode"] != "json_schema"
    assert found["caps"]["max_tokens"] == "ok", found
    # ignored: a reply ran past the cap; unknown, rarely: the small model, sampled, stopped by itself under
    # it three times. Never ok: the server does not cut a reply at that field.
    assert found["caps"]["max_completion_tokens"].startswith(("ignored", "unknown")), found
    assert found["tools_auto"].startswith("ignored: answered in text"), found  # chatml: no tool calls on auto


def test_chat_on_a_server_that_ignores_tool_choice_auto(llama: LlamaServer, tmp_path: Path) -> None:
    """The chat takes the probe's word: its tools go in the prompt, a JSON reply calls them; the person is
    told. A 135M model may or may not call one: the mechanics are asserted, not the model's choice."""
    from agent.home import set_home
    from tui.chat import ChatService

    assert disco(tmp_path, "models", "probe", "--base-url", llama.base_url, env=CLEAN_ENV).returncode == 0
    set_home(tmp_path)
    try:
        meta = {"model": MODEL, "base_url": llama.base_url, "max_tokens": CAP}
        service = ChatService("dpo", overrides={"models": {"meta": meta}})
        lines = service.ask("Which candidates in memory are the best? Use a tool.")
    finally:
        set_home(None)
    said = [line.text for line in lines]
    assert said[0] == "chat: tools by a JSON reply in text (the server ignores tool_choice: auto)", said
    assert len(said) == 2 and said[1].strip(), said


def test_the_readme_run_command_designs_and_checks(
    llama: LlamaServer, tmp_path: Path, shared_cache: Path
) -> None:
    """`disco run --max-candidates 2 --base-url URL` with no config file and no --model: the run probes the
    server, designs and checks candidates without a pause or an outage, no reply runs past the cap, and
    the status counts every token the server reported or disco counted."""
    env = CLEAN_ENV | {"DISCO_CACHE": str(shared_cache)}
    args = ("run", "--max-candidates", "2", "--base-url", llama.base_url, "--preset", "tiny")
    proc = disco(tmp_path, *args, "--reply-tokens", str(CAP), "--run-id", "real", env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp_path / "runs" / "real"
    status = json.loads((run / "status.json").read_text())
    assert status["state"] == "finished", status
    logged = events(run)
    kinds = [e["kind"] for e in logged]
    assert "check" in kinds, f"no candidate reached the checks: {proc.stderr[-3000:]}"
    outages = [e for e in logged if e["kind"] == "error" and e["payload"].get("error_kind") in
               ("unreachable", "server", "timeout", "refused")]  # fmt: skip
    assert not outages, outages
    assert "paused" not in proc.stderr
    assert any(e["kind"] == "tool" and e["payload"].get("tool") == "probe_model" for e in logged)
    calls = [e["payload"] for e in logged if e["kind"] == "llm" and not e["payload"].get("cached")]
    assert calls and all(c["completion_tokens"] <= CAP * max(c["attempts"], 1) for c in calls), calls
    assert max(c["completion_tokens"] for c in calls) > 0
    spent = sum(c["prompt_tokens"] + c["completion_tokens"] for c in calls)
    assert status["prompt_tokens"] + status["completion_tokens"] == spent > 0


def test_the_server_killed_mid_call_pauses_the_run_which_goes_on_after_a_restart(
    llama: LlamaServer, tmp_path: Path, shared_cache: Path
) -> None:
    config = tmp_path / "disco.toml"
    config.write_text(
        f'[budget]\nmax_candidates = 1\n[models.meta]\nmodel = "{MODEL}"\nbase_url = "{llama.base_url}"\n'
        f"max_tokens = {CAP}\nmax_retries = 0\n"
        '[targets.dpo]\npreset = "tiny"\n[endpoint]\nbackoff_s = [1.0]\nprobe_every_s = 2.0\n'
    )
    env = CLEAN_ENV | {"DISCO_CACHE": str(shared_cache)}
    cmd = [sys.executable, "-m", "agent.cli", "--home", str(tmp_path), "run", "--config", str(config)]
    proc = subprocess.Popen([*cmd, "--run-id", "kill"], cwd=REPO, env=env, stderr=subprocess.PIPE, text=True)
    run = tmp_path / "runs" / "kill"
    deadline = time.monotonic() + 300
    while not any(e["kind"] == "llm" for e in events(run)) and time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        time.sleep(0.05)
    llama.kill()  # the design's answer came; the reflection's request is under way
    while not any(e["kind"] == "error" for e in events(run)) and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(3)
    llama.start()
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    logged = events(run)
    failed = [e["payload"] for e in logged if e["kind"] == "error"]
    assert failed and failed[0]["error_kind"] in ("unreachable", "server"), failed
    assert json.loads((run / "status.json").read_text())["state"] == "finished"
    recorded = [e["candidate"] for e in logged if e["kind"] == "candidate"]
    assert recorded == ["kill-0001"], "recorded once, nothing lost or done twice"


def test_a_design_longer_than_the_servers_context_is_cut_to_fit(llama: LlamaServer) -> None:
    """llama-cpp-python states no window; a request over its n_ctx (8192) is refused with a message that
    names it. The design then shows fewer past attempts until the prompt fits, and the model answers (a
    135M model may answer badly: that is the model's to fix, not a prompt too long)."""
    sys.path.insert(0, str(REPO / "tests"))
    from test_context_window import crowded

    from agent.designers import ModelDesigner
    from agent.models import ModelError, ModelSettings, StructuredModel

    ctx = crowded()
    for section in (ctx.best, ctx.similar, ctx.failures):
        for past in section:
            past.code = past.code * 3  # ~20k tokens of past attempts: over the window
    settings = ModelSettings(
        model=MODEL, base_url=llama.base_url, max_tokens=CAP, timeout_s=300, fix_attempts=0, max_retries=0
    )
    calls: list = []
    model = StructuredModel(settings, on_call=calls.append)
    try:
        ModelDesigner(model, MODEL).design("c1/design", ctx)
    except ModelError as err:
        assert err.kind in ("malformed", "empty"), err.message
    assert model.window == 8192, "the window the server named was not learned"
    size = [sum(len(m["content"]) for m in call.messages) for call in calls]
    assert calls[0].error_kind == "too_long" and calls[-1].error_kind in (None, "malformed", "empty")
    assert size[-1] < size[0] and all(c.error_kind == "too_long" for c in calls[:-1]), size


def test_an_agent_system_runs_its_inner_model_on_the_real_server(
    llama: LlamaServer, tmp_path: Path, shared_cache: Path
) -> None:
    """ADAS with its inner agents on the same server (the offline proposer designs, so that a valid agent
    reaches evaluation whatever a 135M model would write): the agent is checked and evaluated through the
    sandbox and the proxy, its inner-model cost and CoT-SC at matched cost are on the leaderboard, and
    no inner reply runs past the cap."""
    data = tmp_path / "drop.jsonl.gz"  # DROP: any short text is an answer of the right form
    with gzip.open(data, "wt", encoding="utf-8") as fh:
        for passage, question, gold in (("Ann has 3 cats.", "How many cats?", "3"),
                                        ("The Danes won the game.", "Who won?", "Danes")):  # fmt: skip
            row = {"context": f"Passage: {passage}\nQuestion: {question}\nAnswer:", "ref_text": gold}
            fh.write(json.dumps(row) + "\n")
    config = tmp_path / "adas.toml"
    config.write_text(
        f'target = "adas"\n[budget]\nmax_candidates = 1\n[loop]\nseed_archive = "skip"\n'
        f'[models.inner]\nmodel = "{MODEL}"\nbase_url = "{llama.base_url}"\nmax_tokens = {CAP}\n'
        f'timeout_s = 300\n[targets.adas]\nbenchmark = "drop"\ndata_path = "{data}"\nn_valid = 2\n'
        "probe_items = 1\nbaseline_chains = 2\nconcurrency = 1\ntask_timeout_s = 600\n",
        encoding="utf-8",
    )
    env = CLEAN_ENV | {"DISCO_CACHE": str(shared_cache)}
    proc = disco(tmp_path, "run", "--config", str(config), "--run-id", "agents", env=env, timeout=1500)
    assert proc.returncode == 0, proc.stderr[-3000:]
    shown = json.loads(disco(tmp_path, "runs", "show", "agents", "--json", env=env).stdout)
    [row] = shown["candidates"]
    assert row["status"] == "evaluated", row
    assert row["inner_calls"] >= 2 and row["inner_tokens"] > 0, row
    assert 1 <= row["cot_sc_chains"] <= 2 and row["cot_sc_verdict"], row
    folder = tmp_path / "runs" / "agents" / "candidates" / row["id"]
    saved = json.loads((folder / "evaluation.json").read_text())
    calls, tokens = saved["metrics"]["model_calls"], saved["metrics"]["completion_tokens"]
    assert tokens <= CAP * calls, saved["metrics"]
    assert saved["details"]["cot_sc"]["measured_tokens"] > 0
    table = disco(tmp_path, "runs", "show", "agents", env=env).stdout
    assert "vs CoT-SC:" in table and "inner" in table, table
