"""The run directory's pieces on their own: the event log survives a torn write, commands are applied
exactly once across restarts, and a second runner on one run is refused."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from agent.control import ControlState, parse_command, send
from agent.events import EventLog, HumanPayload, NodePayload, RunPayload, read_events
from agent.run_state import RunState
from agent.runs import RunDir, RunError, RunMeta, RunStatus
from tools.processes import process_start


def test_a_torn_last_event_is_dropped_and_numbering_goes_on(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    log = EventLog(path, "r")
    log.append(RunPayload(phase="session"))
    log.append(NodePayload(node="design", phase="enter"), "r-0001")
    with path.open("a") as handle:  # a kill -9 in the middle of a write
        handle.write('{"seq": 2, "time": "2026-11-22T00:00:00Z", "run": "r", "kin')
    assert [e.seq for e in read_events(path)] == [0, 1], "readers skip the torn line"
    reopened = EventLog(path, "r")
    reopened.append(NodePayload(node="design", phase="enter"), "r-0001")
    assert [e.seq for e in read_events(path)] == [0, 1, 2]
    assert path.read_text().count("\n") == 3 and "kin\n" not in path.read_text()


def test_commands_are_applied_once_across_restarts(tmp_path: Path) -> None:
    control, events_path = tmp_path / "control.jsonl", tmp_path / "events.jsonl"
    for action, arg in [("hint", "try a margin"), ("veto", "r-0002"), ("budget", "candidates=5 usd=none")]:
        send(control, parse_command(action, arg))
    events = EventLog(events_path, "r")
    first = ControlState(control)
    for command in first.pending()[:2]:  # the runner dies after applying two of three
        events.append(HumanPayload(command=command.model_dump(mode="json"), message=first.apply(command)))
    second = ControlState(control)
    second.restore(RunState.of(read_events(events_path)))
    assert second.hints == ["try a margin"] and second.vetoed == ["r-0002"]
    assert [c.action for c in second.pending()] == ["budget"], "only the unapplied command is pending"
    second.apply(second.pending()[0])
    assert second.budget == {"max_candidates": 5.0, "max_usd": None}


def test_a_second_runner_on_one_run_is_refused(tmp_path: Path) -> None:
    run = RunDir.create(tmp_path / "runs", RunMeta(run_id="r", target="dpo", model="offline"))
    with run.runner_lock():
        second = RunDir(run.root)
        with pytest.raises(RunError, match="already running in another process"), second.runner_lock():
            pass
    with pytest.raises(RunError, match="already exists"):
        RunDir.create(tmp_path / "runs", RunMeta(run_id="r", target="dpo", model="offline"))


def test_liveness_comes_from_the_status_pid_and_its_start_time(tmp_path: Path) -> None:
    run = RunDir.create(tmp_path / "runs", RunMeta(run_id="r", target="dpo", model="offline"))
    me = os.getpid()
    run.write_status(RunStatus(state="running", pid=me, pid_start=process_start(me)))
    assert run.runner_alive() and run.display_state() == "running"
    gone = subprocess.Popen(["true"])
    gone.wait()
    run.write_status(RunStatus(state="running", pid=gone.pid, pid_start=123))
    assert not run.runner_alive() and run.display_state() == "interrupted", "killed runner: interrupted"
    run.write_status(RunStatus(state="running", pid=me, pid_start=(process_start(me) or 0) + 1))
    assert not run.runner_alive(), "a recycled pid is not the runner"
    run.write_status(RunStatus(state="finished", pid=None))
    assert not run.runner_alive() and run.display_state() == "finished"


def test_the_cpu_and_gpu_budgets_can_be_changed_while_a_run_goes_on() -> None:
    from agent.control import ControlError, parse_budget

    assert parse_budget("cpu_hours=2 gpu_hours=none") == {"max_cpu_hours": 2.0, "max_gpu_hours": None}
    with pytest.raises(ControlError, match="gpu_hours must not be negative"):
        parse_budget("gpu_hours=-1")
