"""`disco report RUN`: the morning's reading of a run, as report.md and a self-contained report.html."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from agent.commands.errors import fail


def report(
    run_id: Annotated[str, typer.Argument(help="The run to report on.")],
    out: Annotated[
        Path | None, typer.Option("--out", help="Write the report here (default: the run directory).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the paths written as JSON.")] = False,
) -> None:
    """Write report.md and report.html: summary, cost, leaderboard, frontier, lineage, failures, the best
    code and open questions. Works on a finished run and on one still running."""
    from agent.commands.run import open_run
    from agent.report.render import write_report

    run = open_run(run_id)
    if out is not None and out.exists() and not out.is_dir():
        raise fail(f"--out {out} is a file, not a directory")
    try:
        files = write_report(run, out)
    except OSError as exc:
        raise fail(f"could not write the report: {exc.strerror or exc} ({exc.filename or out})") from None
    if as_json:
        doc = {
            "run_id": run.run_id,
            "markdown": str(files.markdown),
            "html": str(files.html),
            "images": {name: str(path) for name, path in files.images.items()},
        }
        typer.echo(json.dumps(doc, indent=2))
        return
    typer.echo(f"wrote {files.markdown}")
    typer.echo(f"wrote {files.html}")
