"""The `disco` command. Heavy libraries are imported inside commands so that `--help` is instant."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from agent.home import set_home

app = typer.Typer(
    name="disco",
    help="disco: an agentic research assistant that discovers algorithms with LLMs.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.callback()
def main(
    home: Annotated[
        Path | None,
        typer.Option("--home", help="Data dir (caches, runs, memory). Default: $DISCO_HOME or ./.disco."),
    ] = None,
) -> None:
    set_home(home)


def _register() -> None:
    from agent.commands.bench import bench_app
    from agent.commands.jobs import jobs_app
    from agent.commands.losses import losses_app
    from agent.commands.memory import memory_app
    from agent.commands.models import models_app
    from agent.commands.report import report
    from agent.commands.run import control, resume, run, runs_app
    from agent.commands.sandbox import sandbox_app
    from agent.commands.targets import targets_app
    from agent.commands.tui import chat, tui

    app.add_typer(losses_app, name="losses")
    app.add_typer(bench_app, name="bench")
    app.add_typer(jobs_app, name="jobs")
    app.add_typer(memory_app, name="memory")
    app.add_typer(models_app, name="models")
    app.add_typer(sandbox_app, name="sandbox")
    app.add_typer(targets_app, name="targets")
    app.command("run")(run)
    app.command("resume")(resume)
    app.command("control")(control)
    app.command("report")(report)
    app.add_typer(runs_app, name="runs")
    app.command("tui")(tui)
    app.command("chat")(chat)


_register()

if __name__ == "__main__":
    app()
