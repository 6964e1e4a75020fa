"""The score-over-time chart as text: one column per evaluated candidate, its 95% CI as a bar, its score
(the fresh-seed difference to the baseline, or a baseline-less target's fitness) as a dot, and the
incumbent (the run's best by evidence, never the highest dot: that is the winner's curse) as a line.
Plain Rich text, so that it is tested without Textual and looks the same in a snapshot and in a terminal."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text

from tui.view import Point

LABEL = 7  # "+0.123 "


def chart_lines(points: Sequence[Point], width: int, height: int) -> list[Text]:
    """`height` lines of at most `width` cells; the newest candidates when they do not all fit."""
    if width < LABEL + 4 or height < 3:
        return [Text("(too small)", style="dim")]
    if not points:
        return [Text("no candidate recorded yet", style="dim")]  # one evaluated, not recorded: not yet
    rows, plot_w = height - 1, width - LABEL
    ordered = sorted(points, key=lambda p: p.index)
    best: list[float | None] = []
    running: float | None = None
    for p in ordered:
        running = p.value if p.incumbent else running
        best.append(running)
    shown = ordered[-plot_w:]
    best = best[-plot_w:]
    spacing = max(1, min(4, plot_w // len(shown)))
    line = [b for b in best if b is not None]  # the incumbent may be older than the columns shown
    lo = min([min(p.low, p.value) for p in shown] + line)
    hi = max([max(p.high, p.value) for p in shown] + line)
    if hi - lo < 1e-9:
        lo, hi = lo - 0.5, hi + 0.5

    def row(v: float) -> int:
        return round((hi - v) / (hi - lo) * (rows - 1))

    grid = [[(" ", "")] * plot_w for _ in range(rows)]
    for i, (p, b) in enumerate(zip(shown, best, strict=True)):
        col = i * spacing + spacing // 2
        if b is not None:
            for c in range(i * spacing, min(plot_w, (i + 1) * spacing)):
                grid[row(b)][c] = ("─", "green")
        if spacing > 1:  # a CI bar per candidate, when there is room for them
            for r in range(row(p.high), row(p.low) + 1):
                grid[r][col] = ("┼", "green") if grid[r][col][0] == "─" else ("│", "dim")
        grid[row(p.value)][col] = ("●", "bold green" if p.incumbent else "bold")
    out = []
    mid = rows // 2
    for r, cells in enumerate(grid):
        value = hi if r == 0 else lo if r == rows - 1 else (hi + lo) / 2 if r == mid and rows >= 5 else None
        line = Text(f"{value:+.3f} " if value is not None else " " * LABEL, style="dim")
        for ch, style in cells:
            line.append(ch, style=style)
        out.append(line)
    axis = [" "] * plot_w
    taken = 0
    for i in sorted({0, len(shown) - 1}):
        label = f"#{shown[i].index}"
        start = max(taken, min(i * spacing + spacing // 2 - len(label) // 2, plot_w - len(label)))
        if start + len(label) <= plot_w and (i == 0 or start > taken):
            axis[start : start + len(label)] = label
            taken = start + len(label) + 1
    more = f" (last {len(shown)} of {len(ordered)})" if len(shown) < len(ordered) else ""
    out.append(Text((" " * LABEL + "".join(axis).rstrip() + more)[:width], style="dim"))
    return out
