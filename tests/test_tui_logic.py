"""The TUI's plain functions, without Textual: what a typed line means, completion, the events folded into
the panes, the chart, a candidate's code / diff / checks, the event tail and the quit message."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from test_tui_helpers import RUN_ID, apply_commands, live_run, write_run

from agent.control import parse_command
from agent.events import EvaluationPayload, Event, EventLog, EventTail, NodePayload, RunPayload
from tui.candidate import candidate_detail
from tui.chart import chart_lines
from tui.commands import (
    ChatText,
    ControlAction,
    InputError,
    MemoryQuery,
    UIAction,
    complete,
    help_rows,
    parse_input,
)
from tui.services import QuitResult, RunSource
from tui.view import Point, Tracker
from tui.widgets import fitness_text


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("what should I try next?", ChatText("what should I try next?")),
        ("   ", None),
        ("/pause", ("pause", "")),
        ("/RESUME", ("resume", "")),
        ("/stop", ("stop", "")),
        ("/hint  prefer bounded losses ", ("hint", "prefer bounded losses")),
        ("/pin 3", ("pin", "r1-0003")),
        ("/veto #12", ("veto", "r1-0012")),
        ("/pin other-run-0001", ("pin", "other-run-0001")),
        ("/approve", ("approve", "")),
        ("/deny", ("deny", "")),
        ("/budget candidates=20 hours=1.5", ("budget", "candidates=20 hours=1.5")),
        ("/best", MemoryQuery("best")),
        ("/best 3", MemoryQuery("best", k=3)),
        ("/failures 2", MemoryQuery("failures", k=2)),
        ("/similar hinge margin", MemoryQuery("similar", text="hinge margin")),
        ("/show 2", UIAction("show", "r1-0002")),
        ("/theme", UIAction("theme")),
        ("/help", UIAction("help")),
        ("/quit", UIAction("quit")),
    ],
)
def test_a_typed_line_becomes_one_action(line: str, expected: object) -> None:
    got = parse_input(line, run_id="r1")
    if isinstance(expected, tuple):
        assert isinstance(got, ControlAction)
        assert (got.command.action, got.command.arg, got.command.source) == (*expected, "tui")
    else:
        assert got == expected


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("/fly", "unknown command /fly; /help lists them"),
        ("/puase", "unknown command /puase; did you mean /pause?"),
        ("/hint", "/hint needs the hint's text"),
        ("/pin", "/pin needs a candidate id"),
        ("/budget", "budget needs at least one KEY=VALUE, e.g. /budget candidates=20"),
        ("/budget hours=-1", "budget hours must not be negative"),
        (
            "/budget gpus=2",
            "budget takes KEY=VALUE with KEY one of candidates, hours, tokens, usd, cpu_hours, gpu_hours; "
            "got 'gpus=2'",
        ),
        ("/budget usd=lots", "budget usd must be a number or none; got 'lots'"),
        ("/best many", "/best takes a count from 1 to 20; got 'many'"),
        ("/failures 99", "/failures takes a count from 1 to 20; got '99'"),
        ("/similar", "/similar needs a text or code"),
        ("/show", "/show needs a candidate id, e.g. /show 3"),
        ("/", "unknown command /; /help lists them"),
        ("/\x00\u202e", "unknown command /\x00\u202e; /help lists them"),
    ],
)
def test_bad_input_gets_one_sentence(line: str, message: str) -> None:
    assert parse_input(line, run_id="r1") == InputError(message)


def test_run_commands_need_a_run() -> None:
    got = parse_input("/pause", run_id=None)
    assert isinstance(got, InputError) and "none is attached" in got.message
    assert parse_input("/best", run_id=None) == MemoryQuery("best"), "memory queries work without a run"


@pytest.mark.parametrize(
    ("typed", "suggested"),
    [
        ("/pa", "/pause"),
        ("/h", "/hint "),
        ("/b", "/budget "),
        ("/budget ho", "/budget hours="),
        ("/budget candidates=5 u", "/budget candidates=5 usd="),
        ("/pin 1", "/pin 12"),
        ("/veto r1-000", "/veto r1-0003"),
        ("/veto r1-001", "/veto r1-0012"),
        ("/show 3", None),
        ("hello", None),
        ("/pause", None),
        ("/zzz", None),
    ],
)
def test_completion(typed: str, suggested: str | None) -> None:
    assert complete(typed, ["r1-0003", "r1-0012"], run_id="r1") == suggested


def test_help_lists_every_command() -> None:
    usages = [u for u, _ in help_rows()]
    for name in ("pause", "resume", "stop", "hint", "pin", "veto", "approve", "deny", "budget"):
        assert any(u.startswith(f"/{name}") for u in usages)
    assert "/hint TEXT" in usages and "/budget KEY=VALUE …" in usages


def _event(seq: int, kind: str, candidate: str | None = None, **payload: object) -> Event:
    return Event(seq=seq, run="r1", kind=kind, candidate=candidate, payload=payload)  # type: ignore[arg-type]


def test_tracker_follows_the_loop_and_the_hints() -> None:
    t = Tracker("r1")
    hint = parse_command("hint", "bounded please", source="tui").model_dump(mode="json")
    lines = t.feed(_event(0, "human", command=hint, message="hint for the next design: bounded please"))
    assert lines[0].text == "runner ✓ /hint (from tui): hint for the next design: bounded please"
    t.feed(_event(1, "node", None, node="plan", phase="enter"))
    t.feed(_event(2, "node", "r1-0001", node="plan", phase="leave"))
    t.feed(_event(3, "node", "r1-0001", node="design", phase="enter"))
    from agent.runs import RunStatus

    assert t.view(RunStatus(state="running"), alive=True).pending_hints == ("bounded please",)
    lines = t.feed(
        _event(4, "node", "r1-0001", node="design", name="n1", thought="t", hints_used=["bounded please"])
    )
    assert [x.text for x in lines] == ["#1 design n1: t", "  ↳ your hint reached this design: bounded please"]
    t.feed(_event(5, "node", "r1-0001", node="reflect", round=1, skipped=False, reflection="looks new"))
    t.feed(_event(6, "node", "r1-0001", node="repair", attempt=2, fed=["finite_extreme"]))
    t.feed(_event(7, "llm", None, key="c0001/design", prompt_tokens=100, completion_tokens=20, usd=0.01))
    t.feed(
        _event(
            8,
            "job",
            "r1-0001",
            job="job-0123456789abcdef",
            state="running",
            log=["[train] step 30/120 loss 0.6"],
        )
    )
    view = t.view(RunStatus(state="running", candidates=0), alive=True)
    assert (view.candidate, view.name, view.node) == ("r1-0001", "n1", "design")
    assert (view.reflection, view.repair, view.tokens, view.usd) == (1, 2, 120, 0.01)
    assert view.pending_hints == () and view.max_candidates == t.budget.get("max_candidates")
    assert view.jobs[0].step == 30 and view.jobs[0].total == 120
    budget = parse_command("budget", "candidates=7 usd=none").model_dump(mode="json")
    t.feed(_event(9, "human", command=budget, message="budget changed"))
    assert t.view(RunStatus(), alive=False).max_candidates == 7 and t.budget["max_usd"] is None
    q = t.feed(_event(10, "human", message="waiting for approve / deny", question={"candidate": "r1-0001"}))
    assert "/approve or /deny" in q[0].text and t.view(RunStatus(), alive=True).waiting == "GPU job for #1"


def test_a_pause_says_which_step_it_waits_for_and_about_how_long() -> None:
    """F2 / `/pause` are applied at the next step boundary (a training step runs for minutes): the
    acknowledgement names the step and its time left from this run's earlier runs of that step."""
    t = Tracker("r1")
    assert t.pausing() == "pausing before the next step"
    t.candidate = "r1-0001"
    start = datetime(2026, 12, 6, 3, 0, 0, tzinfo=UTC)

    def node(seq: int, cid: str, name: str, phase: str, at: float, **extra: object) -> None:
        event = _event(seq, "node", cid, node=name, phase=phase, **extra)
        t.feed(event.model_copy(update={"time": start + timedelta(seconds=at)}))

    node(1, "r1-0001", "evaluate", "enter", 0)
    assert t.pausing(start + timedelta(seconds=5)) == (
        "pausing after evaluate of #1 (no estimate: its first evaluate in this run)"
    )
    node(2, "r1-0001", "evaluate", "leave", 40, seconds=40.0)
    node(3, "r1-0002", "evaluate", "enter", 50)
    node(4, "r1-0002", "evaluate", "leave", 110, seconds=60.0)
    t.candidate = "r1-0003"
    node(5, "r1-0003", "evaluate", "enter", 200)
    assert t.pausing(start + timedelta(seconds=210)) == "pausing after evaluate of #3 (~40 s)"  # median 50
    assert t.pausing(start + timedelta(seconds=260)) == "pausing after evaluate of #3 (any moment now)"


def test_chart_draws_points_ci_and_the_incumbent_not_the_highest_dot() -> None:
    pts = [Point(1, -0.5, -0.6, -0.4, True), Point(2, -0.2, -0.3, -0.1), Point(3, -0.4, -0.5, -0.3, True)]
    lines = [x.plain for x in chart_lines(pts, 40, 8)]
    assert len(lines) == 8 and all(len(x) <= 40 for x in lines)
    assert lines[0].startswith("-0.100") and lines[-2].startswith("-0.600")
    assert sum(x.count("●") for x in lines) == 3 and "│" in "".join(lines)
    line_rows = [i for i, x in enumerate(lines[:-1]) if "─" in x or "┼" in x]
    top_row = next(i for i, x in enumerate(lines) if "●" in x)  # #2, the highest dot: never the line
    assert line_rows and top_row not in line_rows, "the line is the incumbent's score (#1, then #3)"
    assert "#1" in lines[-1] and "#3" in lines[-1]
    assert chart_lines([], 40, 8)[0].plain == "no candidate recorded yet"
    many = [Point(i, i / 100, i / 100 - 0.1, i / 100 + 0.1, i == 5) for i in range(1, 200)]
    assert all(len(x.plain) <= 40 for x in chart_lines(many, 40, 8)), "newest candidates when all do not fit"


def test_candidate_detail_code_diff_and_checks(home: Path) -> None:
    run = write_run(home)
    child = candidate_detail(run, f"{RUN_ID}-0002")
    assert child is not None and child.parent == f"{RUN_ID}-0001" and child.fitness.startswith("+0.310")
    assert child.diff.startswith(f"--- {RUN_ID}-0001") and "def ipo_loss" in child.code
    broken = candidate_detail(run, f"{RUN_ID}-0004")
    assert broken is not None and broken.status == "check_failed" and broken.versions == ("design", "repair1")
    assert "first draft" in broken.parent and "-    return undefined_name * 2" in broken.diff
    failed = [c for c in broken.checks if not c.passed]
    assert [c.round for c in failed] == [0, 1] and "undefined_name" in failed[0].detail
    assert candidate_detail(run, "nope") is None


def test_candidate_diff_against_a_parent_from_an_earlier_run_or_from_memory(home: Path) -> None:
    """A run that builds on an earlier one (its parents come from memory) shows the diff against the parent
    in that run's folder; a parent whose run is gone is found in memory; one in neither is said to be."""
    from test_memory_helpers import shared_minilm

    from memory.records import CandidateRecord
    from memory.store import MemoryStore

    earlier = write_run(home, run_id="earlier")
    later = write_run(home, run_id="later")
    parent = earlier.read_candidate_json("earlier-0002", "record.json")
    child = dict(later.read_candidate_json("later-0003", "record.json"), parent_ids=["earlier-0002"])
    later.write_candidate_file("later-0003", "record.json", child)
    detail = candidate_detail(later, "later-0003")
    assert detail is not None and detail.parent == "earlier-0002 (from run earlier)", detail.parent
    assert detail.diff.startswith("--- earlier-0002") and "def ipo_loss" in parent["code"]
    # the earlier run deleted: memory still has the parent
    store = MemoryStore(home / "memory", embedder=shared_minilm())
    store.record(CandidateRecord(id="earlier-0002", run_id="earlier", target="dpo", code=parent["code"]))
    for path in sorted((earlier.root / "candidates").rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    detail = candidate_detail(later, "later-0003")
    assert detail is not None and detail.parent == "earlier-0002 (from memory)", detail.parent
    assert detail.diff.startswith("--- earlier-0002")
    later.write_candidate_file("later-0003", "record.json", dict(child, parent_ids=["gone-0001"]))
    detail = candidate_detail(later, "later-0003")
    assert detail is not None and detail.parent == "gone-0001 (not found in this data dir or its memory)"


def test_event_tail_reads_only_what_was_appended_and_waits_for_a_torn_line(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "events.jsonl", "r1")
    tail = EventTail(log.path)
    assert tail.read() == []
    log.append(RunPayload(phase="session"))
    with log.path.open("a") as handle:
        handle.write('{"seq": 1, "run": "r1", "kind": "no')  # a writer in the middle of a line
    assert [e.seq for e in tail.read()] == [0]
    with log.path.open("a") as handle:
        handle.write('de", "payload": {}}\n')
    assert [e.kind for e in tail.read()] == ["node"] and tail.read() == []


def test_source_polls_changes_only_and_sends_commands(home: Path) -> None:
    run = live_run(home)
    source = RunSource(run)
    first = source.poll()
    assert first is not None and first.progress.alive and first.progress.state == "paused"
    assert [r.status for r in first.rows or ()][:3] == ["evaluated"] * 3 and len(first.rows or ()) == 4
    assert [p.index for p in first.points] == [1, 2, 3]
    assert source.poll() is None, "nothing changed: no update, no repaint"
    note = source.send(parse_command("pause", source="tui"))
    assert "next step boundary" in note
    apply_commands(run)
    update = source.poll()
    assert update is not None and update.rows == first.rows and len(update.acked) == 1
    status = run.status()
    status.pid = 2**22 + 12345  # a pid that no process has
    run.write_status(status)
    assert not source.alive() and "applied when the run is resumed" in source.send(parse_command("resume"))


def test_paused_after_evaluate_the_board_says_paused_with_the_printed_fitness(home: Path) -> None:
    """A pause applies at the next step boundary: paused after #5's evaluate, the in-flight row says
    `paused` (not `evaluate…`) and shows the screen fitness the conversation printed, marked `~`."""
    run = live_run(home)
    status = run.status()
    status.state = "running"
    run.write_status(status)
    log = EventLog(run.events_path, run.run_id)
    cid = f"{RUN_ID}-0005"
    log.append(NodePayload(node="plan", phase="enter"))
    log.append(NodePayload(node="plan", phase="leave", seconds=0.0), cid)
    log.append(NodePayload(node="design", name="late_one", thought="t", hints_used=[], parents=[]), cid)
    log.append(NodePayload(node="evaluate", phase="enter"), cid)
    source = RunSource(run)
    rows = source.poll().rows  # type: ignore[union-attr]
    assert rows is not None and (rows[-1].id, rows[-1].status, rows[-1].fitness) == (cid, "evaluate…", None)
    fit = {"value": 0.2, "ci_low": 0.1, "ci_high": 0.3}
    log.append(EvaluationPayload(status="ok", fitness=fit, vs_baseline=None, reason="", seconds=9.0), cid)
    log.append(NodePayload(node="evaluate", phase="leave", seconds=9.0), cid)
    status.state = "paused"
    run.write_status(status)
    update = source.poll()
    assert update is not None and update.rows is not None
    last = update.rows[-1]
    assert (last.id, last.status, last.fitness) == (cid, "paused", 0.2), last
    assert fitness_text(last) == "~+0.20[+0.10,+0.30]"
    assert any("screen fitness +0.200" in line.text for line in update.lines)


def test_quit_messages() -> None:
    assert QuitResult("r1", alive=True).message() == "run r1 goes on headless: `disco tui r1` to come back"
    assert "stops at its next step boundary" in QuitResult("r1", alive=True, stopped=True).message()
    assert "has no runner now; `disco resume r1`" in QuitResult("r1", alive=False, state="running").message()
    assert QuitResult("r1", alive=False, state="failed").message().startswith("run r1 is failed")
    assert QuitResult(None, alive=False).message() == ""


def test_events_file_is_untouched_by_reading(home: Path) -> None:
    run = write_run(home)
    before = run.events_path.read_bytes()
    source = RunSource(run)
    source.poll()
    assert run.events_path.read_bytes() == before and not run.control_path.exists()
    assert json.loads(run.status_path.read_text())["state"] == "finished"
    assert os.environ.get("DISCO_CACHE"), "the home fixture points at the shared cache"


def test_an_event_the_tracker_cannot_read_is_shown_not_fatal(home: Path) -> None:
    run = write_run(home)
    # A writer refuses such a payload (typed events); a hand-edited log or another program can still hold it.
    with pytest.raises(ValueError):
        EventLog(run.events_path, run.run_id).append(
            EvaluationPayload(fitness={"value": 1.0}), f"{RUN_ID}-0009"
        )
    seq = sum(1 for _ in run.events_path.open())
    bad = {
        "seq": seq,
        "run": run.run_id,
        "kind": "evaluation",
        "candidate": f"{RUN_ID}-0009",
        "payload": {"fitness": {"value": 1.0}},
    }
    with run.events_path.open("a") as handle:
        handle.write(json.dumps(bad) + "\n")
    update = RunSource(run).poll()
    assert update is not None
    assert "could not be shown: ValidationError" in update.lines[-1].text and update.lines[-1].who == "system"
