"""Snapshots of the main screens at 100×30 (pytest-textual-snapshot): the run in the dark and the light
theme, a candidate's diff and checks, the help, the quit question and `disco chat`. After a deliberate
change of layout: `pytest tests/test_tui_snapshots.py --snapshot-update`, then look at the SVGs."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from test_tui_helpers import RUN_ID, live_run, until, write_run

from tui.app import make_app
from tui.chat import ChatService
from tui.screens.candidate import CandidateScreen
from tui.screens.chat import ChatScreen
from tui.screens.run import RunScreen

SIZE = (100, 30)


@pytest.fixture(autouse=True)
def no_model(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("DISCO_MODEL", "OPENAI_BASE_URL", "OPENAI_API_BASE", "OPENAI_API_KEY"):
        monkeypatch.delenv(var, raising=False)


def loaded(then: Callable[[Any], Awaitable[None]] | None = None) -> Callable[[Any], Awaitable[None]]:
    async def run_before(pilot: Any) -> None:
        app = pilot.app
        await until(
            pilot, lambda: isinstance(app.screen, RunScreen) and app.screen.updates > 0, what="the run"
        )
        await until(pilot, lambda: app.screen.query_one("#board").row_count == 4, what="the board")
        story = app.screen.query_one("#conversation")
        await until(
            pilot, lambda: story.scroll_offset.y == story.max_scroll_y > 0, what="the end of the story"
        )
        if then is not None:
            await then(pilot)

    return run_before


def test_run_screen_dark(home: Path, snap_compare: Any) -> None:
    write_run(home)
    assert snap_compare(make_app(home, RUN_ID, blink=False), terminal_size=SIZE, run_before=loaded())


@pytest.mark.parametrize("size", [(80, 24), (120, 40)], ids=["80x24", "120x40"])
def test_run_screen_reflows(home: Path, snap_compare: Any, size: tuple[int, int]) -> None:
    """At 80×24 the panes stack (the conversation keeps the terminal's width, the chart gives way); at
    120×40 they stand side by side, as at 100×30."""
    write_run(home)

    async def check_layout(pilot: Any) -> None:
        await loaded()(pilot)
        screen = pilot.app.screen
        story, board = screen.query_one("#conversation"), screen.query_one("#board")
        if size[0] < 100:
            assert screen.has_class("narrow") and story.size.width >= size[0] - 4
            assert not screen.query_one("#chart").display
        else:
            assert not screen.has_class("narrow") and story.region.x > board.region.x

    assert snap_compare(make_app(home, RUN_ID, blink=False), terminal_size=size, run_before=check_layout)


def test_run_screen_light(home: Path, snap_compare: Any) -> None:
    write_run(home)
    app = make_app(home, RUN_ID, light=True, blink=False)
    assert snap_compare(app, terminal_size=SIZE, run_before=loaded())


async def _open_broken(pilot: Any) -> None:
    pilot.app.show_candidate(f"{RUN_ID}-0004")
    await until(
        pilot, lambda: isinstance(pilot.app.screen, CandidateScreen) and pilot.app.screen.detail is not None
    )


def test_candidate_diff(home: Path, snap_compare: Any) -> None:
    write_run(home)
    app = make_app(home, RUN_ID, blink=False)
    assert snap_compare(app, press=["d"], terminal_size=SIZE, run_before=loaded(_open_broken))


def test_candidate_checks(home: Path, snap_compare: Any) -> None:
    write_run(home)
    app = make_app(home, RUN_ID, blink=False)
    assert snap_compare(app, press=["k"], terminal_size=SIZE, run_before=loaded(_open_broken))


def test_help(home: Path, snap_compare: Any) -> None:
    write_run(home)
    assert snap_compare(
        make_app(home, RUN_ID, blink=False), press=["f1"], terminal_size=SIZE, run_before=loaded()
    )


def test_quit_question_on_a_live_run(home: Path, snap_compare: Any) -> None:
    live_run(home)
    app = make_app(home, RUN_ID, blink=False)
    assert snap_compare(app, press=["ctrl+q"], terminal_size=SIZE, run_before=loaded())


def test_chat(home: Path, snap_compare: Any) -> None:
    write_run(home)

    async def runs_listed(pilot: Any) -> None:
        app = pilot.app
        await until(
            pilot, lambda: isinstance(app.screen, ChatScreen) and app.screen.query_one("#runs").row_count == 1
        )
        await until(pilot, lambda: "model offline" in str(app.screen.query_one("#status").content))

    app = make_app(home, chat=ChatService("dpo"), blink=False)
    assert snap_compare(app, terminal_size=SIZE, run_before=runs_listed)
