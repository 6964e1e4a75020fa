"""`disco tui [RUN]` and `disco chat`: the terminal UI, a client of the headless runner (see tui/)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from agent.commands.errors import fail as _fail

Light = Annotated[bool, typer.Option("--light", help="The light theme (Ctrl+T switches in the app).")]


def _run_args(**flags: object) -> list[str]:
    args: list[str] = []
    for name, value in flags.items():
        if value is not None:
            args += [f"--{name.replace('_', '-')}", str(value)]
    return args


def tui(
    run: Annotated[str | None, typer.Argument(help="The run to attach to; none: start a new one.")] = None,
    target: Annotated[str | None, typer.Option(help="New run: what to discover.")] = None,
    model: Annotated[str | None, typer.Option(help="New run: model name, or `offline`.")] = None,
    base_url: Annotated[str | None, typer.Option(help="New run: OpenAI-compatible endpoint.")] = None,
    max_candidates: Annotated[int | None, typer.Option(help="New run: stop after this many.")] = None,
    hours: Annotated[float | None, typer.Option(help="New run: stop after this much wall clock.")] = None,
    preset: Annotated[
        str | None, typer.Option(help="New run: evaluation preset (default|quick|tiny).")
    ] = None,
    config_file: Annotated[Path | None, typer.Option("--config", help="New run: TOML config file.")] = None,
    run_id: Annotated[str | None, typer.Option("--run-id", help="New run: its name.")] = None,
    light: Light = False,
) -> None:
    """Watch and steer a run: attach to RUN (running or finished), or start a new run headless and attach.
    Quitting leaves a running run going; `disco tui RUN` comes back to it."""
    from agent.home import disco_home
    from agent.runs import RunDir, RunError, new_run_id
    from tui.app import make_app
    from tui.services import RunSource, start_run, wait_started

    home = disco_home()
    flags = {
        "target": target,
        "model": model,
        "base_url": base_url,
        "max_candidates": max_candidates,
        "hours": hours,
        "preset": preset,
        "config": config_file,
    }
    if run is not None:
        given = [f"--{k.replace('_', '-')}" for k, v in (flags | {"run_id": run_id}).items() if v is not None]
        if given:
            raise _fail(
                f"{', '.join(given)} only apply to a new run; `disco tui {run}` attaches to an existing one"
            )
        try:
            app = make_app(home, run, light=light)
        except RunError as exc:
            raise _fail(f"{exc}.") from None
    else:
        from agent.commands.run import check_budget_flags
        from agent.runs import check_run_id

        check_budget_flags({"max_candidates": max_candidates, "hours": hours})
        try:
            new_id = check_run_id(run_id) if run_id else new_run_id()
        except RunError as exc:
            raise _fail(f"{exc}.") from None
        if (home / "runs" / new_id).exists():
            raise _fail(f"run {new_id} already exists; `disco tui {new_id}` attaches to it")
        process, log = start_run(home, new_id, _run_args(**flags))
        source = RunSource(RunDir(home / "runs" / new_id), process=process, log=log)
        typer.echo(f"starting run {new_id} headless…", err=True)
        why = wait_started(source)
        if why is not None:
            raise _fail(f"the run did not start: {why}")
        app = make_app(home, source=source, light=light)
    result = app.run()
    if result is not None and result.message():
        typer.echo(result.message(), err=True)


def chat(
    model: Annotated[str | None, typer.Option(help="The chat model's name (default: the config's).")] = None,
    base_url: Annotated[str | None, typer.Option(help="Its OpenAI-compatible endpoint.")] = None,
    config_file: Annotated[Path | None, typer.Option("--config", help="TOML config file.")] = None,
    light: Light = False,
) -> None:
    """Talk with the agent about the memory and past runs, without starting a run."""
    from agent.config import ConfigError, find_config_file, load_config, meta_model_overrides
    from agent.home import disco_home
    from agent.preflight import PreflightError, only_model
    from tui.app import make_app
    from tui.chat import ChatService

    home = disco_home()
    overrides = meta_model_overrides(model, base_url)
    try:
        settings = load_config(find_config_file(config_file, home), overrides).models.meta
        if base_url and not model and settings.offline:  # as `disco run`: the server's only model, said aloud
            picked = overrides["models"]["meta"]["model"] = only_model(settings)
            typer.echo(f"--base-url without --model: using the server's only model, {picked}", err=True)
    except (ConfigError, PreflightError) as exc:
        raise _fail(f"{exc}.") from None
    result = make_app(home, chat=ChatService(overrides=overrides, config_file=config_file), light=light).run()
    if result is not None and result.message():
        typer.echo(result.message(), err=True)
