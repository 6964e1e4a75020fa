"""Shared set-up of the agent tests: a data dir per test on one shared cache, a scripted model, and the
real runner driving the real loop (the DPO target's `tiny` preset: seconds per candidate)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from agent.config import RunConfig, load_config
from agent.control import parse_command, send
from agent.events import Event, read_events
from agent.runner import Runner
from agent.runs import RunDir, create_run
from targets.dpo.zoo import get_zoo_loss

REPO = Path(__file__).resolve().parents[1]

GOOD_CODE = (
    get_zoo_loss("ipo")
    .code.replace("def ipo_loss", "def scripted_loss")
    .replace("1 / (2 * self.beta)", "1 / (1.5 * self.beta)")
)
"""A valid loss that is no published one (IPO with another target margin): memory knows IPO itself."""
_STEPS = ("design", "reflect1", "reflect2", "repair")


def distinct(step: str, n: int) -> str:
    """A valid loss that behaves differently for every (step, n): the novelty gate compares behaviour,
    so renaming a function is not enough to make a new candidate."""
    scale = 1.0 + 0.25 * (_STEPS.index(step) if step in _STEPS else 4) + 1.5 * n
    return f"""
def {step}_{n}_loss(
    self, policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps
):
    rho = (policy_chosen_logps - policy_rejected_logps) - (reference_chosen_logps - reference_rejected_logps)
    return F.softplus(-self.beta * rho * {scale:.2f}) / {scale:.2f}  # (B,) DPO at a sharper temperature
"""


BROKEN_CODE = """
def broken_loss(
    self, policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps
):
    return undefined_name * 2
"""


def tiny_config(**overrides: Any) -> RunConfig:
    base: dict[str, Any] = {
        "targets": {"dpo": {"preset": "tiny", "workers": 1}},
        "budget": {"max_candidates": 2},
        # One stage of two seeds: the evidence rule (the race) still runs, at a fraction of its default cost.
        "evidence": {"stages": [2]},
    }
    for key, value in overrides.items():
        base[key] = base.get(key, {}) | value if key in ("budget", "evidence") else value
    return load_config(None, base, env={})


def start(runs_root: Path, config: RunConfig, run_id: str, **kw: Any) -> tuple[Runner, RunDir]:
    run = create_run(runs_root, config, run_id)
    return Runner(run, config, poll_s=0.05, **kw), run


def events(run: RunDir, kind: str | None = None) -> list[Event]:
    return [e for e in read_events(run.events_path) if kind is None or e.kind == kind]


def recorded(run: RunDir) -> list[str]:
    return [e.candidate for e in events(run, "candidate") if e.candidate]


def kind_of(body: dict[str, Any]) -> str:
    """Which step of the loop a chat request comes from, by its prompt's title."""
    user = body["messages"][-1]["content"]
    if user.startswith("# Repair"):
        return "repair"
    if user.startswith("# Reflection 1"):
        return "reflect1"
    if user.startswith("# Reflection 2"):
        return "reflect2"
    if user.startswith("# Design"):
        return "design"
    return "other"


def scripted_model(code_for: Callable[[str, int], str]) -> Callable[[dict[str, Any]], Any]:
    """A responder for FakeOpenAI: answers each step with the code `code_for(step, n)` (n counts calls)."""
    counts: dict[str, int] = {}

    def answer(body: dict[str, Any]) -> dict[str, Any]:
        step = kind_of(body)
        counts[step] = counts.get(step, 0) + 1
        code = code_for(step, counts[step])
        reply = {"thought": f"{step} {counts[step]}", "name": f"{step}_{counts[step]}", "code": code}
        if step.startswith("reflect"):
            reply = {"reflection": f"critique from {step}"} | reply
        return reply

    return answer


def cli(
    home: Path, *args: str, timeout: float = 300, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    full_env = os.environ | (env or {})
    return subprocess.run(
        [sys.executable, "-m", "agent.cli", "--home", str(home), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env=full_env,
    )


def show(home: Path, run_id: str) -> dict[str, Any]:
    proc = cli(home, "runs", "show", run_id, "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def wait_for(predicate: Callable[[], bool], timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.05)
    return False


@contextmanager
def running(runner: Runner, run: RunDir) -> Iterator[threading.Thread]:
    """The runner in a thread; a test that fails midway still stops it (a paused run waits forever)."""
    thread = threading.Thread(target=runner.execute, daemon=True)
    thread.start()
    try:
        yield thread
    finally:
        if thread.is_alive():
            send(run.control_path, parse_command("stop"))
            thread.join(120)


def logged_events(run: Path) -> list[dict[str, Any]]:
    """The run's event log as raw dicts, read while a runner may be writing (a torn last line is skipped)."""
    path = run / "events.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_bytes().decode().splitlines() if line.endswith("}")]


def start_cli(home: Path, args: list[str], env: dict[str, str]) -> subprocess.Popen:
    """`disco --home HOME ARGS --quiet` in its own session, so that a test can kill its process group."""
    cmd = [sys.executable, "-m", "agent.cli", "--home", str(home), *args, "--quiet"]
    return subprocess.Popen(
        cmd,
        cwd=REPO,
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
