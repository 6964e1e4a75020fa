"""The main screen: a run's plan and progress, the leaderboard, the conversation and the fitness chart.

A thread worker tails the run's event log and posts a frozen `RunUpdate` whenever something changed; the
screen hands each part to its pane. Commands go to the run's control channel (another worker: a write
with fsync), and the runner's acknowledgement shows up when its `human` event arrives.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Footer, Static
from textual.worker import get_current_worker

from agent.control import Command, parse_command
from tui.screens.base import DiscoScreen
from tui.services import RunSource, RunUpdate, runs_context
from tui.view import Line, ProgressView
from tui.widgets import Conversation, FitnessChart, Leaderboard, ProgressPane, StatusLine


class RunUpdated(Message):
    def __init__(self, update: RunUpdate) -> None:
        super().__init__()
        self.update = update


class StartFailed(Message):
    def __init__(self, why: str) -> None:
        super().__init__()
        self.why = why


class RunScreen(DiscoScreen):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("f2", "toggle_pause", "pause/resume"),
        Binding("f3", "focus_board", "leaderboard"),
        Binding("escape", "focus_prompt", "prompt", show=False),
    ]

    def __init__(self, source: RunSource) -> None:
        super().__init__()
        self.source = source
        self.view = ProgressView(run_id=source.run_id)
        self.known: tuple[str, ...] = ()
        self.sent: dict[str, str] = {}
        """Commands this screen sent that the runner has not applied yet: id → what was typed."""
        self.updates = 0
        """How many updates were applied (tests wait on it)."""
        self._stop = threading.Event()

    @property
    def run_id(self) -> str | None:
        return self.source.run_id

    def known_ids(self) -> Sequence[str]:
        return self.known

    def chat_context(self) -> str:
        return runs_context(self.source.run.root.parent, watching=self.source.run_id)

    def compose(self) -> ComposeResult:
        yield StatusLine(f"disco run {self.source.run_id} · starting…", id="status")
        with Horizontal(id="body"):
            with Vertical(id="left"):
                yield ProgressPane("waiting for the run's first events…", id="progress")
                yield Leaderboard(id="board")
            with Vertical(id="right"):
                yield Conversation(id="conversation", wrap=True, max_lines=3000, min_width=20)
                yield FitnessChart(id="chart")
        yield Static(id="busy")
        yield self.prompt()
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#progress").border_title = "plan & progress"
        self.query_one("#board").border_title = "leaderboard ◆ incumbent (Enter: code, diff…)"
        self.query_one("#conversation").border_title = "conversation"
        self.query_one("#chart").border_title = "fitness: ● CI ─ incumbent"
        self.busy("")
        self.query_one("#prompt").focus()
        self.tail()

    def on_unmount(self) -> None:
        self._stop.set()

    @work(thread=True, exclusive=True, group="tail", name="tail the event log", exit_on_error=False)
    def tail(self) -> None:
        worker = get_current_worker()
        reported = False
        while not worker.is_cancelled and not self._stop.is_set():
            try:
                update = self.source.poll()
            except OSError as exc:  # a file of the run unreadable for a moment: say so, keep tailing
                self.app.call_from_thread(self.say, [Line(f"cannot read the run: {exc}", "red", "system")])
                self._stop.wait(max(1.0, self.disco.poll_s))
                continue
            if update is not None:
                self.post_message(RunUpdated(update))
            elif not reported and (why := self.source.start_failure()):
                reported = True
                self.post_message(StartFailed(why))
            self._stop.wait(self.disco.poll_s)

    @on(RunUpdated)
    def apply(self, message: RunUpdated) -> None:
        u = message.update
        self.view, self.known = u.progress, u.known
        self.query_one(StatusLine).show(u.progress)
        self.query_one(ProgressPane).show(u.progress)
        if u.rows is not None:
            self.query_one(Leaderboard).show(u.rows, u.progress.pinned, u.progress.vetoed)
        self.query_one(FitnessChart).show(u.points)
        self.query_one("#chart").border_title = u.chart_title
        if u.lines:
            self.say(u.lines)
        for cid in u.acked:
            self.sent.pop(cid, None)
        self.updates += 1

    @on(StartFailed)
    def start_failed(self, message: StartFailed) -> None:
        self.say([Line(f"the run did not start: {message.why}", "bold red", "system")])

    @on(Leaderboard.Chosen)
    def chosen(self, message: Leaderboard.Chosen) -> None:
        self.disco.show_candidate(message.candidate_id)

    # ------------------------------------------------------------------ commands
    def send_control(self, command: Command) -> None:
        self.sent[command.id] = f"/{command.action} {command.arg}".strip()
        self._send(command)

    @work(thread=True, group="control", name="send the command", exit_on_error=False)
    def _send(self, command: Command) -> None:
        why = self.source.refusal(command)  # /veto 99: no such candidate (it may read memory: a thread)
        if why is not None:
            self.sent.pop(command.id, None)
            self.app.call_from_thread(self.say, [Line(why, "bold red", "system")])
            return
        note = self.source.send(command)
        self.app.call_from_thread(self.say, [Line(note + " …", "dim", "system")])

    def action_toggle_pause(self) -> None:
        action = "resume" if self.view.state == "paused" else "pause"
        self.say([Line(f"/{action}", "", "you")])
        self.send_control(parse_command(action, source="tui"))

    def action_focus_board(self) -> None:
        self.query_one(Leaderboard).focus()

    def action_focus_prompt(self) -> None:
        self.query_one("#prompt").focus()
