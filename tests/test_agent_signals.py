"""Signals as a terminal, `timeout`, systemd or Slurm send them, to the whole process group of a real
`disco run`, at each kind of step (design with a model call in flight, check, evaluate, confirm): a first
SIGINT / SIGTERM / SIGHUP finishes the step and stops cleanly (no traceback, no leaked resources, the
resume command shown); a second SIGINT stops inside the step; `disco resume` then ends the run with every
candidate recorded and evaluated once. And Ctrl-C typed in a real terminal (tmux), which reaches the
training workers too."""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import time
from pathlib import Path

import pytest
from agent_helpers import REPO, distinct, kind_of, logged_events, scripted_model, start_cli
from fake_openai import Delay, FakeOpenAI

CASES = [  # (signal, the node it arrives in, how many times)
    pytest.param(signal.SIGINT, "evaluate", 1, id="ctrl-c-in-evaluate"),
    pytest.param(signal.SIGHUP, "check", 1, id="sighup-in-check"),
    pytest.param(signal.SIGINT, "evaluate", 2, id="ctrl-c-twice-in-evaluate"),
    pytest.param(signal.SIGTERM, "confirm", 1, id="sigterm-in-confirm"),
]
LOGGED_AFTER = {"evaluate": "evaluation", "check": "check", "confirm": "evidence"}
"""What the step logs when it finishes: a step cut by the signal would not have logged it."""
CONFIG = (
    '[budget]\nmax_candidates = 2\n[targets.dpo]\npreset = "tiny"\nworkers = 1\n[evidence]\nstages = [2]\n'
)


def _wait_for_node(run: Path, node: str, proc, timeout: float = 300) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        for event in logged_events(run):
            payload = event["payload"]
            if event["kind"] == "node" and payload.get("node") == node and payload.get("phase") == "enter":
                return event
        time.sleep(0.02)
    raise AssertionError(f"the run never entered {node}: {proc.poll()=}")


@pytest.mark.parametrize(("sig", "node", "times"), CASES)
def test_a_signal_to_the_process_group_stops_cleanly_and_resume_finishes(
    tmp_path: Path, shared_cache: Path, sig: signal.Signals, node: str, times: int
) -> None:
    home, run = tmp_path / "home", tmp_path / "home" / "runs" / "sig"
    config = tmp_path / "disco.toml"
    config.write_text(CONFIG)
    env = os.environ | {"DISCO_CACHE": str(shared_cache), "DISCO_MODEL": "offline"}
    proc = start_cli(home, ["run", "--config", str(config), "--run-id", "sig"], env)
    entered = _wait_for_node(run, node, proc)
    time.sleep(0.5)  # inside the step: training workers or the sandbox are at work
    for _ in range(times):
        os.killpg(proc.pid, sig)  # the whole group, as a terminal's Ctrl-C or `timeout` does
        time.sleep(0.3)
    _, err = proc.communicate(timeout=300)

    assert proc.returncode == 0, err[-3000:]
    assert "Traceback" not in err and "leaked" not in err, err[-3000:]
    assert f"{signal.Signals(sig).name}: stopping after the current step" in err
    assert "disco resume sig" in err
    status = json.loads((run / "status.json").read_text())
    assert status["state"] == "stopped", status
    if times == 1:
        assert "stopped by a signal" in status["reason"]
        # the step it arrived in was finished and logged, not cut
        after = [e for e in logged_events(run) if e["seq"] > entered["seq"]]
        assert any(e["kind"] == LOGGED_AFTER[node] for e in after), after
    else:
        assert "interrupted twice" in status["reason"]

    proc = start_cli(home, ["resume", "sig"], env)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    events = logged_events(run)
    recorded = [e["candidate"] for e in events if e["kind"] == "candidate"]
    assert recorded == ["sig-0001", "sig-0002"]
    evaluations = [e["candidate"] for e in events if e["kind"] == "evaluation"]
    assert len(evaluations) == len(set(evaluations)), f"evaluated twice: {evaluations}"
    assert json.loads((run / "status.json").read_text())["state"] == "finished"


def _stopped_cleanly(run: Path, err: str, run_id: str) -> None:
    assert "Traceback" not in err and "leaked" not in err, err[-3000:]
    assert f"disco resume {run_id}" in err, err[-3000:]
    status = json.loads((run / "status.json").read_text())
    assert status["state"] == "stopped" and "stopped by a signal" in status["reason"], status


def test_sigterm_while_the_design_call_is_in_flight_waits_for_the_answer(
    tmp_path: Path, shared_cache: Path
) -> None:
    """The design's model call takes 3 s; SIGTERM arrives 0.5 s into it. The answer is kept (not paid for
    twice): after `disco resume` the model was asked for that design exactly once."""
    home, run = tmp_path / "home", tmp_path / "home" / "runs" / "des"
    config = tmp_path / "disco.toml"
    config.write_text(CONFIG)
    answer = scripted_model(distinct)
    with FakeOpenAI() as server:
        server.default = lambda body: Delay(3, answer(body)) if kind_of(body) == "design" else answer(body)
        env = os.environ | {
            "DISCO_CACHE": str(shared_cache),
            "OPENAI_BASE_URL": server.base_url,
            "OPENAI_API_KEY": "sk-test",
            "DISCO_MODEL": "fake-model",
        }
        proc = start_cli(home, ["run", "--config", str(config), "--run-id", "des"], env)
        entered = _wait_for_node(run, "design", proc)
        time.sleep(0.5)
        os.killpg(proc.pid, signal.SIGTERM)
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-3000:]
        assert "SIGTERM: stopping after the current step" in err
        _stopped_cleanly(run, err, "des")
        after = [e for e in logged_events(run) if e["seq"] > entered["seq"]]
        assert any(
            e["kind"] == "node" and e["payload"].get("node") == "design" and "name" in e["payload"]
            for e in after
        ), "the design in flight was finished and logged"
        proc = start_cli(home, ["resume", "des"], env)
        _, err = proc.communicate(timeout=600)
        designs = [b for b in server.requests if kind_of(b) == "design"]
    assert proc.returncode == 0, err[-3000:]
    assert len(designs) == 2, "each candidate designed once: the answer in flight at the signal was kept"
    recorded = [e["candidate"] for e in logged_events(run) if e["kind"] == "candidate"]
    assert recorded == ["des-0001", "des-0002"]


def test_ctrl_c_in_a_real_terminal_stops_after_the_step(tmp_path: Path, shared_cache: Path) -> None:
    """`disco run` in tmux, Ctrl-C typed while the training workers run: the terminal's SIGINT reaches
    the whole foreground group, workers included. What the person sees: one line saying it stops after
    the step, the resume command, no traceback, the shell prompt back with exit status 0."""
    from tmux_tui import SESSION, screen, tmux

    home, run = tmp_path / "home", tmp_path / "home" / "runs" / "tc"
    config = tmp_path / "disco.toml"
    config.write_text(CONFIG)
    env = f"env DISCO_CACHE={shared_cache} DISCO_MODEL=offline HF_HUB_OFFLINE=1"
    cmd = f"{sys.executable} -m agent.cli --home {home} run --config {config} --run-id tc"
    tmux("new-session", "-d", "-s", SESSION, "-x", "120", "-y", "40", "-c", str(REPO))
    try:
        tmux("send-keys", "-t", SESSION, f"{env} {cmd}; echo EXIT=$?", "Enter")
        deadline = time.monotonic() + 300
        while not (run / "events.jsonl").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        entered = _wait_for_node(run, "evaluate", _Alive(), timeout=300)
        time.sleep(0.5)
        tmux("send-keys", "-t", SESSION, "C-c")
        deadline = time.monotonic() + 300
        while not re.search(r"EXIT=\d", screen()) and time.monotonic() < deadline:
            time.sleep(0.25)
        seen = tmux("capture-pane", "-p", "-t", SESSION, "-S", "-200")
    finally:
        tmux("kill-server")
    assert "EXIT=0" in seen, seen
    assert "SIGINT: stopping after the current step" in seen and "disco resume tc" in seen, seen
    assert "Traceback" not in seen and "KeyboardInterrupt" not in seen and "leaked" not in seen, seen
    status = json.loads((run / "status.json").read_text())
    assert status["state"] == "stopped" and "stopped by a signal" in status["reason"], status
    after = [e for e in logged_events(run) if e["seq"] > entered["seq"]]
    assert any(e["kind"] == "evaluation" for e in after), "the evaluation under way was finished"


class _Alive:
    """A process handle for _wait_for_node when the run is a tmux pane's child (not ours to poll)."""

    @staticmethod
    def poll() -> None:
        return None
