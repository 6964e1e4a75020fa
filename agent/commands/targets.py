"""`disco targets list|show`: what can be discovered, builtin or plugged in (docs/targets.md)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer

from agent.commands.errors import fail

if TYPE_CHECKING:
    from targets.base import TargetEnv

targets_app = typer.Typer(
    help="Targets: what disco can discover, and how each is scored.", no_args_is_help=True
)


def _env() -> TargetEnv:
    from agent.home import cache_dir
    from targets.base import TargetEnv

    return TargetEnv(cache_dir=cache_dir())


@targets_app.command("list")
def list_cmd(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """The builtin targets and those installed as entry points (group `disco.targets`)."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from targets.registry import list_targets

    infos = list_targets(_env())
    if as_json:
        keys = {"spec", "name", "summary", "source", "location"}
        typer.echo(json.dumps([i.model_dump(mode="json", include=keys) for i in infos], indent=2))
        return
    table = Table(title="targets (`disco targets show NAME`; a file or module:factory works too)")
    for col in ("target", "summary", "source"):
        table.add_column(col)
    for i in infos:
        table.add_row(escape(i.spec), escape(i.summary), escape(i.source))
    Console().print(table)


@targets_app.command("show")
def show_cmd(
    spec: Annotated[
        str, typer.Argument(help="A target name, a target file, a package dir or module:factory.")
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """A target's full declaration: description, interface, rules, evaluators, fitness, seed archive."""
    from targets.registry import TargetError, describe_target

    try:
        info = describe_target(spec, _env())
    except TargetError as exc:
        raise fail(str(exc)) from None
    if as_json:
        typer.echo(info.model_dump_json(indent=2))
        return
    out = [
        f"{info.spec} — {info.summary}",
        f"name in memory: {info.name}; source: {info.source} ({info.location})",
        "",
        info.description,
        "",
        "Interface:",
        info.interface,
        "",
        "Rules:",
        *(f"- {r}" for r in info.rules),
        "",
        "Evaluators (cheap first):",
        *(
            f"- {e.name} [{e.device}{'' if e.automatic else ', on demand'}]: {e.what} ({e.cost})"
            for e in info.evaluators
        ),
        "",
        f"Fitness: {info.fitness_meaning}",
        f"Baseline: {info.baseline or '(none declared)'}",
        f"Seed archive ({info.seeds}): {', '.join(info.seed_names)}",
    ]
    typer.echo("\n".join(out))
