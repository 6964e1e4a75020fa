"""The app driven by Textual's Pilot on a run directory: every command path writes the control channel and
shows the runner's acknowledgement, a hint reaches the next design, the leaderboard opens a candidate,
bad input gets one sentence, and quitting leaves a live run going (or stops it, when asked)."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_tui_helpers import (
    RUN_ID,
    apply_commands,
    board,
    commands,
    fresh,
    live_run,
    text_of,
    until,
    write_run,
)

from agent.events import CandidatePayload, ErrorPayload, EventLog, EvidencePayload, NodePayload
from tui.app import make_app
from tui.screens.candidate import CandidateScreen
from tui.screens.dialogs import HelpScreen, QuitScreen
from tui.screens.run import RunScreen
from tui.services import QuitResult

pytestmark = pytest.mark.anyio  # anyio's pytest plugin runs the async tests (on asyncio)
SIZE = (160, 50)


async def _loaded(pilot) -> None:
    await until(
        pilot,
        lambda: isinstance(pilot.app.screen, RunScreen) and pilot.app.screen.updates > 0,
        what="a run update",
    )


async def _type(pilot, text: str) -> None:
    prompt = pilot.app.screen.query_one("#prompt")
    prompt.focus()
    prompt.value = text
    prompt.cursor_position = len(text)
    await pilot.press("enter")


async def test_attach_to_a_finished_run_shows_every_pane(home: Path) -> None:
    write_run(home)
    app = make_app(home, RUN_ID, poll_s=0.05)
    async with app.run_test(size=SIZE) as pilot:
        await _loaded(pilot)
        assert "finished (candidates budget reached: 4 of 4)" in text_of(app, "#status")
        rows = board(app)
        assert [r[1] for r in rows] == ["◆squared_margin", "dpo_again", "hinge_gate", "broken_loss"], "ranked"
        # the incumbent marked; its status is its verdict against the baseline (confirmed: better)
        assert rows[0][2:] == ["better", "+0.31[+0.23,+0.37] 4"] and rows[3][2] == "check ✗"
        assert rows[1][2] == rows[2][2] == "≈ base", "not separated from the baseline"
        progress = text_of(app, "#progress")
        assert "#4 broken_loss" in progress and "4/10" in progress and "repair 1/3" in progress
        assert text_of(app, "#chart").count("●") == 3
        title = "vs DPO, fresh seeds: ● CI ─ incumbent"
        assert app.screen.query_one("#chart").border_title == title
        story = text_of(app)
        assert "#2 screen fitness +0.310 [+0.230, +0.370]" in story and "#4 repair 1/3" in story
        fresh_line = "#2 recorded squared_margin: evaluated, vs DPO +0.310 [+0.230, +0.370] on 4 fresh seeds"
        assert fresh_line in story
        assert "run finished: candidates budget reached" in story
        await pilot.press("ctrl+q")
    assert app.return_value == QuitResult(RUN_ID, alive=False, state="finished"), (
        "no runner: it quits at once"
    )
    assert app.return_value.message() == f"run {RUN_ID} is finished; `disco tui {RUN_ID}` shows it again"


@pytest.mark.parametrize(
    ("typed", "sent", "ack"),
    [
        ("/pause", ("pause", ""), "runner ✓ /pause (from tui): paused at the next step boundary"),
        ("/resume", ("resume", ""), "runner ✓ /resume (from tui): resumed"),
        ("/stop", ("stop", ""), "runner ✓ /stop (from tui): stopping at the next step boundary"),
        ("/hint try a hinge", ("hint", "try a hinge"), "hint for the next design: try a hinge"),
        ("/pin 2", ("pin", f"{RUN_ID}-0002"), f"pinned {RUN_ID}-0002: it stays in every design prompt"),
        ("/veto 4", ("veto", f"{RUN_ID}-0004"), f"vetoed {RUN_ID}-0004: never evaluated"),
        ("/approve", ("approve", ""), "approve the next GPU job launch"),
        ("/deny", ("deny", ""), "deny the next GPU job launch"),
        (
            "/budget candidates=20 usd=none",
            ("budget", "candidates=20 usd=none"),
            "budget changed: max_candidates=20",
        ),
    ],
)
async def test_each_command_reaches_the_runner_and_is_acknowledged(
    home: Path, typed: str, sent: tuple[str, str], ack: str
) -> None:
    run = live_run(home)
    app = make_app(home, RUN_ID, poll_s=0.05)
    async with app.run_test(size=SIZE) as pilot:
        await _loaded(pilot)
        await _type(pilot, typed)
        await until(pilot, lambda: commands(run) == [(*sent, "tui")], what="the command in control.jsonl")
        await until(pilot, lambda: "the runner applies it at its next step boundary" in text_of(app))
        screen = app.screen
        assert screen.sent, "waiting for the runner's acknowledgement"
        apply_commands(run)
        await until(pilot, lambda: ack in text_of(app), what=f"the acknowledgement {ack!r}")
        assert not screen.sent
        if sent[0] == "budget":
            assert "20 (" not in text_of(app, "#progress") and "4/20" in text_of(app, "#progress")
        if sent[0] in ("pin", "veto"):
            mark = "★" if sent[0] == "pin" else "⊘"
            await until(pilot, lambda: any(mark in r[1] for r in board(app)), what="the mark")


async def test_a_hint_visibly_reaches_the_next_design(home: Path) -> None:
    run = live_run(home)
    app = make_app(home, RUN_ID, poll_s=0.05)
    async with app.run_test(size=SIZE) as pilot:
        await _loaded(pilot)
        await _type(pilot, "/hint bound the loss")
        await until(pilot, lambda: bool(commands(run)))
        apply_commands(run)
        await until(pilot, lambda: "hint for the next design: bound the loss" in text_of(app, "#progress"))
        log = EventLog(run.events_path, run.run_id)
        log.append(
            NodePayload(node="design", name="bounded", thought="t", hints_used=["bound the loss"]),
            f"{RUN_ID}-0005",
        )
        await until(pilot, lambda: "↳ your hint reached this design: bound the loss" in text_of(app))
        await until(pilot, lambda: "hint for the next design" not in text_of(app, "#progress"))
        assert "✓ your hint reached #5's design: bound the loss" in text_of(app, "#progress")


async def test_a_hint_the_design_could_not_act_on_is_said_not_reached(home: Path) -> None:
    """The offline proposer reads only some hints: the UI says which it could not act on (it used to
    show "✓ your hint reached …" beside a design that ignored it)."""
    run = live_run(home)
    app = make_app(home, RUN_ID, poll_s=0.05)
    async with app.run_test(size=SIZE) as pilot:
        await _loaded(pilot)
        await _type(pilot, "/hint be more creative")
        await until(pilot, lambda: bool(commands(run)))
        apply_commands(run)
        EventLog(run.events_path, run.run_id).append(
            NodePayload(
                node="design",
                name="logistic_mix",
                thought="t",
                hints_used=[],
                hints_ignored=["be more creative"],
            ),
            f"{RUN_ID}-0005",
        )
        await until(
            pilot, lambda: "✗ this design could not act on your hint: be more creative" in text_of(app)
        )
        await until(pilot, lambda: "hint for the next design" not in text_of(app, "#progress"))
        progress = text_of(app, "#progress")
        assert "✗ #5's design could not act on your hint: be more creative" in progress
        assert "✓ your hint reached" not in text_of(app)


async def test_f2_pauses_and_resumes(home: Path) -> None:
    run = live_run(home)  # paused
    app = make_app(home, RUN_ID, poll_s=0.05)
    async with app.run_test(size=SIZE) as pilot:
        await _loaded(pilot)
        await pilot.press("f2")
        await until(pilot, lambda: commands(run) == [("resume", "", "tui")], what="resume")
        status = run.status()
        status.state = "running"
        run.write_status(status)
        await until(pilot, lambda: app.screen.view.state == "running")
        await pilot.press("f2")
        await until(pilot, lambda: commands(run)[-1] == ("pause", "", "tui"), what="pause")


@pytest.mark.parametrize(
    ("typed", "said"),
    [
        ("/fly", "unknown command /fly; /help lists them"),
        ("/hint", "/hint needs the hint's text"),
        ("/budget hours=-1", "budget hours must not be negative"),
        ("/best lots", "/best takes a count from 1 to 20"),
        ("/pin", "/pin needs a candidate id"),
        ("/\x1b[31m", "unknown command"),
    ],
)
async def test_bad_input_gets_one_sentence_and_sends_nothing(home: Path, typed: str, said: str) -> None:
    run = live_run(home)
    app = make_app(home, RUN_ID, poll_s=0.05)
    async with app.run_test(size=SIZE) as pilot:
        await _loaded(pilot)
        await _type(pilot, typed)
        await until(pilot, lambda: said in text_of(app), what=said)
        assert commands(run) == [] and app.is_running and "Traceback" not in text_of(app)


async def test_the_leaderboard_opens_a_candidate_with_code_diff_and_checks(home: Path) -> None:
    write_run(home)
    app = make_app(home, RUN_ID, poll_s=0.05)
    async with app.run_test(size=SIZE) as pilot:
        await _loaded(pilot)
        await pilot.press("f3", "down", "down", "down", "enter")  # the fourth row: the broken one
        await until(pilot, lambda: isinstance(app.screen, CandidateScreen) and app.screen.detail is not None)
        assert app.screen.candidate_id == f"{RUN_ID}-0004"
        assert "broken_loss" in text_of(app, "#status") and "undefined_name" in text_of(app, "#code-body")
        await pilot.press("d")
        assert "first draft (design.py)" in text_of(app, "#diff-body") and "* 3" in text_of(app, "#diff-body")
        await pilot.press("k")
        checks = text_of(app, "#checks-body")
        assert "output_shape" in checks and "✗" in checks and "line: return undefined_name * 2" in checks
        await pilot.press("escape")
        assert isinstance(app.screen, RunScreen)
        await _type(pilot, "/show 2")
        await until(pilot, lambda: isinstance(app.screen, CandidateScreen) and app.screen.detail is not None)
        assert f"against {RUN_ID}-0001" in text_of(app, "#diff-body")
        await pilot.press("escape")
        await _type(pilot, "/show 99")
        await until(pilot, lambda: "no candidate demo-0099" in text_of(app, "#status"))


async def test_completion_help_and_theme(home: Path) -> None:
    write_run(home)
    app = make_app(home, RUN_ID, poll_s=0.05)
    async with app.run_test(size=SIZE) as pilot:
        await _loaded(pilot)
        await pilot.press("slash", "h", "i")
        prompt = app.screen.query_one("#prompt")
        await until(pilot, lambda: prompt._suggestion == "/hint ", what="the suggestion")
        await pilot.press("tab")
        assert prompt.value == "/hint "
        prompt.value = ""
        await pilot.press("f1")
        assert isinstance(app.screen, HelpScreen) and "/budget KEY=VALUE …" in text_of(app, "#help Static")
        await pilot.press("escape")
        assert isinstance(app.screen, RunScreen) and app.theme == "textual-dark"
        await pilot.press("ctrl+t")
        assert app.theme == "textual-light"
        await _type(pilot, "/theme")
        assert app.theme == "textual-dark"


@pytest.mark.parametrize(("key", "stopped"), [("enter", False), ("s", True)])
async def test_quitting_a_live_run_leaves_it_going_unless_asked(home: Path, key: str, stopped: bool) -> None:
    run = live_run(home)
    app = make_app(home, RUN_ID, poll_s=0.05)
    async with app.run_test(size=SIZE) as pilot:
        await _loaded(pilot)
        await pilot.press("ctrl+q")
        assert isinstance(app.screen, QuitScreen)
        assert f"disco tui {RUN_ID} to come back" in text_of(app, "#quit Static")
        await pilot.press(key)
        await pilot.pause()
    assert app.return_value == QuitResult(RUN_ID, alive=True, stopped=stopped)
    assert commands(run) == ([("stop", "", "tui")] if stopped else [])
    assert app.return_value.message().startswith(f"run {RUN_ID} ")


async def test_staying_after_ctrl_q(home: Path) -> None:
    live_run(home)
    app = make_app(home, RUN_ID, poll_s=0.05)
    async with app.run_test(size=SIZE) as pilot:
        await _loaded(pilot)
        await pilot.press("ctrl+q")
        await pilot.press("escape")
        assert isinstance(app.screen, RunScreen) and app.is_running
        await _type(pilot, "/quit")
        assert isinstance(app.screen, QuitScreen)
        await pilot.click("#stay")
        assert isinstance(app.screen, RunScreen)


async def test_the_conversation_follows_unless_scrolled_up_and_the_board_keeps_its_cursor(home: Path) -> None:
    run = live_run(home)
    app = make_app(home, RUN_ID, poll_s=0.05)
    async with app.run_test(size=(100, 30)) as pilot:
        await _loaded(pilot)
        story = app.screen.query_one("#conversation")
        await until(pilot, lambda: story.max_scroll_y > 0 and story.scroll_offset.y == story.max_scroll_y)
        story.scroll_home(animate=False, immediate=True)
        log = EventLog(run.events_path, run.run_id)
        for i in range(5):
            log.append(ErrorPayload(message=f"note {i}"))
        await until(pilot, lambda: "note 4" in text_of(app))
        await pilot.pause(0.2)
        assert story.scroll_offset.y == 0, "a person reading back is not pulled to the end"
        story.scroll_end(animate=False, immediate=True)
        log.append(ErrorPayload(message="note 5"))
        await until(pilot, lambda: "note 5" in text_of(app))
        await until(pilot, lambda: story.scroll_offset.y == story.max_scroll_y, what="following again")
        table = app.screen.query_one("#board")
        table.move_cursor(row=2)  # hinge_gate
        better = {"value": 0.9, "ci_low": 0.8, "ci_high": 1.0}
        run.write_candidate_file(
            f"{RUN_ID}-0005",
            "record.json",
            {
                "id": f"{RUN_ID}-0005",
                "name": "new_best",
                "status": "evaluated",
                "fitness": better,
                "generation": 5,
                "verdict": "best",
            },
        )
        run.write_candidate_file(f"{RUN_ID}-0005", "vs_baseline.json", fresh(0.9))
        vs = {"diff": 0.9, "ci_low": 0.82, "ci_high": 0.96, "n_seeds": 4}
        log.append(
            CandidatePayload(
                name="new_best", status="evaluated", fitness=better, vs_baseline=vs, verdict="best"
            ),
            f"{RUN_ID}-0005",
        )
        await until(pilot, lambda: board(app)[0][1] == "◆new_best", what="the re-ranked board")
        assert board(app)[1][1] == "squared_margin", "the mark moved to the new incumbent"
        assert board(app)[table.cursor_row][1] == "hinge_gate", "the cursor stays on its candidate"
        # a race trains the former incumbent on more seeds: the evidence event alone refreshes its cell
        run.write_candidate_file(f"{RUN_ID}-0002", "vs_baseline.json", fresh(0.31) | {"n_seeds": 8})
        log.append(
            EvidencePayload(verdict="not_better", incumbent=f"{RUN_ID}-0002", round=1), f"{RUN_ID}-0005"
        )
        await until(pilot, lambda: board(app)[1][3].endswith(" 8"), what="the refreshed n")
        assert "●" in text_of(app, "#chart") and text_of(app, "#chart").count("●") == 4
