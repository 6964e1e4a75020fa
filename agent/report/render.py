"""Write report.md (figures beside it in report_files/) and a self-contained report.html (figures inlined
as data URIs, CSS inline, no external URL), both from one ReportData through Jinja templates."""

from __future__ import annotations

import base64
import functools
import re
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from agent.report.collect import Candidate, ReportData, collect
from agent.report.plots import all_plots, lineage_edges
from agent.report.questions import open_questions
from agent.runs import RunDir

FILES_DIR = "report_files"
MAX_ROWS = 200
"""Leaderboard rows shown; a longer run is summarised by `disco runs show`."""


class ReportFiles(BaseModel):
    markdown: Path
    html: Path
    images: dict[str, Path]


def _load(name: str) -> tuple[str, str, Any] | None:
    path = resources.files("agent.report").joinpath("templates", name)
    if not path.is_file():
        return None
    return path.read_text(encoding="utf-8"), name, lambda: True


def _ci(x: Any) -> str:
    return "" if x is None else x.text()


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _md(text: Any) -> str:
    """Candidate text for markdown: a viewer renders inline HTML, so a model's `<script>` must stay text."""
    return str(text).replace("<", "&lt;").replace(">", "&gt;")


def _cell(text: Any) -> str:
    """Text safe inside a markdown table cell: one line, no column breaks, no markup."""
    return _md(re.sub(r"\s+", " ", str(text)).replace("|", "\\|").strip())


def _fence(code: str) -> str:
    """A code fence longer than any run of backticks in the code, so that the code cannot close it."""
    longest = max((len(m) for m in re.findall(r"`+", code)), default=0)
    return "`" * max(3, longest + 1)


@functools.cache
def _environment(html: bool) -> Any:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FunctionLoader(_load),
        undefined=jinja2.StrictUndefined,
        autoescape=html,  # every candidate text is escaped in HTML: names and thoughts come from a model
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters |= {"ci": _ci, "duration": _duration, "cell": _cell, "md": _md, "fence": _fence}
    return env


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _lineage_lines(data: ReportData) -> list[str]:
    """`#3 ← #1, #2` for every candidate with parents in the run: the tree in words."""
    index = {c.id: c.index for c in data.candidates}
    parents: dict[str, list[str]] = {}
    for source, child in lineage_edges(data):
        parents.setdefault(child, []).append(f"#{index[source]}")
    return [f"#{index[child]} ← {', '.join(ps)}" for child, ps in parents.items()]


def _context(data: ReportData) -> dict[str, Any]:
    best = data.best()
    ranked = data.ranked()
    history = []
    if best is not None:
        history = [e for e in data.evidence if best.id in (e.candidate, e.incumbent)]
    index = {c.id: c.index for c in data.candidates}
    return {
        "data": data,
        "best": best,
        "best_checks": _checks(best) if best else [],
        "rows": ranked[:MAX_ROWS],
        "more_rows": max(0, len(ranked) - MAX_ROWS),
        "rank": {c.id: i + 1 for i, c in enumerate(ranked) if c.fitness},
        "index": index,
        "with_verdicts": any(c.verdict for c in data.candidates),
        "history": history,
        "counts": data.status_counts(),
        "repairs": sum(c.repairs for c in data.candidates),
        "questions": open_questions(data),
        "lineage": _lineage_lines(data),
        "generated_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def _checks(cand: Candidate) -> list[dict[str, str]]:
    out = []
    for check in cand.checks:
        if check.passed:
            result = "pass"
        elif check.level == "error":
            result = "FAIL"
        else:
            result = "skipped" if check.message.startswith("skipped") else check.level
        out.append({"name": check.name, "result": result, "message": check.message})
    return out


def write_report(run: RunDir, out_dir: Path | None = None) -> ReportFiles:
    """Collect the run, draw its figures and write report.md and report.html into `out_dir` (default: the
    run directory); returns the paths written."""
    out = (out_dir or run.root).resolve()
    out.mkdir(parents=True, exist_ok=True)
    data = collect(run)
    images = all_plots(data, out / FILES_DIR)
    context = _context(data)
    md = _environment(False).get_template("report.md.j2")
    html = _environment(True).get_template("report.html.j2")
    md_images = {name: f"{FILES_DIR}/{path.name}" for name, path in images.items()}
    html_images = {name: _data_uri(path) for name, path in images.items()}
    md_path, html_path = out / "report.md", out / "report.html"
    md_path.write_text(md.render(images=md_images, **context), encoding="utf-8")
    html_path.write_text(html.render(images=html_images, **context), encoding="utf-8")
    return ReportFiles(markdown=md_path, html=html_path, images=images)
