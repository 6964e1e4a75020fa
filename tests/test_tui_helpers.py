"""Shared pieces of the TUI tests: a run directory written with the runner's own classes (events, candidate
files, status), a stand-in for the runner's control step, and waiting on a Pilot. Imported by test_tui_*."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent.config import load_config
from agent.control import ControlState, read_commands
from agent.events import (
    BudgetPayload,
    CandidatePayload,
    CheckPayload,
    EvaluationPayload,
    EventLog,
    HumanPayload,
    JobPayload,
    NodePayload,
    RunPayload,
    ToolPayload,
    read_events,
)
from agent.run_state import RunState
from agent.runs import RunDir, RunStatus, create_run
from targets.dpo.zoo import get_zoo_loss
from tools.processes import process_start

RUN_ID = "demo"
LOSSES = (("dpo", "dpo_again", 0.12), ("ipo", "squared_margin", 0.31), ("slic", "hinge_gate", -0.05))
BROKEN = """def broken_loss(self, policy_chosen_logps, policy_rejected_logps, reference_chosen_logps,
                reference_rejected_logps):
    return undefined_name * 2
"""


def fitness(value: float) -> dict[str, float]:
    return {"value": value, "ci_low": value - 0.08, "ci_high": value + 0.06}


def fresh(value: float) -> dict[str, Any]:
    """vs_baseline.json as the confirm step writes it (agent.fresh.Fresh): here the same interval; a clear
    winner as if confirmed (Benjamini–Hochberg calls it better on its confirmation seeds)."""
    fit = fitness(value)
    return {"diff": value, "ci_low": fit["ci_low"], "ci_high": fit["ci_high"], "n_seeds": 4,
            "seeds": [2, 3, 4, 5], "p_value": 0.001 if value > 0.2 else 0.4, "confidence": 0.95,
            "basis": "confirmation" if value > 0.2 else "fresh"}  # fmt: skip


def check_report(passed: bool) -> dict[str, Any]:
    checks = [{"name": "policy", "passed": True, "message": "no forbidden imports", "numbers": {}}]
    if passed:
        checks.append({"name": "finite_extreme", "passed": True, "message": "finite for ρ in ±1000"})
    else:
        checks.append(
            {
                "name": "output_shape",
                "passed": False,
                "message": "NameError: name 'undefined_name' is not defined",
                "line": "return undefined_name * 2",
                "traceback": "Traceback: NameError",
            }
        )
    return {"passed": passed, "checks": checks}


def write_run(home: Path, run_id: str = RUN_ID, state: str = "finished", pid: int | None = None) -> RunDir:
    """A run of three evaluated candidates (the second a child of the first) and one that failed its
    checks after a repair; the events are what the runner writes, in its order."""
    config = load_config(None, {"budget": {"max_candidates": 10}}, env={})
    run = create_run(home / "runs", config, run_id)
    log = EventLog(run.events_path, run.run_id)
    log.append(RunPayload(phase="session", resumed=False, model="offline", pid=4242))
    best, parents = None, []
    for i, (zoo, name, value) in enumerate([*LOSSES, ("broken", "broken_loss", None)], start=1):
        cid = f"{run_id}-{i:04d}"
        code = BROKEN if zoo == "broken" else get_zoo_loss(zoo).code
        log.append(NodePayload(node="plan", phase="enter"))
        log.append(NodePayload(node="plan", phase="leave", seconds=0.0), cid)
        log.append(NodePayload(node="design", phase="enter"), cid)
        log.append(
            NodePayload(node="design", name=name, thought=f"try {zoo}", hints_used=[], parents=parents), cid
        )
        run.write_candidate_file(cid, "design.py", code)
        for round_ in (1, 2):
            log.append(NodePayload(node="reflect", round=round_, skipped=True, why="offline proposer"), cid)
        log.append(NodePayload(node="check", phase="enter"), cid)
        log.append(ToolPayload(tool="run_checks", args={"chars": len(code)}, result="passed"), cid)
        run.write_candidate_file(cid, "check0.json", check_report(value is not None))
        status, error, fit, vs, verdict = "evaluated", None, None, None, None
        if value is None:
            log.append(CheckPayload(passed=False, repairs=0, failures=["output_shape: NameError"]), cid)
            log.append(NodePayload(node="repair", attempt=1, fed=["output_shape"]), cid)
            run.write_candidate_file(cid, "repair1.py", BROKEN.replace("* 2", "* 3"))
            run.write_candidate_file(cid, "check1.json", check_report(False))
            log.append(CheckPayload(passed=False, repairs=1, failures=["output_shape: NameError"]), cid)
            status, error = "check_failed", "still failing after 1 repair(s): output_shape: NameError"
            code = BROKEN.replace("* 2", "* 3")
        else:
            fit = fitness(value)
            log.append(CheckPayload(passed=True, repairs=0, failures=[]), cid)
            run.write_candidate_file(cid, "evaluation.json", {"fitness": fit, "vs_baseline": fitness(value)})
            log.append(
                EvaluationPayload(
                    status="ok", fitness=fit, vs_baseline=fitness(value), reason="", seconds=3.0
                ),
                cid,
            )
            verdict = "first" if best is None else "best" if value > best[1] else "not_better"
            vs = {k: v for k, v in fresh(value).items() if k in ("diff", "ci_low", "ci_high", "n_seeds")}
            run.write_candidate_file(cid, "vs_baseline.json", fresh(value))
        record = {
            "id": cid,
            "name": name,
            "status": status,
            "thought": f"try {zoo}",
            "code": code,
            "fitness": fit,
            "error": error,
            "repair_count": 1 if value is None else 0,
            "parent_ids": parents,
            "generation": i,
            "verdict": verdict,
            "vs_baseline": vs,
        }
        run.write_candidate_file(cid, "record.json", record)
        said = {"name": name, "status": status, "error": error, "fitness": fit, "vs_baseline": vs}
        log.append(CandidatePayload(**said, baseline="DPO", parents=parents, verdict=verdict), cid)
        if value is not None and (best is None or value > best[1]):
            best = (cid, value)
        if i == 2:  # the best so far earns a real DPO job, still training
            job = "job-0123456789abcdef"
            log.append(JobPayload(job=job, state="running", message="GPU DPO job submitted"), cid)
            log.append(JobPayload(job=job, state="running", log=["[train] step 30/120 loss 0.61"]), cid)
        parents = [cid] if i == 1 else []
    if state == "finished":
        log.append(BudgetPayload(reason="candidates budget reached: 4 of 4"))
        log.append(
            RunPayload(
                phase="end", state="finished", reason="candidates budget reached: 4 of 4", candidates=4
            )
        )
    reason = "candidates budget reached: 4 of 4" if state == "finished" else ""
    start = process_start(pid) if pid else None  # a runner names itself by pid and start time
    status = RunStatus(state=state, reason=reason, pid=pid, pid_start=start, candidates=4, elapsed_s=83.0)  # type: ignore[arg-type]
    status.best_id, status.best_fitness = best
    run.write_status(status)
    return run


def live_run(home: Path, run_id: str = RUN_ID) -> RunDir:
    """The same run with a live 'runner' (this process's pid), paused so that its clock stands still."""
    return write_run(home, run_id, state="paused", pid=os.getpid())


def apply_commands(run: RunDir) -> list[str]:
    """What the runner does between two steps: apply the pending commands, each a `human` event."""
    control = ControlState(run.control_path)
    control.restore(RunState.of(read_events(run.events_path)))
    log = EventLog(run.events_path, run.run_id)
    messages = []
    for command in control.pending():
        message = control.apply(command)
        log.append(HumanPayload(command=command.model_dump(mode="json"), message=message))
        messages.append(message)
    return messages


def commands(run: RunDir) -> list[tuple[str, str, str]]:
    return [(c.action, c.arg, c.source) for c in read_commands(run.control_path)]


def text_of(app: Any, selector: str = "#conversation") -> str:
    """The visible text of a pane (RichLog lines or a Static's renderable), whitespace squeezed."""
    from textual.widgets import Static

    widget = app.screen.query_one(selector)
    if hasattr(widget, "lines"):
        raw = " ".join("".join(seg.text for seg in strip) for strip in widget.lines)
    else:
        raw = _plain(widget.content if isinstance(widget, Static) else widget.render())
    return re.sub(r"\s+", " ", raw)


def _plain(renderable: Any) -> str:
    from rich.console import Console

    with open(os.devnull, "w") as sink:
        console = Console(width=200, record=True, file=sink)
        console.print(renderable)
    return console.export_text()


def board(app: Any) -> list[list[str]]:
    """The leaderboard's rows as text, top to bottom."""
    table = app.screen.query_one("#board")
    return [[str(getattr(c, "plain", c)) for c in table.get_row_at(i)] for i in range(table.row_count)]


async def until(pilot: Any, predicate: Callable[[], bool], timeout: float = 15.0, what: str = "") -> None:
    """Let the app run until `predicate()` holds (workers post from their threads meanwhile)."""
    import time

    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        await pilot.pause(0.05)
