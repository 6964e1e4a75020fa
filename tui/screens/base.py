"""What every screen with a prompt shares: parsing what was typed and answering it, with the slow parts
(the chat model, the memory) in named thread workers so that the UI never waits on them."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, cast

from textual import events, on, work
from textual.screen import Screen
from textual.widgets import Input, Static
from textual.worker import Worker, WorkerState

from agent.control import Command
from tui.commands import ChatText, ControlAction, InputError, MemoryQuery, UIAction, parse_input
from tui.view import Line
from tui.widgets import CommandSuggester, Conversation, Prompt

if TYPE_CHECKING:
    from tui.app import DiscoApp

PLACEHOLDER = "ask the agent, or type a /command (Tab completes, F1 lists them)"
NARROW_BELOW = 100
"""Columns under which the panes stack (disco.tcss `.narrow`): side by side, a terminal of 80 columns left
the conversation 24 wide beside the 54-column leaderboard."""


class DiscoScreen(Screen):
    def on_resize(self, event: events.Resize) -> None:
        self.set_class(event.size.width < NARROW_BELOW, "narrow")

    @property
    def disco(self) -> DiscoApp:
        return cast("DiscoApp", self.app)

    @property
    def run_id(self) -> str | None:
        return None

    def known_ids(self) -> Sequence[str]:
        return ()

    def chat_context(self) -> str:
        """What the agent is told with the first question (called from the chat worker)."""
        return ""

    def prompt(self) -> Prompt:
        prompt = Prompt(
            placeholder=PLACEHOLDER,
            suggester=CommandSuggester(self.known_ids, lambda: self.run_id),
            id="prompt",
        )
        prompt.cursor_blink = self.disco.blink
        return prompt

    def say(self, lines: Iterable[Line]) -> None:
        self.query_one(Conversation).add(lines)

    def busy(self, what: str = "") -> None:
        label = self.query_one("#busy", Static)
        label.update(what)
        label.display = bool(what)

    @on(Input.Submitted, "#prompt")
    def submitted(self, event: Input.Submitted) -> None:
        text = event.value
        event.input.clear()
        self.handle(text)

    def handle(self, text: str) -> None:
        """Answer one line typed at the prompt."""
        parsed = parse_input(text, self.run_id)
        if parsed is None:
            return
        if isinstance(parsed, InputError):
            self.say([Line(parsed.message, "bold red", "system")])
        elif isinstance(parsed, ChatText):
            self.say([Line(parsed.text, "", "you")])
            self.ask_agent(parsed.text)
        elif isinstance(parsed, ControlAction):
            self.say([Line(text.strip(), "", "you")])
            self.send_control(parsed.command)
        elif isinstance(parsed, MemoryQuery):
            self.say([Line(text.strip(), "", "you")])
            self.query_memory(parsed)
        elif isinstance(parsed, UIAction):
            self.ui(parsed)

    def ui(self, action: UIAction) -> None:
        if action.name == "show":
            self.disco.show_candidate(action.arg)
        elif action.name == "theme":
            self.disco.action_toggle_theme()
        elif action.name == "help":
            self.disco.action_help()
        elif action.name == "quit":
            self.disco.action_request_quit()

    def send_control(self, command: Command) -> None:
        self.say([Line("no run is attached", "bold red", "system")])

    # ------------------------------------------------------------------ workers
    @work(thread=True, group="chat", name="ask the agent", exit_on_error=False)
    def ask_agent(self, text: str) -> None:
        app = self.app
        app.call_from_thread(self.busy, "the agent is thinking… (its tool calls appear as they happen)")
        try:
            lines = self.disco.services.chat.ask(
                text, on_tool=lambda line: app.call_from_thread(self.say, [line]), context=self.chat_context()
            )
            app.call_from_thread(self.say, lines)
        finally:
            app.call_from_thread(self.busy, "")

    @work(thread=True, group="memory", name="query memory", exit_on_error=False)
    def query_memory(self, query: MemoryQuery) -> None:
        app = self.app
        app.call_from_thread(self.busy, f"/{query.kind}: reading the memory…")
        try:
            app.call_from_thread(self.say, self.disco.services.chat.query(query))
        finally:
            app.call_from_thread(self.busy, "")

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """A worker that failed in a way nobody foresaw: one line in the conversation, never a traceback."""
        if event.state == WorkerState.ERROR:
            error: Any = event.worker.error
            self.say(
                [Line(f"{event.worker.name} failed: {type(error).__name__}: {error}", "bold red", "system")]
            )
