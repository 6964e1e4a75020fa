"""Modal screens: the help (keys and commands) and the question asked when quitting a live run."""

from __future__ import annotations

from typing import ClassVar

from rich.table import Table
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from tui.commands import help_rows

KEYS = (
    ("Enter", "send what is typed: a question for the agent, or a /command"),
    ("Tab / →", "take the suggested completion"),
    ("F1", "this help"),
    ("F2", "pause or resume the run"),
    ("F3", "go to the leaderboard (Enter opens a candidate; Esc comes back)"),
    ("Ctrl+T", "dark / light theme"),
    ("Ctrl+Q", "quit (a running run goes on headless)"),
)


def help_table() -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold cyan", no_wrap=True)
    table.add_column()
    for key, what in KEYS:
        table.add_row(key, what)
    table.add_row(
        Text("commands", style="bold"),
        Text("(anything else goes to the agent, which answers with its tools)", style="dim"),
    )
    for usage, what in help_rows():
        table.add_row(usage, what)
    return table


class HelpScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,f1,q", "dismiss", "close")]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help"):
            yield Static(help_table())

    def on_mount(self) -> None:
        self.query_one("#help").border_title = "help (Esc closes)"


class QuitScreen(ModalScreen[str | None]):
    """Leave a live run headless (the default), stop it too, or stay."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "dismiss(None)", "stay"),
        Binding("enter,l", "dismiss('leave')", "leave it running", show=False),
        Binding("s", "dismiss('stop')", "stop it too", show=False),
    ]

    def __init__(self, run_id: str, state: str = "running") -> None:
        super().__init__()
        self.run_id = run_id
        self.state = state

    def compose(self) -> ComposeResult:
        with Vertical(id="quit"):
            yield Static(
                Text.assemble(
                    (f"Run {self.run_id} is {self.state}.\n", "bold"),
                    "It goes on headless when you leave: ",
                    (f"disco tui {self.run_id}", "bold cyan"),
                    " to come back.",
                )
            )
            with Horizontal(id="quit-buttons"):
                yield Button("Leave it running", id="leave", variant="primary")
                yield Button("Stop it too", id="stop", variant="error")
                yield Button("Stay", id="stay")

    def on_mount(self) -> None:
        self.query_one("#quit").border_title = "quit"
        self.query_one("#leave", Button).focus()

    @on(Button.Pressed)
    def pressed(self, event: Button.Pressed) -> None:
        self.dismiss(None if event.button.id == "stay" else event.button.id)
