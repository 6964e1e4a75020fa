"""The headless runner: drives the graph one candidate at a time and handles everything between steps.

Between two steps it applies the person's commands (pause, stop, hint, veto, budget …), checks the
budgets and signals, and writes `status.json`. A stop of any kind happens at a step boundary, with the
reason recorded; the LangGraph checkpoint (SQLite, written synchronously after every node) is where
`disco resume` picks up.
"""

from __future__ import annotations

import signal
import sqlite3
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from agent.config import RunConfig, target_env
from agent.control import ControlState
from agent.events import Event, EventLog, read_events
from agent.models import ExchangeLog, ModelError
from agent.nodes import Loop, Services
from agent.runs import RunDir, RunMeta, RunStatus
from tools.processes import process_start

ENDPOINT_ERRORS = ("unreachable", "timeout", "rate_limited", "server")
Progress = Callable[[Event], None]


class StopRun(Exception):
    """Leave the step loop at a boundary; carries the run's final state and why."""

    def __init__(self, state: str, reason: str) -> None:
        super().__init__(reason)
        self.state = state
        self.reason = reason


@contextmanager
def _stop_signals(flag: threading.Event) -> Iterator[None]:
    """SIGINT / SIGTERM ask for a stop at the next step boundary instead of killing the step."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

    def handler(signum: int, frame: Any) -> None:
        if flag.is_set():  # a second Ctrl-C: the person means it
            signal.signal(signal.SIGINT, signal.default_int_handler)
            raise KeyboardInterrupt
        flag.set()

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

    settings.check_usable()

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
        )

    return ModelDesigner(StructuredModel(settings, log=log, on_call=llm_event), settings.model)


class Runner:
    def __init__(
        self,
        run: RunDir,
        config: RunConfig,
        *,
        replay_of: RunDir | None = None,
        progress: Progress | None = None,
        poll_s: float = 0.5,
        backoff_s: tuple[float, ...] = (5.0, 20.0, 60.0),
    ) -> None:
        self.run = run
        self.config = config
        self.replay_of = replay_of
        self.progress = progress
        self.poll_s = poll_s
        self.backoff_s = backoff_s
        self.events = EventLog(run.events_path, run.run_id, listener=self._on_event)
        self.tools: Any = None
        self.jobs: dict[str, dict[str, Any]] = {}
        """GPU jobs of this run not yet finished: id → candidate, cursor (their news go into the events)."""
        self.job_poll_s = 10.0
        self._last_job_poll = 0.0
        self.pause_reason = ""
        self.control = ControlState(run.control_path)
        self.stop_flag = threading.Event()
        self._session_start = time.monotonic()
        self._elapsed_before = run.status().elapsed_s
        self._status = run.status()

    # ------------------------------------------------------------------ status and events
    def _on_event(self, event: Event) -> None:
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
                self._event("job", info["candidate"], job=job_id, state="failed:crash", message=str(exc))
                continue
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
            s.prompt_tokens = values.get("prompt_tokens", s.prompt_tokens)
            s.completion_tokens = values.get("completion_tokens", s.completion_tokens)
            s.usd = values.get("usd", s.usd)
        done = state in ("stopped", "finished", "failed")
        s.pid = None if done else _pid()
        s.pid_start = None if done else process_start(_pid())
        self.run.write_status(s)

    # ------------------------------------------------------------------ between steps
    def _apply_control(self) -> None:
        for command in self.control.pending():
            message = self.control.apply(command)
            self._event("human", command=command.model_dump(mode="json"), message=message)

    def _budget(self, values: dict[str, Any], new_candidate: bool) -> str | None:
        """The budget that is used up, in words, or None."""
        b = self.config.budget.model_copy(update=self.control.budget)
        done = values.get("done", 0)
        if new_candidate and b.max_candidates is not None and done >= b.max_candidates:
            return f"candidates budget reached: {done} of {int(b.max_candidates)}"
        tokens = values.get("prompt_tokens", 0) + values.get("completion_tokens", 0)
        if b.max_tokens is not None and tokens >= b.max_tokens:
            return f"token budget reached: {tokens} of {int(b.max_tokens)}"
        if b.max_usd is not None and values.get("usd", 0.0) >= b.max_usd:
            return f"cost budget reached: ${values.get('usd', 0.0):.4f} of ${b.max_usd:.2f}"
        if b.hours is not None and self.elapsed_s() >= b.hours * 3600:
            return f"time budget reached: {self.elapsed_s() / 3600:.2f} h of {b.hours} h"
        return None

    def _boundary(self, values: dict[str, Any], new_candidate: bool) -> None:
        """Everything that may happen between two steps; raises StopRun to leave."""
        self._apply_control()
        self._poll_jobs()
        if self.stop_flag.is_set():
            raise StopRun("stopped", "stopped by a signal (Ctrl-C or SIGTERM)")
        if self.control.stop_requested:
            raise StopRun("stopped", "stopped by the person")
        reason = self._budget(values, new_candidate)
        if reason:
            self._event("budget", reason=reason)
            raise StopRun(
                "finished" if new_candidate and reason.startswith("candidates") else "stopped", reason
            )
        if self.control.paused:
            self._write_status("paused", self.pause_reason or "paused by the person", values)
            while self.control.paused and not self.control.stop_requested and not self.stop_flag.is_set():
                time.sleep(self.poll_s)
                self._apply_control()
            self.pause_reason = ""
            self._boundary(values, new_candidate)
            return
        self._write_status("running", "", values)

    # ------------------------------------------------------------------ the run
    def execute(self) -> RunStatus:
        with self.run.runner_lock(), _stop_signals(self.stop_flag):
            return self._execute()

    def _execute(self) -> RunStatus:
        from langgraph.checkpoint.sqlite import SqliteSaver

        from agent.commands.memory import open_store
        from agent.graph import build_graph
        from agent.home import cache_dir
        from targets.registry import get_target
        from tools.toolbox import Toolbox

        history = list(read_events(self.run.events_path))
        self.control.restore(history)
        recorded = {e.candidate for e in history if e.kind == "candidate" and e.candidate}
        evaluated = {e.candidate for e in history if e.kind == "evaluation" and e.candidate}
        config = self.config
        target = get_target(config.target, config.targets.get(config.target), target_env(config, cache_dir()))
        log = ExchangeLog(self.run.exchanges_path)
        conn = sqlite3.connect(self.run.checkpoints, check_same_thread=False)
        final = ("failed", "the runner stopped unexpectedly")
        try:
            designer = _designer(self.run, config, target, log, self.replay_of, self.events)
            memory = open_store()
            tools = Toolbox(target, memory, job_defaults=config.gpu.spec, event=self.events.append)
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
            )
            graph = build_graph(Loop(services), SqliteSaver(conn))
            self._event("run", phase="session", resumed=bool(history), model=designer.model_name, pid=_pid())
            final = self._drive(graph)
        except StopRun as stop:
            final = (stop.state, stop.reason)
        except ModelError as exc:  # a configuration the endpoint refuses (auth, unknown model)
            final = ("failed", str(exc))
        except KeyboardInterrupt:
            final = ("stopped", "interrupted twice: stopped inside a step (resume re-runs that step)")
        except Exception as exc:
            self._event("error", message=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc())
            final = ("failed", f"internal error: {type(exc).__name__}: {exc} (details in events.jsonl)")
        finally:
            target.close()
            conn.close()
        values = self._values_after()
        self._write_status(final[0], final[1], values)
        self._event("run", phase="end", state=final[0], reason=final[1], candidates=self._status.candidates)
        return self._status

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
            in_flight = bool(snapshot.next)
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
                    self._boundary(values, new_candidate=False)
                failures = 0
            except ModelError as exc:
                if exc.kind not in ENDPOINT_ERRORS:
                    raise
                failures += 1
                self._event("error", error_kind=exc.kind, message=str(exc), attempt=failures)
                if failures > len(self.backoff_s):
                    self.control.paused = True
                    self.pause_reason = f"model endpoint failing: {exc}"
                    self._event("human", message="paused: the model endpoint kept failing", auto=True)
                    self._write_status("paused", f"model endpoint failing: {exc}", values)
                    continue
                self._write_status("waiting", f"model endpoint failing, retrying: {exc}", values)
                self._sleep(self.backoff_s[failures - 1])

    def _sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end and not self.stop_flag.is_set():
            time.sleep(min(self.poll_s, end - time.monotonic()) if end > time.monotonic() else 0)
            self._apply_control()
            if self.control.stop_requested:
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


def _pid() -> int:
    import os

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
