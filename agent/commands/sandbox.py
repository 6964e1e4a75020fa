"""`disco sandbox`: run a file in a sandbox, and say what each backend achieves on this host.

The backend comes from `--backend`, else `$DISCO_SANDBOX`, else `local`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from agent.commands.errors import fail as _fail

if TYPE_CHECKING:
    from sandbox.base import Sandbox

sandbox_app = typer.Typer(
    help="Run code in the sandbox and diagnose the sandbox backends.", no_args_is_help=True
)

BackendOption = Annotated[
    str | None,
    typer.Option("--backend", "--sandbox", help="local | docker | e2b (default: $DISCO_SANDBOX or local)."),
]


def backend_name(option: str | None) -> str:
    """CLI flag over environment over the default (the project's layering order)."""
    return option or os.environ.get("DISCO_SANDBOX") or "local"


def open_backend(name: str) -> Sandbox:
    """A sandbox for one command: the local backend keeps no warm workers (nothing to reuse them)."""
    from sandbox.registry import get_sandbox

    return get_sandbox(name, warm=0) if name == "local" else get_sandbox(name)


@sandbox_app.command("run")
def run_file(
    file: Annotated[Path, typer.Argument(help="A Python file to run in the sandbox.")],
    backend: BackendOption = None,
    timeout: Annotated[float, typer.Option("--timeout", help="Wall-clock seconds.")] = 30.0,
    memory_mb: Annotated[int, typer.Option("--memory-mb", help="Memory limit in MB.")] = 2048,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Run FILE.py in the sandbox. Exit 0 when it ran and exited 0, 1 otherwise, 2 on a usage error."""
    try:
        code = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or "it is not UTF-8 text"
        raise _fail(f"cannot read {file}: {reason}.") from None
    from pydantic import ValidationError

    from sandbox.models import SandboxLimits, SandboxRequest
    from sandbox.registry import SandboxUnavailable

    try:
        limits = SandboxLimits(timeout_s=timeout, memory_mb=memory_mb)
    except ValidationError as exc:
        raise _fail(f"invalid limits: {exc.errors()[0]['loc'][0]} {exc.errors()[0]['msg']}.") from None
    try:
        sandbox = open_backend(backend_name(backend))
        try:
            result = sandbox.run(SandboxRequest(code=code, limits=limits))
        finally:
            sandbox.close()
    except SandboxUnavailable as exc:
        raise _fail(f"{exc}.") from None
    if as_json:
        typer.echo(json.dumps(result.summary(), indent=2))
    else:
        typer.echo(result.stdout, nl=False)
        if result.stderr:
            typer.echo(result.stderr, err=True, nl=False)
        typer.echo(
            f"[{result.backend}] {result.status}: {result.reason} ({result.duration_s:.2f} s, "
            f"peak {result.peak_memory_mb or 0:.0f} MB)",
            err=True,
        )
    raise typer.Exit(0 if result.status == "ok" else 1)


@sandbox_app.command("doctor")
def doctor(
    as_json: Annotated[bool, typer.Option("--json", help="Print the reports as JSON.")] = False,
    backend: Annotated[str | None, typer.Option("--backend", help="Only this backend.")] = None,
) -> None:
    """What each backend achieves here: network isolated? file system read-only? limits enforced?"""
    from sandbox.doctor import diagnose, diagnose_all

    reports = [diagnose(backend)] if backend else diagnose_all()
    if as_json:
        typer.echo(json.dumps([r.model_dump() for r in reports], indent=2))
        return
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    def yes(flag: bool) -> str:
        return "[green]yes[/]" if flag else "[red]NO[/]"

    table = Table(title="disco sandbox backends on this host")
    for col in ("backend", "available", "network isolated", "fs read-only", "own uid", "limits"):
        table.add_column(col)
    for r in reports:
        limits = ", ".join(r.limits_enforced) or "-"
        table.add_row(
            r.backend, yes(r.available), yes(r.network_isolated), yes(r.filesystem_readonly),
            yes(r.separate_uid), limits,
        )  # fmt: skip
    console = Console()
    console.print(table)
    for r in reports:
        console.print(f"[bold]{r.backend}[/]: {escape(r.detail)}")
        for warning in r.warnings:
            console.print(f"  [yellow]warning[/]: {escape(warning)}")
