"""The real `disco tui` in a real terminal (tmux, 100×30) against an offline run: tests/tmux_tui.py, run as
a person would run it. It reads the screen with capture-pane, so it sees what a person sees."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from agent_helpers import REPO

STEPS = (
    "the leaderboard fills",
    "the runner acknowledges /hint",
    "the hint reaches a design",
    "the run pauses",
    "quitting asks",
    "the terminal says the run goes on",
    "the TUI exited cleanly",
    "the runner (pid",
    "headless, it recorded candidate",
)


def test_tmux_drives_the_real_tui(shared_cache: Path, tmp_path: Path) -> None:
    # `make test` installs tmux (test-deps): a machine without it fails here rather than skipping.
    assert shutil.which("tmux"), "tmux is not installed: apt-get install -y tmux (or run `make test`)"
    cmd = [sys.executable, str(REPO / "tests" / "tmux_tui.py"), "--cache", str(shared_cache)]
    cmd += ["--out", str(tmp_path / "screens")]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    for step in STEPS:
        assert f"ok: {step}" in proc.stdout, proc.stdout
    seen = "\n".join(p.read_text() for p in sorted((tmp_path / "screens").glob("*.txt")))
    assert "Traceback" not in seen


ANSWER = "Try a bounded hinge on the margin next."


@pytest.mark.parametrize("size", [(100, 30), (80, 24)], ids=["100x30", "80x24"])
def test_disco_chat_talks_to_the_model_given_on_its_command_line(
    tmp_path: Path, size: tuple[int, int]
) -> None:
    """`disco chat --model M --base-url U` in a real terminal: the answer comes from M at U (it used to
    have no such flags, and `disco tui --model M` showed M and answered "No model is configured"). At 80×24
    the panes stack: the answer reads on one line (beside the 54-column run list it wrapped every 20)."""
    from fake_openai import FakeOpenAI
    from tmux_tui import SESSION, screen, tmux

    env = {"DISCO_HOME": str(tmp_path / "home"), "OPENAI_API_KEY": "k", "HF_HUB_OFFLINE": "1"}
    with FakeOpenAI(model="tiny-chat") as server:
        server.script([ANSWER])
        cmd = [
            sys.executable,
            "-m",
            "agent.cli",
            "chat",
            "--model",
            "tiny-chat",
            "--base-url",
            server.base_url,
        ]
        shell = " ".join(["env", "-u", "DISCO_MODEL", "-u", "OPENAI_BASE_URL"])
        shell += " " + " ".join(f"{k}={v}" for k, v in env.items()) + " " + " ".join(cmd)
        width, height = (str(n) for n in size)
        tmux("new-session", "-d", "-s", SESSION, "-x", width, "-y", height, "-c", str(REPO), shell)
        try:
            _wait_for(screen, lambda s: "tiny-chat" in s, "the chat names the model it was given")
            tmux("send-keys", "-t", SESSION, "what should I try next?", "Enter")
            seen = _wait_for(screen, lambda s: "bounded hinge" in s, "the model's answer", timeout=180)
            assert "No model is configured" not in seen
            if size[0] < 100:
                assert ANSWER in seen, f"the answer is wrapped in a narrow pane:\n{seen}"
        finally:
            tmux("kill-server")
        assert server.requests and server.requests[0]["model"] == "tiny-chat"
        assert "what should I try next?" in server.requests[0]["messages"][-1]["content"]


def _wait_for(read: Callable[[], str], ok: Callable[[str], bool], what: str, timeout: float = 60) -> str:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        text = read()
        if ok(text):
            return text
        time.sleep(0.25)
    raise AssertionError(f"waited {timeout:g} s for {what}; the screen:\n{read()}")
