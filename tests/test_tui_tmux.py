"""The real `disco tui` in a real terminal (tmux, 100×30) against an offline run: tests/tmux_tui.py, run as
a person would run it. It reads the screen with capture-pane, so it sees what a person sees."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

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
