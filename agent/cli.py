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
    from agent.commands.jobs import jobs_app
    from agent.commands.memory import memory_app
    from agent.commands.models import models_app
    from agent.commands.report import report
    from agent.commands.run import control, resume, run, runs_app
    from agent.commands.sandbox import sandbox_app
    from agent.commands.targets import targets_app
    from agent.commands.tui import chat, tui

    bench_app = typer.Typer(help="Benchmarks of candidates on a target's evaluator.", no_args_is_help=True)
    _register_targets(bench_app)
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


def _register_targets(bench_app: typer.Typer) -> None:
    """Each target's own commands (the DPO target's `disco losses`, `disco bench losses`), as the registry
    names them. An installed target whose commands do not load is named on stderr; the rest of disco works."""
    from agent.commands.errors import fail
    from agent.commands.sandbox import backend_name, open_backend
    from agent.home import cache_dir
    from targets.commands import CommandContext
    from targets.registry import TargetError, command_sources, commands_of

    context = CommandContext(
        root=app,
        bench=bench_app,
        cache_dir=cache_dir,
        fail=fail,
        sandbox_name=backend_name,
        open_sandbox=open_backend,
    )
    for name in command_sources():
        try:
            declared = commands_of(name)
        except TargetError as exc:
            typer.echo(f"disco: {exc}.", err=True)
            continue
        if declared is not None and declared.register is not None:
            declared.register(context)


_register()

if __name__ == "__main__":
    app()
