"""Drive the real `disco tui` in tmux (100×30) against an offline run, the way a person would.

    python tests/tmux_tui.py [--cache DIR] [--out DIR] [--keep]

It starts a new offline run from the TUI (`disco tui --model offline --preset tiny …`) and checks, by
reading the screen with `tmux capture-pane`: the leaderboard fills; `/hint` is acknowledged by the runner
and reaches the next design; `/pause` pauses the run; Ctrl+Q asks, Enter leaves, and the terminal says
the run goes on headless. Then, with the TUI gone: the runner is still alive, and after `disco control
RUN resume` it records more candidates. It stops the run at the end. Exit code 0 when every step held;
the screens it saw are written to --out. The command is `disco tui`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SOCKET = f"disco-tui-{os.getpid()}"
SCORED = re.compile(r"[+-]\d\.\d\d\[[+-]\d\.\d\d,[+-]\d\.\d\d\] +\d+")
EVALUATED = re.compile(r" (ok|better|worse|≈ base) ")
"""An evaluated row's status: its verdict against the baseline once it has fresh seeds, else `ok`."""
"""A leaderboard row's fresh difference to DPO with its interval and n, as the TUI draws it."""
SESSION = "tui"
RUN = "tmux-run"


def tmux(*args: str) -> str:
    # COLUMNS / LINES (pytest sets them) would override the window's real size inside the TUI.
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    out = subprocess.run(["tmux", "-L", SOCKET, *args], capture_output=True, text=True, timeout=30, env=env)
    return out.stdout


def screen() -> str:
    return tmux("capture-pane", "-p", "-t", SESSION)


class Driver:
    def __init__(self, out: Path) -> None:
        self.out = out
        self.started = time.monotonic()
        self.steps: list[tuple[str, float]] = []

    def wait(self, what: str, ok: Callable[[str], bool], timeout: float = 180.0) -> str:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            text = screen()
            if ok(text):
                self.steps.append((what, time.monotonic() - self.started))
                (self.out / f"{len(self.steps):02d}.txt").write_text(f"# {what}\n{text}")
                print(f"[{time.monotonic() - self.started:6.1f}s] ok: {what}", flush=True)
                return text
            time.sleep(0.25)
        (self.out / "timeout.txt").write_text(screen())
        raise SystemExit(f"FAILED waiting for: {what}\n--- screen ---\n{screen()}")

    def type(self, text: str) -> None:
        tmux("send-keys", "-t", SESSION, "-l", text)
        tmux("send-keys", "-t", SESSION, "Enter")


def disco_cmd(home: Path) -> list[str]:
    """`disco --home H tui`."""
    return [sys.executable, "-m", "agent.cli", "--home", str(home), "tui"]


def status(home: Path) -> dict:
    try:
        return json.loads((home / "runs" / RUN / "status.json").read_text())
    except (OSError, ValueError):
        return {}


def alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def control(home: Path, action: str) -> None:
    cmd = [sys.executable, "-m", "agent.cli", "--home", str(home), "control", RUN, action]
    subprocess.run(cmd, check=True, capture_output=True, cwd=REPO, timeout=120)


def drive(home: Path, out: Path, env: dict[str, str]) -> None:
    d = Driver(out)
    cmd = [
        *disco_cmd(home),
        "--model",
        "offline",
        "--preset",
        "tiny",
        "--max-candidates",
        "200",
        "--run-id",
        RUN,
    ]
    shell = f"cd {REPO} && {' '.join(cmd)}; echo TUI-EXITED $?; sleep 600"
    tmux_env = [
        x for k, v in env.items() if k.startswith(("DISCO_", "HF_", "TOKENIZERS")) for x in ("-e", f"{k}={v}")
    ]
    tmux("new-session", "-d", "-s", SESSION, "-x", "100", "-y", "30", *tmux_env, shell)
    up = d.wait("the TUI is up", lambda s: "leaderboard" in s and "conversation" in s, 120)
    if len(up.splitlines()[1]) != 100:
        raise SystemExit(f"FAILED: the TUI is not drawn at 100 columns:\n{up}")
    d.wait(
        "the leaderboard fills",
        lambda s: any(EVALUATED.search(line) and SCORED.search(line) for line in s.splitlines()),
        300,
    )
    d.type("/hint bounded")
    # The acknowledgement scrolls out of the conversation pane within a few candidates on a fast run; the
    # progress pane's "your hint reached #N's design" stays, and says more (the runner applied it).
    d.wait(
        "the runner acknowledges /hint",
        lambda s: "runner ✓ /hint (from tui)" in s or "✓ your hint reached #" in s,
        120,
    )
    d.wait(
        "the hint reaches a design", lambda s: "'s design: bounded" in s and "✓ your hint reached #" in s, 120
    )
    d.type("/pause")
    d.wait("the run pauses", lambda s: "paused (paused by the person)" in s.splitlines()[0], 120)
    if status(home).get("state") != "paused":
        raise SystemExit(f"FAILED: status.json says {status(home)}")
    tmux("send-keys", "-t", SESSION, "C-q")
    d.wait("quitting asks", lambda s: "It goes on headless when you leave" in s, 30)
    tmux("send-keys", "-t", SESSION, "Enter")
    d.wait("the terminal says the run goes on", lambda s: f"goes on headless: `disco tui {RUN}`" in s, 30)
    d.wait("the TUI exited cleanly", lambda s: "TUI-EXITED 0" in s and "Traceback" not in s, 30)
    before = status(home)
    if not alive(before.get("pid")):
        raise SystemExit(f"FAILED: the runner is gone after quitting: {before}")
    print(f"[{time.monotonic() - d.started:6.1f}s] ok: the runner (pid {before['pid']}) outlives the TUI")
    control(home, "resume")
    end = time.monotonic() + 180
    while status(home).get("candidates", 0) <= before.get("candidates", 0):
        if time.monotonic() > end:
            raise SystemExit(f"FAILED: no candidate recorded after the TUI left: {status(home)}")
        time.sleep(0.5)
    done = status(home)["candidates"]
    print(f"[{time.monotonic() - d.started:6.1f}s] ok: headless, it recorded candidate {done}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--cache", type=Path, help="DISCO_CACHE to share built artefacts (default: a temp dir)"
    )
    parser.add_argument("--out", type=Path, help="where to write the screens seen (default: in the temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir")
    args = parser.parse_args()
    if shutil.which("tmux") is None:
        print("tmux is not installed (apt-get install -y tmux)", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="disco-tmux-"))
    home, out = tmp / "home", args.out or tmp / "screens"
    out.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "DISCO_MODEL", "DISCO_HOME"))}
    env |= {
        "DISCO_CACHE": str(args.cache or tmp / "cache"),
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
    }
    os.environ.update(env)
    try:
        drive(home, out, env)
    finally:
        pid = status(home).get("pid")
        if alive(pid):
            control(home, "stop")
            end = time.monotonic() + 120
            while alive(pid) and time.monotonic() < end:
                time.sleep(0.5)
        tmux("kill-server")
        if not args.keep and args.out is None:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"all steps held; screens in {out}" if args.out or args.keep else "all steps held")
    return 0


if __name__ == "__main__":
    sys.exit(main())
