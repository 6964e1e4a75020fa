"""What the TUI's App owns: a source of run updates (tailing the event log), the control channel, the process
of a run it started, and the chat agent with the memory. All of it is plain Python that the worker threads
call; none of it touches Textual, so each piece is tested alone.
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from agent.control import Command, send
from agent.events import Event, EventTail, HumanPayload
from agent.fresh import fresh_text, read_fresh
from agent.leaderboard import Row, candidate_rows, ranked
from agent.runs import RunDir, RunStatus, list_runs
from tui.view import Line, Point, ProgressView, Tracker, fmt_duration


@dataclass(frozen=True)
class RunUpdate:
    """A frozen snapshot for the widgets: what changed since the last poll."""

    progress: ProgressView
    lines: tuple[Line, ...] = ()
    rows: tuple[Row, ...] | None = None
    """The leaderboard, ranked; None when it did not change."""
    points: tuple[Point, ...] = ()
    chart_title: str = "fitness: ● CI ─ incumbent"
    known: tuple[str, ...] = ()
    acked: tuple[str, ...] = ()
    """Ids of commands that the runner applied in this batch of events."""


class RunSource:
    """One run, read from its directory; `poll` is called from the tail worker's thread only."""

    def __init__(self, run: RunDir, process: subprocess.Popen | None = None, log: Path | None = None) -> None:
        self.run = run
        self.process = process
        """The headless runner when this TUI started it (so that its exit is noticed and reaped)."""
        self.log = log
        self.tail = EventTail(run.events_path)
        self.tracker = Tracker(run.run_id)
        self._last: tuple | None = None
        self._rows: tuple[Row, ...] | None = None
        self._shown_state: str | None = None
        """The run state the in-flight row was last drawn for (a pause changes its status)."""

    @property
    def run_id(self) -> str:
        return self.run.run_id

    def alive(self, status: RunStatus | None = None) -> bool:
        """Is a runner driving this run now? The one this TUI started, or the one named in its status."""
        if self.process is not None and self.process.poll() is None:
            return True
        return self.run.runner_alive(status)

    def start_failure(self) -> str | None:
        """Why the run this TUI started never came up (its process ended before creating the run)."""
        if self.process is None or self.run.meta_path.exists() or self.process.poll() is None:
            return None
        text = self.log.read_text(encoding="utf-8", errors="replace").strip() if self.log else ""
        return text.splitlines()[-1] if text else f"`disco run` exited with code {self.process.returncode}"

    def poll(self) -> RunUpdate | None:
        if self.tracker.meta is None:
            if not self.run.meta_path.exists():
                return None
            self.tracker.set_meta(self.run.meta())
        events = self.tail.read()
        status = self.run.status()
        alive = self.alive(status)
        lines = [line for e in events for line in self._feed(e)]
        acked = tuple(command.id for e in events if (command := _applied(e)) is not None)
        elapsed = status.elapsed_s
        if alive and status.state == "running":
            elapsed += max(0.0, (datetime.now(UTC) - status.updated_at).total_seconds())
        key = (status.model_dump_json(exclude={"updated_at", "elapsed_s"}), alive, int(elapsed))
        if not events and key == self._last:
            return None
        self._last = key
        rows = None
        if self._rows is None or any(e.kind in ("candidate", "evaluation", "evidence") for e in events):
            # re-read only when one was recorded or raced (a race trains the incumbent on more seeds too)
            self._rows = tuple(ranked(candidate_rows(self.run)))
            rows = self._rows + self._in_flight(status.state == "paused")
        elif any(e.kind in ("node", "human") for e in events) or status.state != self._shown_state:
            rows = self._rows + self._in_flight(status.state == "paused")  # the step, a mark, a pause
        self._shown_state = status.state
        return RunUpdate(
            progress=self.tracker.view(status, alive, elapsed),
            lines=tuple(lines),
            rows=rows,
            points=tuple(self.tracker.points),
            chart_title=self.tracker.chart_title,
            known=tuple(self.tracker.known),
            acked=acked,
        )

    def _feed(self, event: Event) -> list[Line]:
        """The tracker's lines for one event; an event whose payload is not what the runner writes (a
        hand-edited log, a newer runner) is shown as such instead of stopping the tail."""
        try:
            return self.tracker.feed(event)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            why = f"{type(exc).__name__}: {exc}"
            return [Line(f"event {event.seq} ({event.kind}) could not be shown: {why}", "dim", "system")]

    def _in_flight(self, paused: bool = False) -> tuple[Row, ...]:
        """The candidate being designed, checked or evaluated, below the recorded ones: its step (or
        `paused`, when the run waits at a step boundary) and, once evaluated, its screen fitness (`~`)."""
        t = self.tracker
        cid = t.candidate
        if not cid or t.node in (None, "plan") or any(r.id == cid for r in self._rows or ()):
            return ()
        index = int(cid[-4:]) if cid[-4:].isdigit() else 0
        fit = t.screen_fitness.get(cid)
        return (
            Row(
                id=cid,
                index=index,
                name=t.name or "…",
                status="paused" if paused else f"{t.node}…",
                fitness=fit.value if fit else None,
                ci_low=fit.ci_low if fit else None,
                ci_high=fit.ci_high if fit else None,
            ),
        )

    def refusal(self, command: Command) -> str | None:
        """Why the command cannot be sent (a pin or veto of a candidate that does not exist), or None."""
        from agent.control import ControlError, check_candidate

        runs_root = self.run.root.parent
        try:
            check_candidate(runs_root, self.run_id, command, runs_root.parent / "memory")
        except ControlError as exc:
            return str(exc)
        return None

    def send(self, command: Command) -> str:
        """Write a command to the run's control channel; says when the runner will apply it."""
        send(self.run.control_path, command)
        if self.alive():
            then = f": {self.tracker.pausing()}" if command.action == "pause" else ""
            return f"sent: the runner applies it at its next step boundary{then}"
        return "sent: no runner is active, so it is applied when the run is resumed (`disco resume`)"


def _applied(event: Event) -> Command | None:
    """The command a `human` event says the runner applied (None for other events, or one unreadable)."""
    if event.kind != "human":
        return None
    try:
        data = event.data
    except ValueError:
        return None
    return data.command if isinstance(data, HumanPayload) else None


def start_run(home: Path, run_id: str, args: list[str]) -> tuple[subprocess.Popen, Path]:
    """Start `disco run` headless in its own session (it outlives the TUI); returns it and its log file."""
    logs = home / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / f"run-{run_id}.log"
    cmd = [
        sys.executable,
        "-m",
        "agent.cli",
        "--home",
        str(home),
        "run",
        *args,
        "--run-id",
        run_id,
        "--quiet",
    ]
    with log.open("ab") as out:
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    return proc, log


def wait_started(source: RunSource, timeout_s: float = 120.0) -> str | None:
    """Block until the started run exists; returns why it failed to start, or None."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if source.run.meta_path.exists():
            return None
        if (why := source.start_failure()) is not None:
            return why
        time.sleep(0.1)
    return f"the run did not start within {timeout_s:.0f} s (its log: {source.log})"


@dataclass(frozen=True)
class QuitResult:
    run_id: str | None
    alive: bool
    stopped: bool = False
    state: str = ""
    """The run's state when the TUI left it (for the last line printed)."""

    def message(self) -> str:
        run = self.run_id
        if run is None:
            return ""
        if self.stopped:
            return f"run {run} stops at its next step boundary; `disco resume {run}` goes on"
        if self.alive:
            return f"run {run} goes on headless: `disco tui {run}` to come back"
        if self.state in ("finished", "stopped", "failed"):
            return f"run {run} is {self.state}; `disco tui {run}` shows it again"
        return f"run {run} has no runner now; `disco resume {run}` continues it"


def run_rows(runs_root: Path) -> list[tuple[str, str, str, str]]:
    """(run id, state, candidates, best) of every run, newest first; a run without a runner whose status
    still says running was interrupted."""
    out = []
    for run in reversed(list_runs(runs_root)):
        s = run.status()
        state = run.display_state(s)
        fresh = read_fresh(run, s.best_id)  # the incumbent's score on seeds that chose nothing
        in_sample = f"~{s.best_fitness:+.3f}" if s.best_fitness is not None else ""
        best = fresh_text(fresh, compact=True) if fresh else in_sample
        out.append((run.run_id, state, f"{s.candidates} in {fmt_duration(s.elapsed_s)}", best))
    return out


def runs_context(runs_root: Path, watching: str | None = None, limit: int = 10) -> str:
    """What the chat agent is told about the runs with the person's first question (its tools read memory,
    where every run's candidates are, by run id)."""
    rows = run_rows(runs_root)[:limit]
    listed = "; ".join(
        f"{r} ({state}, {n.replace(' in ', ' candidates in ')}, best {best or 'none'})"
        for r, state, n, best in rows
    )
    text = f"[Runs in the data dir, newest first: {listed or 'none yet'}.]"
    if watching:
        text += f" [The person is watching run {watching}; its candidate ids start with {watching}-.]"
    return text
