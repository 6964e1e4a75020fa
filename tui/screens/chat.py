"""`disco chat`: a conversation with the agent about the memory and past runs, without starting a run.
The runs of the data dir are listed on the left; Enter on one attaches to it."""

from __future__ import annotations

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import DataTable, Footer, Static

from tui.screens.base import DiscoScreen
from tui.services import run_rows, runs_context
from tui.view import Line
from tui.widgets import Conversation

GREETING = (
    "Ask about the memory and past runs: what has been tried, what failed and why, what to try next. "
    "/best, /similar TEXT and /failures query the memory directly; Enter on a run attaches to it."
)


class ChatScreen(DiscoScreen):
    def compose(self) -> ComposeResult:
        yield Static(Text.assemble(("disco chat", "bold"), " · loading…"), id="status")
        with Horizontal(id="body"):
            yield DataTable(id="runs", cursor_type="row", zebra_stripes=True)
            yield Conversation(id="conversation", wrap=True, max_lines=3000, min_width=20)
        yield Static(id="busy")
        yield self.prompt()
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#runs", DataTable)
        table.border_title = "runs (Enter: attach)"
        table.add_columns("run", "state", "candidates", "best")
        self.query_one("#conversation").border_title = "conversation"
        self.busy("")
        self.say([Line(GREETING, "dim", "system")])
        self.query_one("#prompt").focus()
        self.load()

    def chat_context(self) -> str:
        return runs_context(self.disco.services.home / "runs")

    @work(thread=True, exclusive=True, group="load", name="list the runs", exit_on_error=False)
    def load(self) -> None:
        rows = run_rows(self.disco.services.home / "runs")
        model = self.disco.services.chat.model_name()
        self.app.call_from_thread(self.loaded, rows, model)

    def loaded(self, rows: list[tuple[str, str, str, str]], model: str) -> None:
        table = self.query_one("#runs", DataTable)
        for row in rows:
            table.add_row(*row, key=row[0])
        status = self.query_one("#status", Static)
        status.update(
            Text.assemble(
                ("disco chat", "bold"), f" · {len(rows)} run{'' if len(rows) == 1 else 's'} · model {model}"
            )
        )
        if not rows:
            self.say([Line("no runs yet: `disco run` or `disco tui` starts one", "dim", "system")])

    @on(DataTable.RowSelected, "#runs")
    def attach(self, event: DataTable.RowSelected) -> None:
        if event.row_key.value:
            self.disco.attach(event.row_key.value)
