"""The headless runner: drives the graph one candidate at a time and handles everything between steps.

Between two steps it applies the person's commands (pause, stop, hint, veto, budget …), checks the
budgets and signals, and writes `status.json`. A stop of any kind happens at a step boundary, with the
reason recorded; the LangGraph checkpoint (SQLite, written synchronously after every node) is where
`disco resume` picks up.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from agent.accounting import Reserve, ResourceMeter, disk_full
from agent.config import RunConfig, target_env
from agent.control import ControlState
from agent.events import Event, EventLog, read_events
from agent.models import ExchangeLog, ModelError
from agent.nodes import Loop, Services
from agent.runs import EndpointState, RunDir, RunMeta, RunStatus
from sandbox.registry import SandboxUnavailable
from tools.processes import process_start

ENDPOINT_STATES: dict[str, EndpointState] = {
    "timeout": "slow",  # it took the request and then sent no token for timeout_s
    "unreachable": "down",
    "server": "down",
    "rate_limited": "rate-limited",
}
"""The model failures that are a run state, not a candidate's: how the endpoint is, for a person."""
ENDPOINT_ERRORS = tuple(ENDPOINT_STATES)
Progress = Callable[[Event], None]


class StopRun(Exception):
    """Leave the step loop at a boundary; carries the run's final state and why."""

    def __init__(self, state: str, reason: str) -> None:
        super().__init__(reason)
        self.state = state
        self.reason = reason


class RunEvents(EventLog):
    """The run's event log, which tells of a job's submission once per job.

    `gpu_job` runs again when a kill falls between its event and its checkpoint; submitting again finds the
    same job (ids are hashes of the spec), and this keeps the log from announcing it a second time.
    """

    def __init__(self, path: Any, run_id: str, listener: Callable[[Event], None] | None = None) -> None:
        super().__init__(path, run_id, listener)
        self.jobs: dict[str, Event] = {}
        for event in read_events(path):
            if event.kind == "job" and event.payload.get("job"):
                self.jobs.setdefault(event.payload["job"], event)

    def append(self, kind: Any, candidate: str | None = None, **payload: Any) -> Event:
        job = payload.get("job") if kind == "job" else None
        if job and "cursor" not in payload and job in self.jobs:  # a submission, not a poll's news
            return self.jobs[job]
        event = super().append(kind, candidate, **payload)
        if job:
            self.jobs.setdefault(job, event)
        return event


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
"""What a person, `timeout`, systemd, Slurm or a closing terminal sends: each asks for a clean stop."""


@contextmanager
def _stop_signals(flag: threading.Event) -> Iterator[None]:
    """A first SIGINT / SIGTERM / SIGHUP asks for a stop at the next step boundary (the step finishes and
    is recorded); a second one stops inside the step (still resumable: the step is re-run)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in STOP_SIGNALS}

    def handler(signum: int, frame: Any) -> None:
        if flag.is_set():  # a second signal: the person means it
            signal.signal(signal.SIGINT, signal.default_int_handler)
            raise KeyboardInterrupt
        flag.set()
        name = signal.Signals(signum).name
        print(f"{name}: stopping after the current step (again to stop now; both resume)", file=sys.stderr)

    for s in previous:
        signal.signal(s, handler)
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def _proposer_seed(run: RunDir, config: RunConfig) -> int:
    if config.loop.seed is not None:
        return config.loop.seed
    import hashlib

    return int.from_bytes(hashlib.sha256(run.run_id.encode()).digest()[:4], "big")


def _designer(
    run: RunDir, config: RunConfig, target: Any, log: ExchangeLog, replay_of: RunDir | None, events: EventLog
) -> Any:
    from agent.designers import ModelDesigner, OfflineDesigner

    if replay_of is not None:
        recorded = replay_of.meta()
        replay_log = ExchangeLog(replay_of.exchanges_path)
        if recorded.model == "offline":
            return OfflineDesigner(
                target.offline_proposer(_proposer_seed(run, config)), log, replay=replay_log
            )
        from agent.models import ReplayModel

        return ModelDesigner(ReplayModel(replay_log), f"replay:{recorded.model}", own_log=log)
    settings = config.models.meta
    if settings.offline:
        return OfflineDesigner(target.offline_proposer(_proposer_seed(run, config)), log)
    from agent.models import StructuredModel
    from agent.models.probe import probed, with_probed

    settings.check_usable()
    # What the endpoint honours, probed once per data dir (runs/<id> is in it): the cap field and the mode
    # auto starts in. Without it, auto steps down as the server refuses formats.
    found, said = probed(run.root.parent.parent, settings)
    if said:
        args = {"endpoint": settings.endpoint, "model": settings.model}
        events.append("tool", None, tool="probe_model", args=args, result=said)
    settings, start_mode = with_probed(settings, found)

    def llm_event(ex: Any) -> None:
        """Every model call is an event: its step, tokens, cost, latency, and why it failed if it did."""
        u = ex.usage
        events.append(
            "llm",
            None,
            key=ex.key,
            model=ex.model,
            prompt_tokens=u.prompt_tokens,
            completion_tokens=u.completion_tokens,
            usd=u.usd,
            latency_s=round(u.latency_s, 3),
            attempts=u.attempts,
            cached=u.cached,
            error=ex.error,
            **({"estimated_tokens": u.estimated_tokens} if u.estimated_tokens else {}),
        )

    model = StructuredModel(settings, log=log, on_call=llm_event, start_mode=start_mode)
    return ModelDesigner(model, settings.model)


class Runner:
    def __init__(
        self,
        run: RunDir,
        config: RunConfig,
        *,
        replay_of: RunDir | None = None,
        progress: Progress | None = None,
        poll_s: float = 0.5,
        backoff_s: tuple[float, ...] | None = None,
    ) -> None:
        self.run = run
        self.config = config
        self.replay_of = replay_of
        self.progress = progress
        self.poll_s = poll_s
        self.backoff_s = tuple(config.endpoint.backoff_s if backoff_s is None else backoff_s)
        self.meter = ResourceMeter()
        """CPU and GPU seconds of the run (restored from the event log, then fed by every new event)."""
        self.reserve = Reserve(run.root)
        self._down_since: float | None = None
        """When the model endpoint started failing (monotonic), while it is down."""
        self._outage = ""
        """Why the run is paused for the endpoint, while it is."""
        self._wake = False
        """A `resume` command arrived: probe the endpoint now instead of at the next probe time."""
        self.events = RunEvents(run.events_path, run.run_id, listener=self._on_event)
        self.tools: Any = None
        self.jobs: dict[str, dict[str, Any]] = {}
        """GPU jobs of this run not yet finished: id → candidate, cursor (their news go into the events)."""
        self.job_poll_s = 10.0
        self._last_job_poll = 0.0
        self.control = ControlState(run.control_path)
        self.stop_flag = threading.Event()
        self.seed_count = 0
        """Candidates 1 … seed_count are the target's seed archive (they do not count towards the budget)."""
        self._session_start = time.monotonic()
        self._elapsed_before = run.status().elapsed_s
        self._status = run.status()

    # ------------------------------------------------------------------ status and events
    def _on_event(self, event: Event) -> None:
        self.meter.add(event)
        if event.kind == "job" and event.payload.get("job"):
            self._track_job(event)
        if self.progress:
            self.progress(event)

    def _track_job(self, event: Event) -> None:
        from tools.jobs.models import TERMINAL

        job_id, state = event.payload["job"], event.payload.get("state", "")
        if state in TERMINAL:
            self.jobs.pop(job_id, None)
        else:
            known = self.jobs.get(job_id, {})
            cursor = event.payload.get("cursor") or known.get("cursor") or {}
            self.jobs[job_id] = {"candidate": event.candidate, "cursor": cursor, "state": state}

    def _poll_jobs(self, force: bool = False) -> None:
        """Copy the news of this run's GPU jobs (state, log lines, metrics) into the event log."""
        if not self.jobs or self.tools is None:
            return
        if not force and time.monotonic() - self._last_job_poll < self.job_poll_s:
            return
        self._last_job_poll = time.monotonic()
        from tools.jobs import JobCursor, JobError

        for job_id, info in list(self.jobs.items()):
            try:
                update = self.tools._queue().poll(job_id, JobCursor.model_validate(info["cursor"]))
            except JobError as exc:
                self._event(
                    "job", info["candidate"], job=job_id, state="failed:crash", message=str(exc), cursor={}
                )
                continue
            used = self.meter.job_seconds(update.job)
            if update.log_lines or update.metrics or update.job.state != info["state"]:
                self._event(
                    "job",
                    info["candidate"],
                    job=job_id,
                    state=update.job.state,
                    reason=update.job.reason,
                    log=update.log_lines[-20:],
                    metrics=update.metrics[-20:],
                    cursor=update.cursor.model_dump(),
                    **used,
                )

    def _event(self, kind: str, candidate: str | None = None, **payload: Any) -> None:
        self.events.append(kind, candidate, **payload)  # type: ignore[arg-type]

    def elapsed_s(self) -> float:
        return self._elapsed_before + time.monotonic() - self._session_start

    def _write_status(self, state: str, reason: str = "", values: dict[str, Any] | None = None) -> None:
        s = self._status
        s.state, s.reason, s.elapsed_s = state, reason, round(self.elapsed_s(), 2)  # type: ignore[assignment]
        if values:
            s.candidates = values.get("done", s.candidates)
            s.best_id = values.get("best_id", s.best_id)
            s.best_fitness = values.get("best_fitness", s.best_fitness)
            values = self._with_failed_calls(values)
            s.prompt_tokens = values.get("prompt_tokens", s.prompt_tokens)
            s.completion_tokens = values.get("completion_tokens", s.completion_tokens)
            s.usd = values.get("usd", s.usd)
        s.cpu_s, s.gpu_s = round(self.meter.cpu_s, 2), round(self.meter.gpu_s, 2)
        done = state in ("stopped", "finished", "failed")
        s.pid = None if done else _pid()
        s.pid_start = None if done else process_start(_pid())
        self.run.write_status(s)

    # ------------------------------------------------------------------ between steps
    def _apply_control(self) -> None:
        for command in self.control.pending():
            self._wake = self._wake or command.action == "resume"
            message = self.control.apply(command)
            self._event("human", command=command.model_dump(mode="json"), message=message)

    def _with_failed_calls(self, values: dict[str, Any]) -> dict[str, Any]:
        """The loop's spend plus that of the model calls that failed, which the loop's state never saw."""
        prompt, completion = self.meter.failed_tokens
        return values | {
            "prompt_tokens": values.get("prompt_tokens", 0) + prompt,
            "completion_tokens": values.get("completion_tokens", 0) + completion,
            "usd": values.get("usd", 0.0) + self.meter.failed_usd,
        }

    def _budget(self, values: dict[str, Any], new_candidate: bool) -> str | None:
        """The budget that is used up, in words, or None."""
        values = self._with_failed_calls(values)
        b = self.config.budget.model_copy(update=self.control.budget)
        done = max(0, values.get("done", 0) - self.seed_count)  # the seed archive is not the budget's
        if new_candidate and b.max_candidates is not None and done >= b.max_candidates:
            return f"candidates budget reached: {done} of {int(b.max_candidates)}"
        tokens = values.get("prompt_tokens", 0) + values.get("completion_tokens", 0)
        if b.max_tokens is not None and tokens >= b.max_tokens:
            return f"token budget reached: {tokens} of {int(b.max_tokens)}"
        if b.max_usd is not None and values.get("usd", 0.0) >= b.max_usd:
            return f"cost budget reached: ${values.get('usd', 0.0):.4f} of ${b.max_usd:.2f}"
        if b.hours is not None and self.elapsed_s() >= b.hours * 3600:
            return f"time budget reached: {self.elapsed_s() / 3600:.2f} h of {b.hours} h"
        for what, used, limit in (
            ("CPU", self.meter.cpu_s, b.max_cpu_hours),
            ("GPU", self.meter.gpu_s, b.max_gpu_hours),
        ):
            if limit is not None and used >= limit * 3600:
                return f"{what} budget reached: {used / 3600:.3f} h of {limit} h"
        return None

    def _boundary(self, values: dict[str, Any], new_candidate: bool) -> None:
        """Everything that may happen between two steps; raises StopRun to leave."""
        self._apply_control()
        self._poll_jobs()
        if self.stop_flag.is_set():
            raise StopRun("stopped", "stopped by a signal (Ctrl-C, SIGTERM or SIGHUP) after its step")
        if self.control.stop_requested:
            raise StopRun("stopped", "stopped by the person")
        reason = self._budget(values, new_candidate)
        if reason:
            self._event("budget", reason=reason)
            raise StopRun(
                "finished" if new_candidate and reason.startswith("candidates") else "stopped", reason
            )
        if self.control.paused:
            self._write_status("paused", "paused by the person", values)
            while self.control.paused and not self.control.stop_requested and not self.stop_flag.is_set():
                time.sleep(self.poll_s)
                self._apply_control()
            self._boundary(values, new_candidate)
            return
        self._write_status("paused" if self._outage else "running", self._outage, values)

    def _baselines_into(self, memory: Any, target: Any) -> None:
        """The target's published methods into memory before the first candidate (once per data dir)."""
        from memory.baselines import seed_baselines

        baselines = getattr(target, "baselines", None)
        if baselines is None:
            return
        known = baselines()
        added = seed_baselines(memory, target.name, known)
        if added:
            names = ", ".join(b.name for b in known)
            self._event(
                "tool", tool="seed_baselines", args={"target": target.name}, result=f"{added} {names}"
            )

    def _with_seed_archive(self, designer: Any, target: Any, memory: Any) -> Any:
        """Measure the target's seed archive first when the config or the target asks for it.

        The list is chosen once, without the seeds that memory already holds evaluated for this target,
        and kept in the run dir (`seed_archive.json`): a resumed run sees the same seeds at the same index
        although memory now holds them.
        """
        from agent.designers import SeedArchiveDesigner
        from agent.runs import write_json_atomically
        from memory.records import code_hash
        from targets.base import SeedCandidate, evaluates_seeds_first

        path = self.run.root / "seed_archive.json"
        if path.exists():
            seeds = [SeedCandidate.model_validate(s) for s in json.loads(path.read_text(encoding="utf-8"))]
        else:
            mode = self.config.loop.seed_archive
            wanted = mode == "evaluate" or (mode == "auto" and evaluates_seeds_first(target))
            seeds = []
            if wanted and self.replay_of is None:
                measured = memory.evaluated_code_hashes(target.name)
                seeds = [s for s in target.seeds() if code_hash(s.code) not in measured]
            write_json_atomically(path, json.dumps([s.model_dump() for s in seeds]))
        self.seed_count = len(seeds)
        return SeedArchiveDesigner(seeds, designer) if seeds else designer

    # ------------------------------------------------------------------ the run
    def execute(self) -> RunStatus:
        with self.run.runner_lock(), _stop_signals(self.stop_flag):
            return self._execute()

    def _execute(self) -> RunStatus:
        from langgraph.checkpoint.sqlite import SqliteSaver

        from agent.graph import build_graph
        from agent.home import cache_dir
        from agent.session import jobs_dir, open_store
        from targets.registry import get_target
        from tools.toolbox import Toolbox

        history = list(read_events(self.run.events_path))
        self.control.restore(history)
        self.meter.restore(history)
        recorded = {e.candidate for e in history if e.kind == "candidate" and e.candidate}
        evaluated = {e.candidate for e in history if e.kind == "evaluation" and e.candidate}
        evidenced = {f"{e.candidate}#{e.payload.get('round')}" for e in history if e.kind == "evidence"}
        config = self.config
        target = get_target(config.target, config.targets.get(config.target), target_env(config, cache_dir()))
        log = ExchangeLog(self.run.exchanges_path)
        conn = sqlite3.connect(self.run.checkpoints, check_same_thread=False)
        final = ("failed", "the runner stopped unexpectedly")
        try:
            self.reserve.hold()
            designer = _designer(self.run, config, target, log, self.replay_of, self.events)
            memory = open_store()
            if config.loop.baselines_in_memory:
                self._baselines_into(memory, target)
            designer = self._with_seed_archive(designer, target, memory)
            tools = Toolbox(
                target, memory, job_defaults=config.gpu.spec, event=self.events.append, jobs_dir=jobs_dir()
            )
            if self.replay_of is not None:
                tools.ignore_runs = (self.replay_of.run_id,)
            self.tools = tools
            for event in history:
                if event.kind == "job" and event.payload.get("job"):
                    self._track_job(event)
            services = Services(
                run=self.run,
                events=self.events,
                target=target,
                memory=memory,
                designer=designer,
                control=self.control,
                config=config,
                tools=tools,
                recorded=recorded,
                evaluated=evaluated,
                evidenced=evidenced,
            )
            graph = build_graph(Loop(services), SqliteSaver(conn))
            self._event(
                "run",
                phase="session",
                resumed=bool(history),
                model=designer.model_name,
                pid=_pid(),
                unsafe_sandbox=os.environ.get("DISCO_UNSAFE_SANDBOX") == "1",
            )
            final = self._drive(graph)
        except StopRun as stop:
            final = (stop.state, stop.reason)
        except ModelError as exc:  # a configuration the endpoint refuses (auth, unknown model)
            final = ("failed", str(exc))
        except SandboxUnavailable as exc:  # the host cannot isolate candidate code: nothing ran unboxed
            final = ("failed", str(exc))
        except KeyboardInterrupt:
            final = ("stopped", "interrupted twice: stopped inside a step (resume re-runs that step)")
        except Exception as exc:
            if (full := disk_full(exc)) is not None:
                final = self._disk_full(full)
            else:
                self._event("error", message=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc())
                final = ("failed", f"internal error: {type(exc).__name__}: {exc} (details in events.jsonl)")
        finally:
            target.close()
            conn.close()
        if not final[1].startswith("the disk is full"):
            self._last_job_news()
        values = self._values_after()
        try:
            self._write_status(final[0], final[1], values)
            self._event(
                "run", phase="end", state=final[0], reason=final[1], candidates=self._status.candidates
            )
        except OSError as exc:  # even the reserve did not fit: the log is intact up to here
            if disk_full(exc) is None:
                raise
            self._status.state, self._status.reason = final  # type: ignore[assignment]
        return self._status

    def _disk_full(self, error: str) -> tuple[str, str]:
        """Stop cleanly on a full disk: give back the reserve so that the reason can be written, and reopen
        the event log (which cuts a line that the failed write left half-written)."""
        self.reserve.release()
        self.events = RunEvents(self.run.events_path, self.run.run_id, listener=self._on_event)
        reason = (
            f"the disk is full ({error}) under {self.run.root.parent}: free some space, then "
            f"`disco resume {self.run.run_id}` goes on from the last completed step"
        )
        try:
            self._event("error", error_kind="disk_full", message=reason)
        except OSError as exc:  # not even the reserve's room: status.json still says why
            if disk_full(exc) is None:
                raise
        return "stopped", reason

    def _last_job_news(self) -> None:
        """Job news that arrived since the last poll go into the log before the run ends."""
        try:
            self._poll_jobs(force=True)
        except OSError as exc:
            if disk_full(exc) is None:
                raise

    def _values_after(self) -> dict[str, Any]:
        from langgraph.checkpoint.sqlite import SqliteSaver

        conn = sqlite3.connect(self.run.checkpoints, check_same_thread=False)
        try:
            tup = SqliteSaver(conn).get_tuple({"configurable": {"thread_id": self.run.run_id}})
            return dict(tup.checkpoint["channel_values"]) if tup else {}
        finally:
            conn.close()

    def _drive(self, graph: Any) -> tuple[str, str]:
        from langgraph.types import Command

        thread = {
            "configurable": {"thread_id": self.run.run_id},
            "recursion_limit": self.config.loop.recursion_limit,
        }
        failures = 0
        while True:
            snapshot = graph.get_state(thread)
            values = dict(snapshot.values or {})
            # A node whose writes were saved but not yet folded into a checkpoint (a kill in between) is
            # in `tasks` but not in `next`: the candidate is still in flight, and None resumes it.
            in_flight = bool(snapshot.next or snapshot.tasks)
            self._boundary(values, new_candidate=not in_flight)
            inputs: Any = None if in_flight else {"done": values.get("done", 0)}
            interrupts = [i for t in snapshot.tasks for i in (t.interrupts or ())]
            if interrupts:
                inputs = Command(resume=self._await_decision(values, interrupts[0].value))
            try:
                for update in graph.stream(inputs, thread, stream_mode="updates", durability="sync"):
                    if "__interrupt__" in update:
                        break
                    values.update(next(iter(update.values())) or {})
                    failures = 0
                    if self._down_since is not None:
                        self._endpoint_back()
                    self._boundary(values, new_candidate=False)
                failures = 0
            except ModelError as exc:
                if exc.kind not in ENDPOINT_ERRORS:
                    raise
                failures += 1
                self._endpoint_down(exc, failures, values)

    def _endpoint_down(self, exc: ModelError, failures: int, values: dict[str, Any]) -> None:
        """Back off, then pause and retry the step now and then; give up (stop, with the reason) after the
        configured total wait. Never a crash, never an endless retry; `disco control` works throughout."""
        w = self.config.endpoint
        now = time.monotonic()
        if self._down_since is None:
            self._down_since = now
        down_s = now - self._down_since
        state = ENDPOINT_STATES[exc.kind]
        self._status.endpoint = state
        self._event(
            "error",
            error_kind=exc.kind,
            endpoint=state,
            message=str(exc),
            attempt=failures,
            down_s=round(down_s, 1),
        )
        limit_s = None if w.max_wait_hours is None else w.max_wait_hours * 3600
        if limit_s is not None and down_s >= limit_s:
            raise StopRun(
                "stopped",
                f"the model endpoint has been failing for {_minutes(down_s)} (limit {w.max_wait_hours:g} h): "
                f"{exc}; `disco resume {self.run.run_id}` when it answers again",
            )
        left = float("inf") if limit_s is None else limit_s - down_s
        if failures <= len(self.backoff_s):
            wait = self.backoff_s[failures - 1]
            self._write_status("waiting", f"model endpoint {state}, retrying in {wait:g} s: {exc}", values)
            self._sleep(min(wait, left))
            return
        if not self._outage:
            self._event("human", message=f"paused: the model endpoint is {state}; retrying it", auto=True)
        until = "for ever" if limit_s is None else f"up to {w.max_wait_hours:g} h"
        self._outage = (
            f"model endpoint {state} for {_minutes(down_s)}: {exc}; the step is retried every "
            f"{w.probe_every_s:g} s {until}, and the run goes on by itself when it answers"
        )
        self._write_status("paused", self._outage, values)
        self._sleep(min(w.probe_every_s, left))

    def _endpoint_back(self) -> None:
        down_s = time.monotonic() - (self._down_since or time.monotonic())
        self._event("human", message=f"the model endpoint answers again after {_minutes(down_s)}", auto=True)
        self._down_since, self._outage, self._status.endpoint = None, "", "ok"

    def _sleep(self, seconds: float) -> None:
        """Wait, applying the person's commands; a stop, a signal or a `resume` (probe now) ends it early."""
        end = time.monotonic() + seconds
        self._wake = False
        while time.monotonic() < end and not self.stop_flag.is_set():
            time.sleep(max(0.0, min(self.poll_s, end - time.monotonic())))
            self._apply_control()
            if self.control.stop_requested or self._wake:
                return

    def _await_decision(self, values: dict[str, Any], question: Any) -> str:
        """Wait for `approve` or `deny` from the person (the graph is interrupted meanwhile)."""
        self._write_status("waiting", f"waiting for approval: {question}", values)
        self._event("human", message="waiting for approve / deny", question=question)
        while not self.control.decisions:
            if self.stop_flag.is_set() or self.control.stop_requested:
                raise StopRun("stopped", "stopped while waiting for an approval")
            time.sleep(self.poll_s)
            self._apply_control()
        decision = self.control.decisions.pop(0)
        self._event("human", consumed=decision, message=f"{decision} used for {question}")
        return decision


def _minutes(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


def _pid() -> int:
    return os.getpid()


def create_run(runs_root: Any, config: RunConfig, run_id: str, replay_of: str | None = None) -> RunDir:
    """A new run directory holding the config (without secrets)."""
    model = config.models.meta.model
    if replay_of:
        model = f"replay:{replay_of}"
    safe = config.model_dump(mode="json")
    for role in safe.get("models", {}).values():
        role.pop("api_key", None)
    meta = RunMeta(run_id=run_id, target=config.target, model=model, replay_of=replay_of, config=safe)
    return RunDir.create(runs_root, meta)
