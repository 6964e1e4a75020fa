"""The App: owns the services (the run source, the chat service), the themes and the global keys, and
picks the first screen. `make_app` is the one factory that the CLI and the tests share."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from textual.app import App
from textual.binding import Binding, BindingType

from agent.config import run_model_overrides
from agent.control import parse_command
from agent.runs import RunDir, RunError
from tui.chat import ChatService
from tui.screens.candidate import CandidateScreen
from tui.screens.chat import ChatScreen
from tui.screens.dialogs import HelpScreen, QuitScreen
from tui.screens.run import RunScreen
from tui.services import QuitResult, RunSource

DARK, LIGHT = "textual-dark", "textual-light"


@dataclass
class Services:
    home: Path
    chat: ChatService = field(default_factory=ChatService)
    source: RunSource | None = None
    """The attached run; None in `disco chat` until a run is picked."""


class DiscoApp(App[QuitResult]):
    CSS_PATH = "disco.tcss"
    TITLE = "disco"
    ENABLE_COMMAND_PALETTE = False
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+q", "request_quit", "quit", priority=True),
        Binding("f1", "help", "help"),
        Binding("ctrl+t", "toggle_theme", "theme"),
    ]

    def __init__(self, services: Services, *, light: bool = False, blink: bool = True, poll_s: float = 0.25):
        super().__init__()
        self.services = services
        self.light = light
        self.blink = blink
        """False in snapshot tests: a blinking cursor would make screenshots differ."""
        self.poll_s = poll_s

    def on_mount(self) -> None:
        self.theme = LIGHT if self.light else DARK
        source = self.services.source
        self.push_screen(RunScreen(source) if source else ChatScreen())

    # ------------------------------------------------------------------ actions
    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def action_toggle_theme(self) -> None:
        self.theme = LIGHT if self.theme == DARK else DARK

    def action_request_quit(self) -> None:
        source = self.services.source
        if source is None or not source.alive():
            state = source.run.status().state if source else ""
            self.exit(QuitResult(source.run_id if source else None, alive=False, state=state))
            return
        if isinstance(self.screen, QuitScreen):
            return

        def answer(choice: str | None) -> None:
            if choice == "stop":
                source.send(parse_command("stop", source="tui"))
                self.exit(QuitResult(source.run_id, alive=True, stopped=True))
            elif choice == "leave":
                self.exit(QuitResult(source.run_id, alive=True))

        state = source.run.status().state
        self.push_screen(QuitScreen(source.run_id, "running" if state == "created" else state), answer)

    def show_candidate(self, candidate_id: str) -> None:
        source = self.services.source
        if source is None:
            self.notify("no run is attached: /show needs one", severity="warning")
            return
        self.push_screen(CandidateScreen(source.run, candidate_id))

    def attach(self, run_id: str) -> None:
        """From `disco chat`: follow a run (Esc … Ctrl+Q leaves as from `disco tui RUN`)."""
        try:
            run = RunDir.open(self.services.home / "runs", run_id)
        except RunError as exc:
            self.notify(str(exc), severity="error")
            return
        self.services.source = RunSource(run)
        self.push_screen(RunScreen(self.services.source))


def make_app(
    home: Path,
    run_id: str | None = None,
    *,
    source: RunSource | None = None,
    chat: ChatService | None = None,
    light: bool = False,
    blink: bool = True,
    poll_s: float = 0.25,
) -> DiscoApp:
    """The app for a run (attach by id, or a source for a run this process started), or for chat alone.
    Raises RunError with one sentence for an unknown run."""
    if source is None and run_id is not None:
        source = RunSource(RunDir.open(home / "runs", run_id))
    if source is not None and chat is None:
        meta = source.run.meta()
        options = (meta.config.get("targets") or {}).get(meta.target)
        chat = ChatService(meta.target, options, overrides=run_model_overrides(meta.config))
    services = Services(home=home, chat=chat or ChatService(), source=source)
    return DiscoApp(services, light=light, blink=blink, poll_s=poll_s)
