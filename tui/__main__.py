"""`python -m tui [--home H] tui [RUN] | chat`: the same commands as `disco tui` and `disco chat`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from agent.commands.tui import chat, tui
from agent.home import set_home

app = typer.Typer(name="disco-tui", no_args_is_help=True, pretty_exceptions_enable=False)


@app.callback()
def main(
    home: Annotated[
        Path | None, typer.Option("--home", help="Data dir (default: $DISCO_HOME or ./.disco).")
    ] = None,
) -> None:
    set_home(home)


app.command("tui")(tui)
app.command("chat")(chat)

if __name__ == "__main__":
    app()
