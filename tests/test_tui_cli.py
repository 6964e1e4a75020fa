"""`disco tui` and `disco chat` as commands:
what a person can get wrong gets one sentence and exit code 2, before any screen opens."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from agent_helpers import REPO
from test_tui_helpers import write_run

CLEAN_ENV = {
    k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "DISCO_MODEL", "DISCO_HOME"))
}


def tui_cli(home: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "agent.cli", "--home", str(home), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180, cwd=REPO, env=CLEAN_ENV)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["tui", "nope"], "no run 'nope' under"),
        (["tui", "demo", "--preset", "tiny"], "--preset only apply to a new run; `disco tui demo` attaches"),
        (["tui", "--run-id", "demo"], "run demo already exists; `disco tui demo` attaches to it"),
        (["tui", "--target", "chess", "--model", "offline"], "the run did not start: unknown target 'chess'"),
    ],
)
def test_mistakes_get_one_sentence_and_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    home = tmp_path / "home"
    write_run(home)
    proc = tui_cli(home, *args)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].endswith(".")


def test_help_names_both_commands(tmp_path: Path) -> None:
    proc = tui_cli(tmp_path, "--help")
    assert proc.returncode == 0 and "tui" in proc.stdout and "chat" in proc.stdout
    proc = tui_cli(tmp_path, "tui", "--help")
    assert proc.returncode == 0 and "attach to RUN" in proc.stdout.replace("\n", " ")
