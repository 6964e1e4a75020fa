"""What the panes show, folded from a run's events: plain data, no Textual.

`Tracker.feed(event)` keeps where the loop is (candidate, step, reflection round, repair attempt), the
budget, the jobs and the hints not yet used; it returns the conversation lines that the event deserves.
`Tracker.view(status, alive)` is a frozen snapshot for the progress pane; `points` feeds the chart.
"""

from __future__ import annotations

import re
import statistics
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from agent.control import parse_budget
from agent.events import Event
from agent.runs import RunMeta, RunStatus

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


def fmt_fitness(fit: dict[str, Any] | None) -> str:
    if not fit or fit.get("value") is None:
        return ""
    return f"{fit['value']:+.3f} [{fit['ci_low']:+.3f}, {fit['ci_high']:+.3f}]"


def fmt_duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


_STEP_RE = re.compile(r"step (\d+)/(\d+)")


@dataclass
class Tracker:
    run_id: str
    meta: RunMeta | None = None
    candidate: str | None = None
    name: str = ""
    node: str | None = None
    doing: str = ""
    """What the step running now is doing (its latest progress event)."""
    reflection: int = 0
    repair: int = 0
    checks: str = ""
    tokens: int = 0
    usd: float = 0.0
    budget: dict[str, float | None] = field(default_factory=dict)
    jobs: dict[str, JobView] = field(default_factory=dict)
    waiting: str = ""
    hints: list[str] = field(default_factory=list)
    pinned: list[str] = field(default_factory=list)
    vetoed: list[str] = field(default_factory=list)
    delivered: dict[str, str] = field(default_factory=dict)
    """hint → the candidate whose design used it first."""
    not_acted: dict[str, str] = field(default_factory=dict)
    """hint → the first design that could not act on it (the offline proposer reads only some hints)."""
    last_hint: tuple[str, str, bool] | None = None
    fresh_points: list[Point] = field(default_factory=list)
    """Per recorded candidate, its difference to the baseline on fresh seeds (agent.fresh)."""
    fitness_points: list[Point] = field(default_factory=list)
    """Per recorded candidate, its evaluation's fitness: charted only for a target with no baseline."""
    baseline: str = ""
    known: list[str] = field(default_factory=list)
    """Candidate ids in the order they appeared (for completion and `/pin 3`)."""
    node_since: datetime | None = None
    """When the step running now began (its `enter` event)."""
    node_seconds: dict[str, list[float]] = field(default_factory=dict)
    """node → how long each finished run of it took: what a pause waits for is estimated from them."""
    screen_fitness: dict[str, dict[str, float]] = field(default_factory=dict)
    """candidate → its evaluation's fitness, printed before it is recorded (the in-flight row shows it)."""

    def pausing(self, now: datetime | None = None) -> str:
        """What a pause sent now waits for, in words: the step running and about how long it has left
        (the median of that step's earlier durations in this run, less the time it has run so far)."""
        if self.node is None:
            return "pausing before the next step"
        what = f"pausing after {self.node}" + (f" of {short(self.candidate)}" if self.candidate else "")
        past = self.node_seconds.get(self.node)
        if not past or self.node_since is None:
            return f"{what} (no estimate: its first {self.node} in this run)"
        ran = ((now or datetime.now(UTC)) - self.node_since).total_seconds()
        left = max(0.0, statistics.median(past) - ran)
        return f"{what} (~{left:.0f} s)" if left >= 1 else f"{what} (any moment now)"

    @property
    def points(self) -> list[Point]:
        """What the chart draws: the fresh-seed differences once there are any, else the fitness."""
        return self.fresh_points or self.fitness_points

    @property
    def chart_title(self) -> str:
        what = f"vs {self.baseline or 'baseline'}, fresh seeds" if self.fresh_points else "fitness"
        return f"{what}: ● CI ─ incumbent"  # fits the pane's border at 100 columns

    def set_meta(self, meta: RunMeta) -> None:
        self.meta = meta
        self.budget = dict(meta.config.get("budget") or {}) | self.budget

    def feed(self, e: Event) -> list[Line]:
        """Update from one event; returns what the conversation pane shows for it."""
        if e.candidate and e.candidate not in self.known and e.candidate.startswith(self.run_id):
            self.known.append(e.candidate)
        handler = getattr(self, f"_on_{e.kind}", None)
        return handler(e, e.payload) if handler else []

    def _on_progress(self, e: Event, p: dict[str, Any]) -> list[Line]:
        self.doing = str(p.get("what") or "")
        return []  # the progress pane shows it; the conversation keeps to what happened

    def _on_run(self, e: Event, p: dict[str, Any]) -> list[Line]:
        if p.get("phase") == "session":
            how = "resumed" if p.get("resumed") else "started"
            return [Line(f"── session {how} (model {p.get('model')}, pid {p.get('pid')})", "bold")]
        if p.get("phase") == "end":
            self.node, self.waiting = None, ""
            return [Line(f"── run {p.get('state')}: {p.get('reason')}", "bold")]
        return []

    def _on_node(self, e: Event, p: dict[str, Any]) -> list[Line]:
        node, cid = p.get("node"), e.candidate
        if p.get("phase") in ("enter", "leave"):
            self.doing = ""
        if p.get("phase") == "enter":
            self.node, self.node_since = node, e.time
            if node == "plan":
                self.reflection = self.repair = 0
                self.checks, self.name = "", ""
            return []
        if p.get("phase") == "leave":
            if node and isinstance(p.get("seconds"), int | float):
                self.node_seconds.setdefault(node, []).append(float(p["seconds"]))
            if node == "plan" and cid:
                self.candidate = cid
                return [Line(f"── candidate {short(cid)} ──", "bold cyan")]
            return []
        if node == "design":
            self.name = p.get("name", "")
            lines = [Line(f"{short(cid)} design {self.name}: {p.get('thought', '')}", "", "agent")]
            used = [h for h in p.get("hints_used") or [] if h not in self.delivered]
            for hint in used:
                self.delivered[hint] = cid or ""
                self.last_hint = (hint, cid or "", True)
                lines.append(Line(f"  ↳ your hint reached this design: {hint}", "bold green"))
            ignored = [h for h in p.get("hints_ignored") or [] if h not in self.not_acted | self.delivered]
            for hint in ignored:
                self.not_acted[hint] = cid or ""
                self.last_hint = (hint, cid or "", False)
                lines.append(Line(f"  ✗ this design could not act on your hint: {hint}", "bold yellow"))
            return lines
        if node == "reflect":
            self.reflection = p.get("round", self.reflection)
            total = self._loop("reflections", 2)
            if p.get("skipped"):
                return [
                    Line(f"{short(cid)} reflection {self.reflection}/{total} skipped: {p.get('why')}", "dim")
                ]
            return [
                Line(f"{short(cid)} reflection {self.reflection}/{total}: {p.get('reflection')}", "", "agent")
            ]
        if node == "repair":
            self.repair = p.get("attempt", self.repair)
            fed = ", ".join(p.get("fed") or [])
            total = self._loop("max_repairs", 3)
            return [
                Line(f"{short(cid)} repair {self.repair}/{total}, fed the failing checks: {fed}", "yellow")
            ]
        return []

    def _on_llm(self, e: Event, p: dict[str, Any]) -> list[Line]:
        if not p.get("cached"):
            self.tokens += int(p.get("prompt_tokens") or 0) + int(p.get("completion_tokens") or 0)
            self.usd += float(p.get("usd") or 0.0)
        tokens = f"{p.get('prompt_tokens', 0)}+{p.get('completion_tokens', 0)} tokens"
        err = f", error: {p['error']}" if p.get("error") else ""
        return [Line(f"model {p.get('key')}: {tokens} in {p.get('latency_s', 0):.1f}s{err}", "dim", "tool")]

    def _on_tool(self, e: Event, p: dict[str, Any]) -> list[Line]:
        args = ", ".join(f"{k}={v}" for k, v in (p.get("args") or {}).items())
        return [Line(f"tool {p.get('tool')}({args}) → {p.get('result', '')}", "dim", "tool")]

    def _on_check(self, e: Event, p: dict[str, Any]) -> list[Line]:
        if p.get("passed"):
            self.checks = "✓ pass"
            return [Line(f"{short(e.candidate)} ✓ checks pass", "green")]
        self.checks = "✗ fail"
        return [Line(f"{short(e.candidate)} ✗ checks fail: " + "; ".join(p.get("failures") or []), "red")]

    def _on_evaluation(self, e: Event, p: dict[str, Any]) -> list[Line]:
        fit = fmt_fitness(p.get("fitness"))
        if not fit:
            return [Line(f"{short(e.candidate)} evaluation failed: {p.get('reason')}", "red")]
        if e.candidate:
            self.screen_fitness[e.candidate] = p["fitness"]
        # on the screen's seeds (DPO's chose β): the score, on fresh seeds, comes with the record
        line = f"{short(e.candidate)} screen fitness {fit} in {p.get('seconds', 0):.0f}s"
        return [Line(line, "bold")]

    def _on_candidate(self, e: Event, p: dict[str, Any]) -> list[Line]:
        fit, vs = p.get("fitness"), p.get("vs_baseline")
        top = p.get("verdict") in ("first", "best")
        self.baseline = p.get("baseline") or self.baseline
        if e.candidate and (fit or vs):
            last = e.candidate.rsplit("-", 1)[-1]
            index = int(last) if last.isdigit() else len(self.known) + 1
            if fit and fit.get("value") is not None:
                self.fitness_points.append(Point(index, fit["value"], fit["ci_low"], fit["ci_high"], top))
            if vs and vs.get("diff") is not None:
                self.fresh_points.append(Point(index, vs["diff"], vs["ci_low"], vs["ci_high"], top))
        why = f" ({p['error']})" if p.get("error") else ""
        style = "green" if p.get("status") == "evaluated" else "red"
        score = ""
        if vs and vs.get("diff") is not None:
            against = p.get("baseline") or "baseline"
            interval = fmt_fitness({"value": vs["diff"], **vs})
            score = f", vs {against} {interval} on {vs.get('n_seeds')} fresh seeds"
        line = f"{short(e.candidate)} recorded {p.get('name')}: {p.get('status')}{score}{why}"
        return [Line(line, style)]

    def _on_job(self, e: Event, p: dict[str, Any]) -> list[Line]:
        job_id = p.get("job")
        changed = True
        if job_id:
            old = self.jobs.get(job_id)
            changed = old is None or old.state != p.get("state")
            step, total = (old.step, old.total) if old else (None, None)
            for line in p.get("log") or []:
                if m := _STEP_RE.search(line):
                    step, total = int(m[1]), int(m[2])
            self.jobs[job_id] = JobView(job_id, e.candidate or "", p.get("state", ""), step, total)
        if not changed and not p.get("message"):
            return []  # only log lines and metrics: the progress pane's bar shows them
        text = p.get("message") or p.get("reason") or ""
        head = f"{short(e.candidate)} job {job_id or ''} {p.get('state')}".replace("  ", " ")
        return [Line(f"{head}: {text}" if text else head, "magenta")]

    def _on_human(self, e: Event, p: dict[str, Any]) -> list[Line]:
        command = p.get("command")
        if command:
            if command.get("action") == "hint" and command.get("arg") not in self.hints:
                self.hints.append(command["arg"])
            for action, ids in (("pin", self.pinned), ("veto", self.vetoed)):
                if command.get("action") == action and command.get("arg") not in ids:
                    ids.append(command["arg"])
            if command.get("action") == "budget":
                self.budget.update(parse_budget(command.get("arg", "")))
            if command.get("action") in ("approve", "deny"):
                self.waiting = ""
            who = command.get("source", "cli")
            return [
                Line(
                    f"runner ✓ /{command.get('action')} (from {who}): {p.get('message')}",
                    "bold green",
                    "system",
                )
            ]
        if p.get("question"):
            q = p["question"]
            self.waiting = f"GPU job for {short(q.get('candidate'))}" if isinstance(q, dict) else str(q)
            return [
                Line(f"the run waits for you: {self.waiting}? /approve or /deny", "bold yellow", "system")
            ]
        if p.get("consumed"):
            self.waiting = ""
        return [Line(str(p.get("message", "")), "yellow", "system")] if p.get("message") else []

    def _on_budget(self, e: Event, p: dict[str, Any]) -> list[Line]:
        return [Line(f"budget: {p.get('reason')}", "bold yellow", "system")]

    def _on_error(self, e: Event, p: dict[str, Any]) -> list[Line]:
        if endpoint := p.get("endpoint"):  # slow is not down: yellow, and says which
            style = "bold yellow" if endpoint == "slow" else "bold red"
            return [Line(f"model endpoint {endpoint}: {p.get('message')}", style, "system")]
        return [Line(f"error: {p.get('message')}", "bold red", "system")]

    def _loop(self, key: str, default: int) -> int:
        loop = (self.meta.config.get("loop") if self.meta else None) or {}
        return int(loop.get(key, default))

    def view(self, status: RunStatus, alive: bool, elapsed_s: float | None = None) -> ProgressView:
        b = self.budget
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
            tokens=max(self.tokens, status.prompt_tokens + status.completion_tokens),
            max_tokens=b.get("max_tokens"),
            usd=max(self.usd, status.usd),
            max_usd=b.get("max_usd"),
            elapsed_s=status.elapsed_s if elapsed_s is None else elapsed_s,
            hours=b.get("hours"),
            jobs=tuple(self.jobs.values()),
            waiting=self.waiting,
            pending_hints=tuple(h for h in self.hints if h not in self.delivered and h not in self.not_acted),
            reached=tuple(self.delivered.items()),
            last_hint=self.last_hint,
            doing=self.doing,
            pinned=tuple(self.pinned),
            vetoed=tuple(self.vetoed),
        )
