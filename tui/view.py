"""What the panes show, folded from a run's events: plain data, no Textual.

`Tracker.feed(event)` folds the event into the run's state (agent.run_state: the step, the jobs, the
commands, the tokens) and keeps what only the panes need (the reflection round, the repair attempt, the
hints each design answered, the chart's points); it returns the conversation lines the event deserves.
`Tracker.view(status, alive)` is a frozen snapshot for the progress pane; `points` feeds the chart.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from datetime import UTC, datetime

from agent.events import (
    BudgetPayload,
    CandidatePayload,
    CheckPayload,
    ErrorPayload,
    EvaluationPayload,
    Event,
    HumanPayload,
    JobPayload,
    LlmPayload,
    NodePayload,
    ProgressPayload,
    RunPayload,
    ToolPayload,
)
from agent.run_state import RunState
from agent.runs import RunMeta, RunStatus
from targets.base import Interval

STEPS = ("plan", "design", "reflect", "check", "repair", "evaluate", "record")


@dataclass(frozen=True)
class Line:
    """One line of the conversation pane; `style` is a Rich style."""

    text: str
    style: str = ""
    who: str = "run"
    """run | you | agent | tool | system: who said it (the prefix's colour)."""


@dataclass(frozen=True)
class JobView:
    id: str
    candidate: str
    state: str
    step: int | None = None
    total: int | None = None


@dataclass(frozen=True)
class Point:
    index: int
    value: float
    low: float
    high: float
    incumbent: bool = False
    """The evidence rule made it the run's best (first or best) when it was recorded."""


@dataclass(frozen=True)
class ProgressView:
    run_id: str
    state: str = "created"
    reason: str = ""
    alive: bool = False
    model: str = ""
    target: str = ""
    candidate: str | None = None
    name: str = ""
    node: str | None = None
    doing: str = ""
    """What the step running now is doing (its latest progress event)."""
    reflection: int = 0
    reflections: int = 2
    repair: int = 0
    max_repairs: int = 3
    checks: str = ""
    done: int = 0
    max_candidates: float | None = None
    tokens: int = 0
    max_tokens: float | None = None
    usd: float = 0.0
    max_usd: float | None = None
    elapsed_s: float = 0.0
    hours: float | None = None
    jobs: tuple[JobView, ...] = ()
    waiting: str = ""
    pending_hints: tuple[str, ...] = ()
    reached: tuple[tuple[str, str], ...] = ()
    """(hint, candidate id) for each hint, by the first design that used it."""
    last_hint: tuple[str, str, bool] | None = None
    """The latest hint a design answered: (hint, candidate id, acted on it)."""
    pinned: tuple[str, ...] = ()
    vetoed: tuple[str, ...] = ()


def short(cid: str | None) -> str:
    """`run-0003` → `#3`."""
    if not cid:
        return ""
    tail = cid.rsplit("-", 1)[-1]
    return f"#{int(tail)}" if tail.isdigit() else cid


def fmt_duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


@dataclass
class Tracker:
    run_id: str
    meta: RunMeta | None = None
    state: RunState = field(default_factory=RunState)
    """The run's event log folded so far."""
    candidate: str | None = None
    name: str = ""
    reflection: int = 0
    repair: int = 0
    checks: str = ""
    waiting: str = ""
    delivered: dict[str, str] = field(default_factory=dict)
    """hint → the candidate whose design used it first."""
    not_acted: dict[str, str] = field(default_factory=dict)
    """hint → the first design that could not act on it (the offline proposer reads only some hints)."""
    last_hint: tuple[str, str, bool] | None = None
    fresh_points: list[Point] = field(default_factory=list)
    """Per recorded candidate, its difference to the baseline on fresh seeds (agent.fresh)."""
    fitness_points: list[Point] = field(default_factory=list)
    """Per recorded candidate, its evaluation's fitness: charted only for a target with no baseline."""
    screen_fitness: dict[str, Interval] = field(default_factory=dict)
    """candidate → its evaluation's fitness, printed before it is recorded (the in-flight row shows it)."""

    # ------------------------------------------------------------------ read from the run's state
    @property
    def node(self) -> str | None:
        return self.state.node

    @property
    def doing(self) -> str:
        return self.state.doing

    @property
    def known(self) -> list[str]:
        """This run's candidate ids in the order they appeared (for completion and `/pin 3`)."""
        return [c for c in self.state.known if c.startswith(self.run_id)]

    @property
    def budget(self) -> dict[str, float | None]:
        return dict((self.meta.config.get("budget") if self.meta else None) or {}) | self.state.budget_changes

    @property
    def jobs(self) -> dict[str, JobView]:
        return {
            k: JobView(k, j.candidate or "", j.state, j.step, j.total) for k, j in self.state.jobs.items()
        }

    def pausing(self, now: datetime | None = None) -> str:
        """What a pause sent now waits for, in words: the step running and about how long it has left
        (the median of that step's earlier durations in this run, less the time it has run so far)."""
        node, since = self.state.node, self.state.node_since
        if node is None:
            return "pausing before the next step"
        what = f"pausing after {node}" + (f" of {short(self.candidate)}" if self.candidate else "")
        past = self.state.node_seconds.get(node)
        if not past or since is None:
            return f"{what} (no estimate: its first {node} in this run)"
        ran = ((now or datetime.now(UTC)) - since).total_seconds()
        left = max(0.0, statistics.median(past) - ran)
        return f"{what} (~{left:.0f} s)" if left >= 1 else f"{what} (any moment now)"

    @property
    def points(self) -> list[Point]:
        """What the chart draws: the fresh-seed differences once there are any, else the fitness."""
        return self.fresh_points or self.fitness_points

    @property
    def chart_title(self) -> str:
        baseline = self.state.baseline or "baseline"
        what = f"vs {baseline}, fresh seeds" if self.fresh_points else "fitness"
        return f"{what}: ● CI ─ incumbent"  # fits the pane's border at 100 columns

    def set_meta(self, meta: RunMeta) -> None:
        self.meta = meta

    # ------------------------------------------------------------------ the lines of one event
    def feed(self, e: Event) -> list[Line]:
        """Update from one event; returns what the conversation pane shows for it."""
        data = e.data  # raises on a payload that does not fit its kind, before anything is folded
        job = self.state.jobs.get(data.job) if isinstance(data, JobPayload) and data.job else None
        state_before = job.state if job else None
        self.state.apply(e)
        cid, short_id = e.candidate, short(e.candidate)
        match data:
            case RunPayload(phase="session"):
                how = "resumed" if data.resumed else "started"
                return [Line(f"── session {how} (model {data.model}, pid {data.pid})", "bold")]
            case RunPayload(phase="end"):
                self.waiting = ""
                return [Line(f"── run {data.state}: {data.reason}", "bold")]
            case NodePayload():
                return self._node(cid, data)
            case LlmPayload():
                tokens = f"{data.prompt_tokens}+{data.completion_tokens} tokens"
                err = f", error: {data.error}" if data.error else ""
                return [Line(f"model {data.key}: {tokens} in {data.latency_s:.1f}s{err}", "dim", "tool")]
            case ToolPayload():
                args = ", ".join(f"{k}={v}" for k, v in data.args.items())
                return [Line(f"tool {data.tool}({args}) → {data.result}", "dim", "tool")]
            case CheckPayload(passed=True):
                self.checks = "✓ pass"
                return [Line(f"{short_id} ✓ checks pass", "green")]
            case CheckPayload():
                self.checks = "✗ fail"
                return [Line(f"{short_id} ✗ checks fail: " + "; ".join(data.failures), "red")]
            case EvaluationPayload(fitness=None):
                return [Line(f"{short_id} evaluation failed: {data.reason}", "red")]
            case EvaluationPayload(fitness=Interval() as fit):
                if cid:
                    self.screen_fitness[cid] = fit
                # on the screen's seeds (DPO's chose β): the score, on fresh seeds, comes with the record
                return [Line(f"{short_id} screen fitness {fit.text()} in {data.seconds:.0f}s", "bold")]
            case CandidatePayload():
                return self._recorded(e, data)
            case JobPayload():
                if data.job and state_before == data.state and not data.message:
                    return []  # only log lines and metrics: the progress pane's bar shows them
                text = data.message or data.reason or ""
                head = f"{short_id} job {data.job or ''} {data.state}".replace("  ", " ")
                return [Line(f"{head}: {text}" if text else head, "magenta")]
            case HumanPayload():
                return self._human(data)
            case BudgetPayload():
                return [Line(f"budget: {data.reason}", "bold yellow", "system")]
            case ErrorPayload(endpoint=str() as endpoint) if endpoint:  # slow is not down: says which
                style = "bold yellow" if endpoint == "slow" else "bold red"
                return [Line(f"model endpoint {endpoint}: {data.message}", style, "system")]
            case ErrorPayload():
                return [Line(f"error: {data.message}", "bold red", "system")]
            case ProgressPayload():
                return []  # the progress pane shows it; the conversation keeps to what happened
        return []

    def _node(self, cid: str | None, p: NodePayload) -> list[Line]:
        node = p.node
        if p.phase == "enter":
            if node == "plan":
                self.reflection = self.repair = 0
                self.checks, self.name = "", ""
            return []
        if p.phase == "leave":
            if node == "plan" and cid:
                self.candidate = cid
                return [Line(f"── candidate {short(cid)} ──", "bold cyan")]
            return []
        if node == "design":
            self.name = p.name
            lines = [Line(f"{short(cid)} design {self.name}: {p.thought}", "", "agent")]
            for hint in [h for h in p.hints_used if h not in self.delivered]:
                self.delivered[hint] = cid or ""
                self.last_hint = (hint, cid or "", True)
                lines.append(Line(f"  ↳ your hint reached this design: {hint}", "bold green"))
            for hint in [h for h in p.hints_ignored if h not in self.not_acted | self.delivered]:
                self.not_acted[hint] = cid or ""
                self.last_hint = (hint, cid or "", False)
                lines.append(Line(f"  ✗ this design could not act on your hint: {hint}", "bold yellow"))
            return lines
        if node == "reflect":
            self.reflection = p.round or self.reflection
            total = self._loop("reflections", 2)
            if p.skipped:
                return [Line(f"{short(cid)} reflection {self.reflection}/{total} skipped: {p.why}", "dim")]
            return [Line(f"{short(cid)} reflection {self.reflection}/{total}: {p.reflection}", "", "agent")]
        if node == "repair":
            self.repair = p.attempt or self.repair
            total = self._loop("max_repairs", 3)
            fed = ", ".join(p.fed)
            return [
                Line(f"{short(cid)} repair {self.repair}/{total}, fed the failing checks: {fed}", "yellow")
            ]
        return []

    def _recorded(self, e: Event, p: CandidatePayload) -> list[Line]:
        fit, vs = p.fitness, p.vs_baseline
        top = p.verdict in ("first", "best")
        if e.candidate and (fit or vs):
            last = e.candidate.rsplit("-", 1)[-1]
            index = int(last) if last.isdigit() else len(self.known) + 1
            if fit:
                self.fitness_points.append(Point(index, fit.value, fit.ci_low, fit.ci_high, top))
            if vs:
                self.fresh_points.append(Point(index, vs.diff, vs.ci_low, vs.ci_high, top))
        why = f" ({p.error})" if p.error else ""
        style = "green" if p.status == "evaluated" else "red"
        score = ""
        if vs:
            interval = Interval(value=vs.diff, ci_low=vs.ci_low, ci_high=vs.ci_high).text()
            score = f", vs {p.baseline or 'baseline'} {interval} on {vs.n_seeds} fresh seeds"
        return [Line(f"{short(e.candidate)} recorded {p.name}: {p.status}{score}{why}", style)]

    def _human(self, p: HumanPayload) -> list[Line]:
        command = p.command
        if command:
            if command.action in ("approve", "deny"):
                self.waiting = ""
            line = f"runner ✓ /{command.action} (from {command.source}): {p.message}"
            return [Line(line, "bold green", "system")]
        if p.question:
            q = p.question
            self.waiting = f"GPU job for {short(q.get('candidate'))}" if isinstance(q, dict) else str(q)
            return [
                Line(f"the run waits for you: {self.waiting}? /approve or /deny", "bold yellow", "system")
            ]
        if p.consumed:
            self.waiting = ""
        return [Line(p.message, "yellow", "system")] if p.message else []

    def _loop(self, key: str, default: int) -> int:
        loop = (self.meta.config.get("loop") if self.meta else None) or {}
        return int(loop.get(key, default))

    def view(self, status: RunStatus, alive: bool, elapsed_s: float | None = None) -> ProgressView:
        b = self.budget
        hints = self.state.hints
        return ProgressView(
            run_id=self.run_id,
            state=status.state,
            reason=status.reason,
            alive=alive,
            model=self.meta.model if self.meta else "",
            target=self.meta.target if self.meta else "",
            candidate=self.candidate,
            name=self.name,
            node=self.node if alive or status.state == "created" else None,
            reflection=self.reflection,
            reflections=self._loop("reflections", 2),
            repair=self.repair,
            max_repairs=self._loop("max_repairs", 3),
            checks=self.checks,
            done=status.candidates,
            max_candidates=b.get("max_candidates"),
            tokens=max(self.state.tokens, status.prompt_tokens + status.completion_tokens),
            max_tokens=b.get("max_tokens"),
            usd=max(self.state.usd, status.usd),
            max_usd=b.get("max_usd"),
            elapsed_s=status.elapsed_s if elapsed_s is None else elapsed_s,
            hours=b.get("hours"),
            jobs=tuple(self.jobs.values()),
            waiting=self.waiting,
            pending_hints=tuple(h for h in hints if h not in self.delivered and h not in self.not_acted),
            reached=tuple(self.delivered.items()),
            last_hint=self.last_hint,
            doing=self.doing,
            pinned=tuple(self.state.pinned),
            vetoed=tuple(self.state.vetoed),
        )
