"""Attaching to a run that another process is writing: the real `disco run` (offline, the tiny preset) in a
subprocess, the app tailing its events. The leaderboard fills, /hint is acknowledged and reaches a design,
/pause pauses the runner, and quitting leaves the run going: it records more candidates after the TUI left."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from agent_helpers import REPO, wait_for
from test_tui_helpers import board, text_of, until

from agent.control import parse_command, send
from agent.runs import RunDir
from tui.app import make_app
from tui.screens.dialogs import QuitScreen
from tui.services import QuitResult

pytestmark = pytest.mark.anyio
SHOWN = ("ok", "better", "worse", "≈ base")
"""An evaluated candidate's status: its verdict against the baseline once it has one."""
RUN = "live"


def _start(home: Path, shared_cache: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "DISCO_MODEL", "DISCO_HOME"))}
    env["DISCO_CACHE"] = str(shared_cache)
    cmd = [
        sys.executable,
        "-m",
        "agent.cli",
        "--home",
        str(home),
        "run",
        "--model",
        "offline",
        "--preset",
        "tiny",
    ]
    cmd += ["--max-candidates", "200", "--run-id", RUN, "--quiet"]
    log = (home.parent / "runner.log").open("wb")
    return subprocess.Popen(
        cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )


async def test_attach_to_a_run_that_another_process_is_writing(home: Path, shared_cache: Path) -> None:
    home.mkdir(parents=True, exist_ok=True)
    proc = _start(home, shared_cache)
    run = RunDir(home / "runs" / RUN)
    try:
        assert wait_for(run.meta_path.exists, 120), (home.parent / "runner.log").read_text()
        app = make_app(home, RUN, poll_s=0.1)
        async with app.run_test(size=(160, 50)) as pilot:
            await until(pilot, lambda: any(r[2] in SHOWN for r in board(app)), 300, "a candidate")
            assert "running" in text_of(app, "#status") and "/200" in text_of(app, "#progress")
            prompt = app.screen.query_one("#prompt")
            prompt.value = "/hint keep the loss bounded"
            await pilot.press("enter")
            await until(pilot, lambda: "runner ✓ /hint (from tui)" in text_of(app), 120, "the runner's ack")
            reached = "↳ your hint reached this design: keep the loss bounded"
            await until(pilot, lambda: reached in text_of(app), 120, "the hint in a design")
            prompt.value = "/pause"
            await pilot.press("enter")
            # acknowledged at once, with the step it waits for (the runner applies it at the boundary)
            acked = "next step boundary: pausing after"
            await until(pilot, lambda: acked in text_of(app), 10, "the pause's acknowledgement")
            await until(
                pilot, lambda: "paused (paused by the person)" in text_of(app, "#status"), 120, "paused"
            )
            assert run.status().state == "paused"
            await pilot.press("ctrl+q")
            assert isinstance(app.screen, QuitScreen)
            await pilot.press("enter")
            await pilot.pause()
        assert app.return_value == QuitResult(RUN, alive=True)
        assert proc.poll() is None and run.runner_alive(), "the run goes on without the TUI"
        paused_at = run.status().candidates
        send(run.control_path, parse_command("resume"))
        assert wait_for(lambda: run.status().candidates > paused_at, 180), "it records candidates headless"
    finally:
        send(run.control_path, parse_command("stop"))
        try:
            proc.wait(120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(30)
    assert run.status().state == "stopped" and "stopped by the person" in run.status().reason
