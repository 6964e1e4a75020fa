"""One candidate: its code, its diff against its parent, its check results and its thought (tabs)."""

from __future__ import annotations

from typing import ClassVar

from rich import box
from rich.console import Group, RenderableType
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Static, TabbedContent, TabPane

from agent.runs import RunDir
from tui.candidate import CandidateDetail, candidate_detail


def checks_table(detail: CandidateDetail) -> RenderableType:
    if not detail.checks:
        return Text("no check results yet", style="dim")
    table = Table(expand=True, box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    table.add_column("round", width=5)
    table.add_column("check", ratio=1)
    table.add_column("", width=1)
    table.add_column("message", ratio=3)
    for c in detail.checks:
        message = Text(c.message)
        if c.detail:
            message.append("\n" + c.detail, style="dim")
        mark = Text("✓", style="green") if c.passed else Text("✗", style="bold red")
        table.add_row(str(c.round), c.name, mark, message)
    return table


class CandidateScreen(Screen):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q", "app.pop_screen", "back"),
        Binding("c", "tab('code')", "code"),
        Binding("d", "tab('diff')", "diff"),
        Binding("k", "tab('checks')", "checks"),
    ]

    def __init__(self, run: RunDir, candidate_id: str) -> None:
        super().__init__()
        self.run = run
        self.candidate_id = candidate_id
        self.detail: CandidateDetail | None = None

    def compose(self) -> ComposeResult:
        yield Static(f"candidate {self.candidate_id}: loading…", id="status")
        with TabbedContent(initial="code", id="tabs"):
            for pane, title in (
                ("code", "Code"),
                ("diff", "Diff vs parent"),
                ("checks", "Checks"),
                ("thought", "Thought"),
            ):
                with TabPane(title, id=pane), VerticalScroll():
                    yield Static(id=f"{pane}-body")
        yield Footer()

    def on_mount(self) -> None:
        self.load()

    @work(thread=True, exclusive=True, name="read the candidate", exit_on_error=False)
    def load(self) -> None:
        detail = candidate_detail(self.run, self.candidate_id)
        self.app.call_from_thread(self.fill, detail)

    def fill(self, detail: CandidateDetail | None) -> None:
        head = self.query_one("#status", Static)
        if detail is None:
            head.update(
                Text(f"no candidate {self.candidate_id} in run {self.run.run_id} (Esc: back)", "bold red")
            )
            return
        self.detail = detail
        line = Text.assemble((f"{detail.id} ", "bold"), (detail.name, "bold cyan"), f" · {detail.status}")
        if detail.fitness:
            line.append(f" · fitness {detail.fitness}", style="bold")
        head.update(line)
        theme = "ansi_dark" if self.app.current_theme.dark else "ansi_light"
        self.query_one("#code-body", Static).update(Syntax(detail.code or "(no code)", "python", theme=theme))
        diff: RenderableType = Text(f"against {detail.parent}", style="dim")
        if detail.diff:
            diff = Group(diff, Syntax(detail.diff, "diff", theme=theme))
        self.query_one("#diff-body", Static).update(diff)
        self.query_one("#checks-body", Static).update(checks_table(detail))
        thought = Text(detail.thought or "(no thought recorded)")
        if detail.error:
            thought.append(f"\n\nwhy it did not make it: {detail.error}", style="red")
        versions = ", ".join(detail.versions) or "none"
        thought.append(f"\n\nversions in its folder: {versions}", style="dim")
        self.query_one("#thought-body", Static).update(thought)

    def action_tab(self, pane: str) -> None:
        self.query_one(TabbedContent).active = pane
