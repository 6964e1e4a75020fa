"""The headless runner: drives the graph one candidate at a time and handles everything between steps.

Between two steps it applies the person's commands (pause, stop, hint, veto, budget …), polls the GPU
jobs (agent.job_watch), checks the budgets (agent.budgets) and signals (agent.stop), and writes
`status.json`; while the model endpoint fails it waits (agent.endpoint_watch). A stop of any kind happens
at a step boundary, with the reason recorded; the LangGraph checkpoint (SQLite, written synchronously after
every node) is where `disco resume` picks up. What the run did before this session is the event log,
folded once (agent.run_state) and kept current as events are appended.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

from agent.accounting import Reserve, disk_full
from agent.budgets import Usage, exceeded
from agent.config import RunConfig
from agent.control import ControlState
from agent.endpoint_watch import EndpointWatch
from agent.events import BudgetPayload, ErrorPayload, Event, EventLog, HumanPayload, RunPayload, read_events
from agent.job_watch import JobWatch
from agent.models import ModelError
from agent.run_state import RunState
from agent.runs import RunDir, RunStatus, StatusState
from agent.state import last_values
from agent.stop import EndState, StopRun, stop_signals
from sandbox.registry import SandboxUnavailable
from tools.processes import process_start

Progress = Callable[[Event], None]


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
        self.reserve = Reserve(run.root)
        self.state = RunState.of(read_events(run.events_path))
        """The event log folded: what earlier sessions did, kept current as this one appends."""
        self.events = EventLog(run.events_path, run.run_id, listener=self._on_event)
        self.jobs = JobWatch(self.state, self.events)
        self.endpoint = EndpointWatch(
            config.endpoint, tuple(config.endpoint.backoff_s if backoff_s is None else backoff_s), self.events
        )
        self.control = ControlState(run.control_path)
        self.stop_flag = threading.Event()
        self.seed_count = 0
        """Candidates 1 … seed_count are the target's seed archive (they do not count towards the budget)."""
        self._wake = False
        """A `resume` command arrived: probe the endpoint now instead of at the next probe time."""
        self._session_start = time.monotonic()
        self._status = run.status()
        self._elapsed_before = self._status.elapsed_s

    def _on_event(self, event: Event) -> None:
        self.state.apply(event)
        if self.progress:
            self.progress(event)

    def elapsed_s(self) -> float:
        return self._elapsed_before + time.monotonic() - self._session_start

    # ------------------------------------------------------------------ status
    def _spend(self, values: dict[str, Any]) -> tuple[int, int, float]:
        """Prompt and completion tokens and $ of the loop plus those of the model calls that failed, which
        the loop's state never saw."""
        prompt, completion = self.state.failed_tokens
        return (
            values.get("prompt_tokens", 0) + prompt,
            values.get("completion_tokens", 0) + completion,
            values.get("usd", 0.0) + self.state.failed_usd,
        )

    def _write_status(self, state: StatusState, reason: str = "", values: dict | None = None) -> None:
        s = self._status
        s.state, s.reason, s.elapsed_s = state, reason, round(self.elapsed_s(), 2)
        s.endpoint = self.endpoint.state
        if values:
            s.candidates = values.get("done", s.candidates)
            s.best_id = values.get("best_id", s.best_id)
            s.best_fitness = values.get("best_fitness", s.best_fitness)
            s.prompt_tokens, s.completion_tokens, s.usd = self._spend(values)
        s.cpu_s, s.gpu_s = round(self.state.cpu_s, 2), round(self.state.gpu_s, 2)
        done = state in ("stopped", "finished", "failed")
        s.pid = None if done else os.getpid()
        s.pid_start = None if done else process_start(os.getpid())
        self.run.write_status(s)

    # ------------------------------------------------------------------ between steps
    def _apply_control(self) -> None:
        for command in self.control.pending():
            self._wake = self._wake or command.action == "resume"
            message = self.control.apply(command)
            self.events.append(HumanPayload(command=command, message=message))

    def _usage(self, values: dict[str, Any], new_candidate: bool) -> Usage:
        prompt, completion, usd = self._spend(values)
        return Usage(
            candidates=max(0, values.get("done", 0) - self.seed_count) if new_candidate else None,
            tokens=prompt + completion,
            usd=usd,
            elapsed_s=self.elapsed_s(),
            cpu_s=self.state.cpu_s,
            gpu_s=self.state.gpu_s,
        )

    def _boundary(self, values: dict[str, Any], new_candidate: bool) -> None:
        """Everything that may happen between two steps; raises StopRun to leave."""
        self._apply_control()
        self.jobs.poll()
        if self.stop_flag.is_set():
            raise StopRun("stopped", "stopped by a signal (Ctrl-C, SIGTERM or SIGHUP) after its step")
        if self.control.stop_requested:
            raise StopRun("stopped", "stopped by the person")
        budget = self.config.budget.model_copy(update=self.control.budget)
        if reason := exceeded(budget, self._usage(values, new_candidate)):
            self.events.append(BudgetPayload(reason=reason))
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
        self._write_status("paused" if self.endpoint.outage else "running", self.endpoint.outage, values)

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
        self.events.append(HumanPayload(message="waiting for approve / deny", question=question))
        while not self.control.decisions:
            if self.stop_flag.is_set() or self.control.stop_requested:
                raise StopRun("stopped", "stopped while waiting for an approval")
            time.sleep(self.poll_s)
            self._apply_control()
        decision = self.control.decisions.pop(0)
        self.events.append(HumanPayload(consumed=decision, message=f"{decision} used for {question}"))
        return decision

    # ------------------------------------------------------------------ the run
    def execute(self) -> RunStatus:
        with self.run.runner_lock(), stop_signals(self.stop_flag):
            return self._execute()

    def _execute(self) -> RunStatus:
        from langgraph.checkpoint.sqlite import SqliteSaver

        from agent.graph import build_graph
        from agent.nodes import Loop
        from agent.session import open_session, open_target, seed_count

        resumed = self.state.events > 0
        self.control.restore(self.state)
        target = open_target(self.config)
        conn = sqlite3.connect(self.run.checkpoints, check_same_thread=False)
        final: tuple[EndState, str] = ("failed", "the runner stopped unexpectedly")
        try:
            self.reserve.hold()
            services = open_session(
                self.run, self.config, self.events, self.state, self.control, target, self.replay_of
            )
            self.seed_count = seed_count(self.run)
            self.jobs.open_queue = services.tools.queue
            graph = build_graph(Loop(services), SqliteSaver(conn))
            unsafe = os.environ.get("DISCO_UNSAFE_SANDBOX") == "1"
            model = services.designer.model_name
            self.events.append(
                RunPayload(
                    phase="session", resumed=resumed, model=model, pid=os.getpid(), unsafe_sandbox=unsafe
                )
            )
            final = self._drive(graph)
        except StopRun as stop:
            final = (stop.state, stop.reason)
        except (ModelError, SandboxUnavailable) as exc:  # the person must act: a config the endpoint refuses
            final = ("failed", str(exc))  # (auth, unknown model), or a host that cannot isolate candidates
        except KeyboardInterrupt:
            final = ("stopped", "interrupted twice: stopped inside a step (resume re-runs that step)")
        except Exception as exc:
            if (full := disk_full(exc)) is not None:
                final = self._disk_full(full)
            else:
                message, trace = f"{type(exc).__name__}: {exc}", traceback.format_exc()
                self.events.append(ErrorPayload(message=message, traceback=trace))
                final = ("failed", f"internal error: {message} (details in events.jsonl)")
        finally:
            target.close()
            conn.close()
        return self._end(final)

    def _end(self, final: tuple[EndState, str]) -> RunStatus:
        """The last job news, status.json and the `run end` event; a full disk loses none of the log."""
        if not final[1].startswith("the disk is full"):
            self._last_job_news()
        try:
            self._write_status(final[0], final[1], last_values(self.run.checkpoints, self.run.run_id))
            self.events.append(
                RunPayload(phase="end", state=final[0], reason=final[1], candidates=self._status.candidates)
            )
        except OSError as exc:  # even the reserve did not fit: the log is intact up to here
            if disk_full(exc) is None:
                raise
            self._status.state, self._status.reason = final
        return self._status

    def _last_job_news(self) -> None:
        """Job news that arrived since the last poll go into the log before the run ends."""
        try:
            self.jobs.poll(force=True)
        except OSError as exc:
            if disk_full(exc) is None:
                raise

    def _disk_full(self, error: str) -> tuple[EndState, str]:
        """Stop cleanly on a full disk: give back the reserve so that the reason can be written, and reopen
        the event log (which cuts a line that the failed write left half-written)."""
        self.reserve.release()
        self.events = EventLog(self.run.events_path, self.run.run_id, listener=self._on_event)
        self.jobs.events = self.endpoint.events = self.events
        reason = (
            f"the disk is full ({error}) under {self.run.root.parent}: free some space, then "
            f"`disco resume {self.run.run_id}` goes on from the last completed step"
        )
        try:
            self.events.append(ErrorPayload(error_kind="disk_full", message=reason))
        except OSError as exc:  # not even the reserve's room: status.json still says why
            if disk_full(exc) is None:
                raise
        return "stopped", reason

    def _drive(self, graph: Any) -> tuple[EndState, str]:
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
                    self.endpoint.back()
                    self._boundary(values, new_candidate=False)
                failures = 0
            except ModelError as exc:
                if exc.who_acts != "endpoint":
                    raise
                failures += 1
                wait = self.endpoint.down(exc, failures, self.run.run_id)
                self._write_status(wait.state, wait.reason, values)
                self._sleep(wait.seconds)
