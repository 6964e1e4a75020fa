"""How every command reports a mistake a person made: one sentence on stderr and exit code 2."""

from __future__ import annotations

import typer


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print `message` as one sentence on stderr; the caller raises the returned Exit."""
    typer.echo(message.rstrip(".") + ".", err=True)
    return typer.Exit(code)
