"""What a person can type into the TUI's prompt: the slash commands, their parsing and their completion.

Plain functions, no Textual: `parse_input` turns a line into one action (chat text, a control command for
the run, a memory query, a UI action) or an `InputError` with one sentence; `complete` gives the
suggestion that the prompt shows greyed out (accepted with Tab or →).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from agent.control import BUDGET_KEYS, Command, ControlError, parse_command

Kind = Literal["control", "memory", "ui"]


@dataclass(frozen=True)
class Spec:
    name: str
    args: str
    """How its argument is written in the help, e.g. `TEXT`, `ID`, `[K]`; empty: none."""
    help: str
    kind: Kind


COMMANDS: tuple[Spec, ...] = (
    Spec("pause", "", "pause the run at its next step boundary", "control"),
    Spec("resume", "", "resume a paused run", "control"),
    Spec("stop", "", "stop the run at its next step boundary (disco resume goes on)", "control"),
    Spec("hint", "TEXT", "a hint for the next design step", "control"),
    Spec("pin", "ID", "keep a candidate in every design prompt (3, #3 or a full id)", "control"),
    Spec("veto", "ID", "never evaluate, reuse or show a candidate", "control"),
    Spec("approve", "", "approve the GPU job the run waits on", "control"),
    Spec("deny", "", "deny the GPU job the run waits on", "control"),
    Spec(
        "budget",
        "KEY=VALUE …",
        "change a budget: candidates, hours, tokens, usd, cpu_hours, gpu_hours (none: unlimited)",
        "control",
    ),
    Spec("best", "[K]", "the fittest candidates in memory", "memory"),
    Spec("similar", "TEXT", "past attempts similar to a text or code", "memory"),
    Spec("failures", "[K]", "recent failures and what fixed them", "memory"),
    Spec("show", "ID", "a candidate's code, diff against its parent and check results", "ui"),
    Spec("theme", "", "switch between the dark and the light theme", "ui"),
    Spec("help", "", "keys and commands", "ui"),
    Spec("quit", "", "leave the TUI (a running run goes on headless)", "ui"),
)
BY_NAME = {s.name: s for s in COMMANDS}
ID_COMMANDS = ("pin", "veto", "show")


@dataclass(frozen=True)
class ChatText:
    text: str


@dataclass(frozen=True)
class ControlAction:
    command: Command


@dataclass(frozen=True)
class MemoryQuery:
    kind: Literal["best", "similar", "failures"]
    text: str = ""
    k: int = 5


@dataclass(frozen=True)
class UIAction:
    name: str
    arg: str = ""


@dataclass(frozen=True)
class InputError:
    message: str


Parsed = ChatText | ControlAction | MemoryQuery | UIAction | InputError


def resolve_id(arg: str, run_id: str | None) -> str:
    """`3`, `#3` or `0003` → `<run>-0003`; anything else is taken as a full candidate id."""
    arg = arg.strip()
    short = arg.lstrip("#")
    if run_id and short.isdigit():
        return f"{run_id}-{int(short):04d}"
    return arg


def parse_input(text: str, run_id: str | None = None) -> Parsed | None:
    """One line from the prompt as an action; None for a blank line."""
    text = text.strip()
    if not text:
        return None
    if not text.startswith("/"):
        return ChatText(text)
    name, _, arg = text[1:].partition(" ")
    name, arg = name.lower(), arg.strip()
    spec = BY_NAME.get(name)
    if spec is None:
        close = difflib.get_close_matches(name, BY_NAME, n=1)
        maybe = f"; did you mean /{close[0]}?" if close else "; /help lists them"
        return InputError(f"unknown command /{name}{maybe}")
    if spec.kind == "control":
        if run_id is None:
            return InputError(f"/{name} steers a run, and none is attached (`disco tui RUN` attaches)")
        if name in ("pin", "veto") and arg:
            arg = resolve_id(arg, run_id)
        try:
            return ControlAction(parse_command(name, arg, source="tui"))
        except ControlError as exc:
            return InputError(_as_typed(str(exc)))
    if spec.kind == "memory":
        return _memory(name, arg)
    if name == "show":
        if not arg:
            return InputError("/show needs a candidate id, e.g. /show 3")
        return UIAction("show", resolve_id(arg, run_id))
    return UIAction(name, arg)


def _as_typed(message: str) -> str:
    """The control module's errors quote CLI words (`hint`); in the TUI they are typed as /hint."""
    return re.sub(r"`([^`]*)`", lambda m: ("/" if m[1].split(" ")[0] in BY_NAME else "") + m[1], message)


def _memory(name: str, arg: str) -> Parsed:
    if name == "similar":
        return MemoryQuery("similar", text=arg) if arg else InputError("/similar needs a text or code")
    if name not in ("best", "failures"):
        return InputError(f"unknown memory command /{name}")  # the memory commands are these three
    if not arg:
        return MemoryQuery(name)
    if not re.fullmatch(r"\d{1,2}", arg) or not 1 <= int(arg) <= 20:
        return InputError(f"/{name} takes a count from 1 to 20; got {arg!r}")
    return MemoryQuery(name, k=int(arg))


def complete(value: str, candidate_ids: Iterable[str] = (), run_id: str | None = None) -> str | None:
    """The whole line the prompt suggests for what has been typed so far, or None."""
    if not value.startswith("/"):
        return None
    name, space, arg = value[1:].partition(" ")
    if not space:
        for spec in COMMANDS:
            if spec.name.startswith(name.lower()) and spec.name != name:
                return f"/{spec.name}" + (" " if spec.args else "")
        return None
    if name in ID_COMMANDS and " " not in arg:
        ids = list(candidate_ids)
        for cid in reversed(ids):  # the latest first: the one a person most likely means
            short = cid.rsplit("-", 1)[-1].lstrip("0") if run_id and cid.startswith(run_id) else ""
            if arg and short.startswith(arg.lstrip("#")) and short != arg.lstrip("#"):
                return f"/{name} {short}"
            if cid.startswith(arg) and cid != arg:
                return f"/{name} {cid}"
        return None
    if name == "budget":
        head, _, last = arg.rpartition(" ")
        if "=" not in last:
            for key in BUDGET_KEYS:
                if key.startswith(last) and key != last:
                    return f"/budget {head + ' ' if head else ''}{key}="
    return None


def help_rows() -> list[tuple[str, str]]:
    """(usage, what it does) for every command, as the help screen lists them."""
    return [(f"/{s.name}" + (f" {s.args}" if s.args else ""), s.help) for s in COMMANDS]
