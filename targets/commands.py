"""What a target adds to the `disco` command line: its own commands (the DPO target's `disco losses …`,
`disco bench losses`, `disco bench sigma`) and how `disco memory` fingerprints an archive's bare code.

A target declares one `TargetCommands` object; the registry names it (`targets.registry.COMMANDS` for a
builtin, an entry point in the group `disco.commands` for an installed package, named like the target).
Targets sit below the CLI and never import it, so the CLI hands `register` a `CommandContext`: where to
add the commands and the few services of the CLI they use. The CLI registers every target's commands
at start-up, so a commands module imports only light libraries at its top (typer, rich), never torch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel

if TYPE_CHECKING:
    import typer

    from sandbox.base import Sandbox


@dataclass(frozen=True)
class CommandContext:
    """The CLI as a target's commands see it."""

    root: typer.Typer
    """`disco`: a target adds its own command groups here (`disco losses`)."""
    bench: typer.Typer
    """`disco bench`: benchmarks of candidates on a target's evaluator."""
    cache_dir: Callable[[], Path]
    """The data dir's cache; called when a command runs, once `--home` has been read."""
    fail: Callable[[str], typer.Exit]
    """A person's mistake: prints the message as one sentence on stderr; the command raises what it returns
    (exit code 2), as every `disco` command does."""
    sandbox_name: Callable[[str | None], str]
    """The sandbox backend for a `--sandbox` flag: the flag, else $DISCO_SANDBOX, else local."""
    open_sandbox: Callable[[str], Sandbox]
    """A sandbox backend for one command, by name; raises sandbox.registry.SandboxUnavailable."""


class FingerprintCall(BaseModel):
    """How a target's behavioural fingerprint of bare code is computed in the sandbox: the function
    (`module:function`, called with `code=`), what to preload, and the length of the list it returns.
    Declared as data, so that the CLI checks what comes back without importing the target (or torch)."""

    call: str
    preload: tuple[str, ...]
    length: int


@dataclass(frozen=True)
class TargetCommands:
    """A target's contributions to the CLI; both are optional."""

    register: Callable[[CommandContext], None] | None = None
    """Adds the target's commands to `context.root` / `context.bench`."""
    archive_fingerprint: FingerprintCall | None = None
    """How `disco memory import` / `novelty` fingerprint a candidate's code (None: judged by text alone)."""
