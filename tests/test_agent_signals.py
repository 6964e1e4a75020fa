"""Signals as a terminal, `timeout`, systemd or Slurm send them, to the whole process group of a real
`disco run`: a first SIGINT / SIGTERM / SIGHUP finishes the step and stops cleanly (no traceback, no
leaked resources, the resume command shown); a second SIGINT stops inside the step; `disco resume` then
ends the run with every candidate recorded and evaluated once."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
from agent_helpers import logged_events, start_cli

CASES = [  # (signal, the node it arrives in, how many times)
    pytest.param(signal.SIGINT, "evaluate", 1, id="ctrl-c-in-evaluate"),
    pytest.param(signal.SIGHUP, "check", 1, id="sighup-in-check"),
    pytest.param(signal.SIGINT, "evaluate", 2, id="ctrl-c-twice-in-evaluate"),
]


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
    config.write_text(
        '[budget]\nmax_candidates = 2\n[targets.dpo]\npreset = "tiny"\nworkers = 1\n'
        "[evidence]\nstages = [2]\n"
    )
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
        assert any(e["kind"] == ("evaluation" if node == "evaluate" else "check") for e in after), after
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
