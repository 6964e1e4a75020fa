"""The control channel of a run: commands a person sends while it runs headless (`disco control`, the TUI).

Commands are appended to the run's `control.jsonl`; the runner reads new ones between steps, applies
them and writes each as a `human` event. The event log is the record of what was applied, so that after a
crash a command is applied exactly once: on start the runner replays applied commands from the events and
applies the rest.
"""

from __future__ import annotations

import os
import re
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal, cast

from pydantic import BaseModel, Field

if TYPE_CHECKING:
    from agent.run_state import RunState

Action = Literal["pause", "resume", "stop", "hint", "pin", "veto", "approve", "deny", "budget"]
ACTIONS: tuple[str, ...] = ("pause", "resume", "stop", "hint", "pin", "veto", "approve", "deny", "budget")
BUDGET_KEYS = {
    "candidates": "max_candidates",
    "hours": "hours",
    "tokens": "max_tokens",
    "usd": "max_usd",
    "cpu_hours": "max_cpu_hours",
    "gpu_hours": "max_gpu_hours",
}


class ControlError(ValueError):
    """A command that cannot be sent: one sentence for the person."""


class Command(BaseModel):
    id: str = Field(default_factory=lambda: uuid.uuid4().hex[:12])
    time: datetime = Field(default_factory=lambda: datetime.now(UTC))
    action: Action
    arg: str = ""
    source: str = "cli"


def parse_command(action: str, arg: str = "", source: str = "cli") -> Command:
    """Validate a command as typed by a person; errors say what is expected."""
    if action not in ACTIONS:
        raise ControlError(f"unknown command {action!r}; use one of: {', '.join(ACTIONS)}")
    arg = arg.strip()
    if action in ("hint", "pin", "veto") and not arg:
        what = "the hint's text" if action == "hint" else "a candidate id"
        raise ControlError(f"`{action}` needs {what}")
    if action == "budget":
        parse_budget(arg)
    return Command(action=cast(Action, action), arg=arg, source=source)


def parse_budget(arg: str) -> dict[str, float | None]:
    """`candidates=20 hours=1.5 usd=none` → {"max_candidates": 20, "hours": 1.5, "max_usd": None}."""
    out: dict[str, float | None] = {}
    for part in arg.split():
        key, sep, value = part.partition("=")
        if not sep or key not in BUDGET_KEYS:
            keys = ", ".join(BUDGET_KEYS)
            raise ControlError(f"budget takes KEY=VALUE with KEY one of {keys}; got {part!r}")
        if value.lower() in ("none", "off", "unlimited"):
            out[BUDGET_KEYS[key]] = None
            continue
        try:
            number = float(value)
        except ValueError:
            raise ControlError(f"budget {key} must be a number or `none`; got {value!r}") from None
        if number < 0:
            raise ControlError(f"budget {key} must not be negative")
        if not number > 0:  # zero, NaN
            raise ControlError(
                f"budget {key} must be a positive number, or `none` for no limit; got {value!r}"
            )
        out[BUDGET_KEYS[key]] = number
    if not out:
        raise ControlError("budget needs at least one KEY=VALUE, e.g. `budget candidates=20`")
    return out


def check_candidate(runs_root: Path, run_id: str, command: Command, memory_dir: Path | None = None) -> None:
    """A pin or veto must name a candidate that exists (ControlError otherwise): one of this run's (designed
    or being designed), one of another run in the same data dir, or one in memory. A typo such as `/veto 99`
    would otherwise be applied to a candidate that never comes, and nothing would say so."""
    if command.action not in ("pin", "veto"):
        return
    cid = command.arg
    if not _ID.fullmatch(cid):
        raise ControlError(f"`{command.action}` takes a candidate id such as {run_id}-0003; got {cid!r}")
    owner = cid.rsplit("-", 1)[0]
    if any((runs_root / run / "candidates" / cid).is_dir() for run in (run_id, owner)):
        return
    if memory_dir is not None and (memory_dir / "chroma.sqlite3").is_file():
        from memory.store import MemoryStore

        if MemoryStore(memory_dir).get(cid) is not None:
            return
    ours = sorted(p.name for p in (runs_root / run_id / "candidates").glob("*") if p.is_dir())
    known = f"its candidates are {ours[0]} … {ours[-1]}" if ours else "it has no candidate yet"
    raise ControlError(f"no candidate {cid!r} in run {run_id}, another run or memory ({known})")


_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,120}")
"""A candidate id (`<run id>-NNNN`): a slug, so that it never names a path outside the runs."""


def send(path: Path, command: Command) -> Command:
    """Append a command to a run's control file (one line, fsync'd: it is not lost if we crash)."""
    with path.open("a", encoding="utf-8") as handle:
        handle.write(command.model_dump_json() + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    return command


def read_commands(path: Path) -> list[Command]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(Command.model_validate_json(line))
        except ValueError:
            continue  # a torn line from a killed writer
    return out


class ControlState:
    """What the person has asked for so far; rebuilt from the `human` events, then kept current."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.applied: set[str] = set()
        self.paused = False
        self.stop_requested = False
        self.hints: list[str] = []
        self.pinned: list[str] = []
        self.vetoed: list[str] = []
        self.decisions: list[str] = []
        """approve / deny answers not yet consumed by a GPU-job approval."""
        self.budget: dict[str, float | None] = {}

    def restore(self, state: RunState) -> None:
        """Re-apply the commands that earlier sessions applied, in order, and drop the decisions they used
        (both read from the event log by agent.run_state)."""
        for command in state.commands:
            self._apply(command)
            self.applied.add(command.id)
        for decision in state.consumed:
            if decision in self.decisions:
                self.decisions.remove(decision)
        self.paused = False if self.stop_requested else self.paused

    def pending(self) -> list[Command]:
        return [c for c in read_commands(self.path) if c.id not in self.applied]

    def apply(self, command: Command) -> str:
        """Apply one command; returns what it did, in words (the event's message)."""
        self.applied.add(command.id)
        return self._apply(command)

    def _apply(self, c: Command) -> str:
        match c.action:
            case "pause":
                self.paused = True
                return "paused at the next step boundary"
            case "resume":
                self.paused = False
                return "resumed"
            case "stop":
                self.stop_requested = True
                return "stopping at the next step boundary"
            case "hint":
                self.hints.append(c.arg)
                return f"hint for the next design: {c.arg}"
            case "pin":
                if c.arg not in self.pinned:
                    self.pinned.append(c.arg)
                return f"pinned {c.arg}: it stays in every design prompt"
            case "veto":
                if c.arg not in self.vetoed:
                    self.vetoed.append(c.arg)
                return f"vetoed {c.arg}: never evaluated, used as a parent or shown again"
            case "approve" | "deny":
                self.decisions.append(c.action)
                return f"{c.action} the next GPU job launch"
            case "budget":
                change = parse_budget(c.arg)
                self.budget.update(change)
                return "budget changed: " + ", ".join(f"{k}={v}" for k, v in change.items())
        return ""
