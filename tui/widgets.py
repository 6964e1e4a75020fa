"""The panes. Each gets frozen data through one method (`show`, `add`) and never reads the run itself;
the leaderboard tells its screen about a choice with a `Message`."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import ClassVar

from rich.console import Group, RenderableType
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.suggester import Suggester
from textual.widget import Widget
from textual.widgets import DataTable, Input, RichLog, Static

from agent.leaderboard import Row, incumbent
from agent.runs import ACTIVE_STATES as ACTIVE
from tui.chart import chart_lines
from tui.commands import complete
from tui.view import STEPS, Line, Point, ProgressView, fmt_duration, short

STATE_STYLE = {
    "running": "bold green",
    "paused": "bold yellow",
    "waiting": "bold yellow",
    "finished": "bold blue",
}
WHO_STYLE = {"you": "bold cyan", "agent": "bold magenta", "tool": "dim", "system": "bold yellow"}


def state_text(view: ProgressView) -> Text:
    if view.state in ACTIVE and not view.alive and view.state != "created":
        return Text(f"interrupted (no runner: disco resume {view.run_id})", style="bold red")
    style = STATE_STYLE.get(view.state, "bold red" if view.state in ("failed", "stopped") else "bold")
    text = Text(view.state, style=style)
    if view.reason:
        text.append(f" ({view.reason})", style="")
    return text


class StatusLine(Static):
    """The top line: which run, its state and why, model and target."""

    def show(self, view: ProgressView) -> None:
        line = Text.assemble(("disco ", "bold"), f"run {view.run_id} · ")
        line.append_text(state_text(view))
        line.append(f" · {view.model} · {view.target}", style="dim")
        self.update(line)


def _bar(done: float, total: float | None, width: int = 18) -> RenderableType:
    if not total:
        return Text("")
    done = min(float(done), float(total))
    return ProgressBar(
        total=float(total), completed=done, width=width, complete_style="green", finished_style="green"
    )


def progress_renderable(v: ProgressView) -> RenderableType:
    """The plan-and-progress pane: where the loop is, the budget, the jobs."""
    head = Text(f"{short(v.candidate)} {v.name}".strip() or "waiting for the first candidate", style="bold")
    steps = Text()
    for i, step in enumerate(STEPS):
        steps.append("›" if i else "", style="dim")
        steps.append(step, style="reverse bold" if step == v.node else "dim")
    if v.doing:
        steps.append(f"  {v.doing}", style="dim")
    loop = Text(f"reflection {v.reflection}/{v.reflections} · repair {v.repair}/{v.max_repairs}")
    loop.append(f" · checks {v.checks or '—'}")
    grid = Table.grid(padding=(0, 1))
    grid.add_column(no_wrap=True)
    grid.add_column(no_wrap=True)
    grid.add_column(no_wrap=True)
    limit = f"/{int(v.max_candidates)}" if v.max_candidates else " (no limit)"
    grid.add_row("candidates", _bar(v.done, v.max_candidates), f"{v.done}{limit}")
    tokens = f"{v.tokens:,}" + (f"/{int(v.max_tokens):,}" if v.max_tokens else "") + " tokens"
    money = f"${v.usd:.2f}" + (f"/${v.max_usd:.2f}" if v.max_usd else "")
    spent = f"{tokens} · {money}"
    if v.hours:
        grid.add_row("time", _bar(v.elapsed_s, v.hours * 3600), f"{fmt_duration(v.elapsed_s)}/{v.hours:g}h")
        grid.add_row("spent", Text(spent), "")
    else:
        grid.add_row("spent", Text(f"{spent} · {fmt_duration(v.elapsed_s)}"), "")
    for job in v.jobs[-3:]:
        frac = f"{job.step}/{job.total}" if job.total else job.state
        grid.add_row(f"job {job.id[4:12]}", _bar(job.step or 0, job.total), f"{frac} {short(job.candidate)}")
    parts: list[RenderableType] = [head, steps, loop, grid]
    if v.waiting:
        parts.append(Text(f"waiting for you: {v.waiting}: /approve or /deny", style="bold yellow"))
    hints = [(f"hint for the next design: {h}", "green") for h in v.pending_hints[-2:]]
    if not hints and v.last_hint:  # stays until the next hint: the proof that it was used, or was not
        hint, cid, acted = v.last_hint
        hints = [
            (f"✓ your hint reached {short(cid)}'s design: {hint}", "green")
            if acted
            else (f"✗ {short(cid)}'s design could not act on your hint: {hint}", "yellow")
        ]
    parts += [Text(h, style=style, overflow="ellipsis", no_wrap=True) for h, style in hints]
    return Group(*parts)


class ProgressPane(Static):
    def show(self, view: ProgressView) -> None:
        self.update(progress_renderable(view))


class Conversation(RichLog):
    """The run's story and the chat, as it happens. It follows new lines unless the person scrolled up to
    read back; scrolling down to the end follows again."""

    follow = True

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        if new_value < old_value:
            self.follow = False
        if new_value >= self.max_scroll_y:
            self.follow = True

    def add(self, lines: Iterable[Line]) -> None:
        for line in lines:
            text = Text()
            if line.who in ("you", "agent"):
                text.append(f"{line.who}: ", style=WHO_STYLE[line.who])
            text.append(line.text, style=line.style)
            self.write(text, scroll_end=self.follow)


def fitness_text(row: Row) -> str:
    """The difference to the baseline on fresh seeds, its interval (not symmetric in general) and n; else,
    marked by `~`, the fitness on the seeds that chose β (in-sample: what a race has not yet measured)."""
    if row.vs_baseline is not None and row.vs_low is not None and row.vs_high is not None:
        return f"{row.vs_baseline:+.2f}[{row.vs_low:+.2f},{row.vs_high:+.2f}] {row.vs_n}"
    if row.fitness is None:
        return ""
    low, high = row.ci_low if row.ci_low is not None else row.fitness, row.ci_high or row.fitness
    return f"~{row.fitness:+.2f}[{low:+.2f},{high:+.2f}]"


STATUS_LABEL = {"evaluated": "ok", "check_failed": "check ✗", "rejected": "rejected", "failed": "failed"}
VERDICT_LABEL = {
    "better": ("better", "bold green"),
    "worse": ("worse", "red"),
    "not_separated": ("≈ base", ""),
}
"""An evaluated candidate's status is its verdict against the baseline over the run (agent.fresh): `better`
only on confirmation seeds at the run's FDR; `≈ base` when not separated from it."""
INCUMBENT_MARK = "◆"
"""Before the name of the run's best by evidence (the chart's line), whatever its point score."""


class Leaderboard(DataTable):
    """Candidates ranked by fitness; Enter on one opens it."""

    class Chosen(Message):
        def __init__(self, candidate_id: str) -> None:
            super().__init__()
            self.candidate_id = candidate_id

    def on_mount(self) -> None:
        self.cursor_type = "row"
        self.zebra_stripes = True
        for label, width in (("#", 3), ("candidate", 13), ("status", 8), ("vs base [CI] n", 20)):
            self.add_column(label, width=width)

    def show(self, rows: Sequence[Row], pinned: Sequence[str] = (), vetoed: Sequence[str] = ()) -> None:
        """Same candidates in the same order: only the cells that changed; else a rebuild that keeps the
        cursor on its candidate and the scroll where it was (no jump, no flicker)."""
        top = incumbent(list(rows))
        cells = [(r.id, self._cells(r, pinned, vetoed, top is not None and r.id == top.id)) for r in rows]
        if [cid for cid, _ in cells] == [k.value for k in self.rows]:
            for cid, new in cells:
                for column, (old, value) in enumerate(zip(self.get_row(cid), new, strict=True)):
                    if str(old) != str(value) or getattr(old, "style", None) != getattr(value, "style", None):
                        self.update_cell(cid, self.ordered_columns[column].key, value)
            return
        keep = self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value if self.row_count else None
        scroll = self.scroll_y
        self.clear()
        for cid, row in cells:
            self.add_row(*row, key=cid)
        if keep is not None and keep in self.rows:
            self.move_cursor(row=self.get_row_index(keep), animate=False, scroll=False)
        self.scroll_to(y=scroll, animate=False, immediate=True)

    @staticmethod
    def _cells(
        r: Row, pinned: Sequence[str], vetoed: Sequence[str], leads: bool
    ) -> tuple[str, Text, Text, str]:
        mark = "★" if r.id in pinned else "⊘" if r.id in vetoed else ""
        name = Text(INCUMBENT_MARK if leads else "", "bold green")
        name.append(mark + r.name)
        name.overflow, name.no_wrap = "ellipsis", True
        status = STATUS_LABEL.get(r.status, r.status)
        style = "green" if r.status == "evaluated" else "red" if r.status in STATUS_LABEL else "yellow"
        if r.status == "evaluated" and r.vs_verdict in VERDICT_LABEL:
            status, style = VERDICT_LABEL[r.vs_verdict]
        return (str(r.index), name, Text(status, style), fitness_text(r))

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        if event.row_key.value:
            self.post_message(self.Chosen(event.row_key.value))


class FitnessChart(Widget):
    """Each evaluated candidate's score over the run (tui.chart), with its CI and the incumbent."""

    points: tuple[Point, ...] = ()

    def show(self, points: Sequence[Point]) -> None:
        if tuple(points) != self.points:
            self.points = tuple(points)
            self.refresh()

    def render(self) -> RenderableType:
        return Text("\n").join(chart_lines(self.points, self.size.width, self.size.height))


class CommandSuggester(Suggester):
    """Completes slash commands, candidate ids and budget keys (see tui.commands.complete)."""

    def __init__(self, ids: Callable[[], Sequence[str]], run_id: Callable[[], str | None]) -> None:
        super().__init__(use_cache=False, case_sensitive=True)
        self.ids = ids
        self.run_id = run_id

    async def get_suggestion(self, value: str) -> str | None:
        return complete(value, self.ids(), self.run_id())


class Prompt(Input):
    """Chat with the agent, or a /command; Tab (or →) takes the suggestion."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("tab", "complete", "complete", show=False)]

    def action_complete(self) -> None:
        if self._suggestion and self.cursor_at_end:
            self.value = self._suggestion
            self.cursor_position = len(self.value)
        else:
            self.screen.focus_next()
