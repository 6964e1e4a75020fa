"""The loop's nodes: plan → design → reflect ×2 → check ⇄ repair (≤3) → evaluate → record.

Each node is a short method that reads the state, does one thing and returns the fields it changed.
A node may run twice for one candidate (a kill between its end and its checkpoint): model replies come
back from the exchange log, evaluations from the candidate's folder, and memory writes are upserts by
id, so a second run of a node costs nothing and records nothing twice.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Literal

from agent.config import RunConfig
from agent.context import ContextLimits, DesignContext, build_context
from agent.control import ControlState
from agent.designers import Designer, StepResult
from agent.events import EventLog
from agent.models import ModelError
from agent.runs import RunDir
from agent.schemas import Draft
from agent.state import LoopState
from memory.records import CandidateRecord, Cost, Fitness
from memory.store import MemoryStore
from targets.base import Target
from targets.results import CheckReport, CheckResult

OUTPUT_ERRORS = ("malformed", "empty", "refused", "replay_missing")
"""Model errors caused by the model's output: the candidate fails with the reason; the run goes on."""


@dataclass
class Services:
    run: RunDir
    events: EventLog
    target: Target
    memory: MemoryStore
    designer: Designer
    control: ControlState
    config: RunConfig
    jobs: Any | None = None
    recorded: set[str] = field(default_factory=set)
    """Candidate ids with a `candidate` event already (so that a re-run of `record` logs once)."""


class Loop:
    def __init__(self, services: Services) -> None:
        self.s = services

    # ------------------------------------------------------------------ helpers
    @property
    def run_id(self) -> str:
        return self.s.run.run_id

    def _context(self, state: LoopState, query: str) -> DesignContext:
        loop = self.s.config.loop
        limits = ContextLimits(k_best=loop.k_best, k_similar=loop.k_similar, k_failures=loop.k_failures)
        return build_context(
            self.s.memory,
            self.s.target,
            query=query,
            hints=self.s.control.hints,
            pinned_ids=self.s.control.pinned,
            vetoed_ids=self.s.control.vetoed,
            candidate_index=state["index"],
            limits=limits,
        )

    def _usage(self, state: LoopState, step: StepResult[Any], what: str) -> dict[str, Any]:
        """Token accounting of one model step, for the candidate and the run; cached replies cost 0."""
        usage = step.usage
        if usage is None or usage.cached:
            return {}
        usd = usage.usd or 0.0
        return {
            "prompt_tokens": state.get("prompt_tokens", 0) + usage.prompt_tokens,
            "completion_tokens": state.get("completion_tokens", 0) + usage.completion_tokens,
            "usd": state.get("usd", 0.0) + usd,
            "cand_prompt_tokens": state.get("cand_prompt_tokens", 0) + usage.prompt_tokens,
            "cand_completion_tokens": state.get("cand_completion_tokens", 0) + usage.completion_tokens,
            "cand_usd": state.get("cand_usd", 0.0) + usd,
        }

    def _model_failed(self, state: LoopState, exc: ModelError, step: str) -> dict[str, Any]:
        if exc.kind not in OUTPUT_ERRORS:
            raise exc  # endpoint down, auth, timeout: a run state for the runner, not the candidate's fault
        self.s.events.append("error", state["candidate_id"], step=step, kind=exc.kind, message=str(exc))
        return {"status": "failed", "error": f"the model's {step} output was unusable: {exc}"}

    def _save_code(self, state: LoopState, draft: Draft, label: str) -> None:
        self.s.run.write_candidate_file(state["candidate_id"], f"{label}.py", draft.code)

    # ------------------------------------------------------------------ nodes
    def plan(self, state: LoopState) -> dict[str, Any]:
        index = state.get("done", 0) + 1
        return {
            "index": index,
            "candidate_id": f"{self.run_id}-{index:04d}",
            "draft": None,
            "parent_ids": [],
            "reflections": [],
            "repairs": 0,
            "checks": None,
            "passed": False,
            "attempts": [],
            "evaluation": None,
            "status": "proposed",
            "error": None,
            "cand_prompt_tokens": 0,
            "cand_completion_tokens": 0,
            "cand_usd": 0.0,
            "job_id": None,
        }

    def design(self, state: LoopState) -> dict[str, Any]:
        cid = state["candidate_id"]
        ctx = self._context(state, query=self.s.target.description)
        try:
            step = self.s.designer.design(f"{cid}/design", ctx)
        except ModelError as exc:
            return self._model_failed(state, exc, "design")
        draft = step.value
        self._save_code(state, draft, "design")
        hints = list(ctx.hints)
        self.s.events.append(
            "node", cid, node="design", name=draft.name, thought=draft.thought, hints_used=hints,
            parents=step.parent_ids, model=self.s.designer.model_name,
        )  # fmt: skip
        return {"draft": draft.model_dump(), "parent_ids": step.parent_ids} | self._usage(state, step, "design")

    def reflect(self, state: LoopState) -> dict[str, Any]:
        cid = state["candidate_id"]
        round_ = len(state.get("reflections", [])) + 1
        draft = Draft.model_validate(state["draft"])
        ctx = self._context(state, query=f"{draft.name}\n{draft.thought}\n{draft.code}")
        try:
            step = self.s.designer.reflect(f"{cid}/reflect{round_}", ctx, draft, round_)
        except ModelError as exc:
            if exc.kind not in OUTPUT_ERRORS:
                raise
            # A failed critique keeps the draft as it was: the checks still judge it.
            entry = {"round": round_, "skipped": True, "why": f"the reflection failed: {exc}"}
            self.s.events.append("node", cid, node="reflect", **entry)
            return {"reflections": [*state.get("reflections", []), entry]}
        if step.value is None:
            entry = {"round": round_, "skipped": True, "why": "offline proposer: no model to reflect"}
            self.s.events.append("node", cid, node="reflect", **entry)
            return {"reflections": [*state.get("reflections", []), entry]}
        revised = step.value.draft()
        self._save_code(state, revised, f"reflect{round_}")
        entry = {"round": round_, "skipped": False, "reflection": step.value.reflection, "name": revised.name}
        self.s.events.append("node", cid, node="reflect", **entry)
        return {
            "reflections": [*state.get("reflections", []), entry],
            "draft": revised.model_dump(),
        } | self._usage(state, step, "reflect")

    def check(self, state: LoopState) -> dict[str, Any]:
        cid = state["candidate_id"]
        draft = Draft.model_validate(state["draft"])
        if cid in self.s.control.vetoed:
            return {"passed": False, "status": "rejected", "error": "vetoed by the person"}
        policy = self.s.target.policy(draft.code)
        if not policy.passed:  # the static policy first: nothing that breaks it is ever run
            report = CheckReport.from_checks([policy])
        else:
            report = self.s.target.check(draft.code)
        fingerprint = None
        if report.passed:
            fingerprint = self.s.target.fingerprint(draft.code)
            verdict = self.s.memory.novelty(draft.code, self.s.target.name, fingerprint, exclude_id=cid)
            message = verdict.message
            if not verdict.novel:
                message += ": change what the loss computes, not how it is written or named"
            novelty = CheckResult(
                name="novelty", passed=verdict.novel, message=message,
                numbers={"similarity": verdict.similarity},
            )  # fmt: skip
            report = CheckReport.from_checks([*report.checks, novelty])
        label = f"check{state.get('repairs', 0)}"
        self.s.run.write_candidate_file(cid, f"{label}.json", report.model_dump(mode="json"))
        failures = [f"{c.name}: {c.message}" for c in report.failures()]
        self.s.events.append(
            "check", cid, passed=report.passed, repairs=state.get("repairs", 0), failures=failures[:5]
        )
        return {"checks": report.model_dump(mode="json"), "passed": report.passed}

    def repair(self, state: LoopState) -> dict[str, Any]:
        cid = state["candidate_id"]
        attempt = state.get("repairs", 0) + 1
        draft = Draft.model_validate(state["draft"])
        report = CheckReport.model_validate(state["checks"])
        failures = report.failures()
        tb = next((c.traceback for c in failures if c.traceback), None)
        # The failed version goes into memory as a lesson ("this failed because…, fixed by …").
        lesson = CandidateRecord(
            id=f"{cid}-a{attempt - 1}", run_id=self.run_id, target=self.s.target.name, name=draft.name,
            thought=draft.thought, code=draft.code, status="check_failed", checks=report.checks,
            error=_failure_text(failures), parent_ids=list(state.get("parent_ids", [])),
        )  # fmt: skip
        self.s.memory.record(lesson)
        ctx = self._context(state, query=f"{draft.name}\n{draft.code}")
        try:
            step = self.s.designer.repair(
                f"{cid}/repair{attempt}", ctx, draft, failures, tb, attempt, self.s.config.loop.max_repairs
            )
        except ModelError as exc:
            return {"repairs": attempt} | self._model_failed(state, exc, "repair")
        fixed = step.value
        self._save_code(state, fixed, f"repair{attempt}")
        self.s.events.append("node", cid, node="repair", attempt=attempt, fed=[c.name for c in failures])
        attempts = [*state.get("attempts", []), {"id": lesson.id, "failures": [c.name for c in failures]}]
        parents = sorted({*state.get("parent_ids", []), lesson.id})
        return {
            "draft": fixed.model_dump(), "repairs": attempt, "attempts": attempts, "parent_ids": parents,
        } | self._usage(state, step, "repair")  # fmt: skip

    def evaluate(self, state: LoopState) -> dict[str, Any]:
        cid = state["candidate_id"]
        saved = self.s.run.read_candidate_json(cid, "evaluation.json")
        if saved is None:  # evaluated already when a kill came before the checkpoint: never twice
            draft = Draft.model_validate(state["draft"])
            evaluation = self.s.target.evaluate(draft.code, draft.name)
            saved = evaluation.model_dump(mode="json")
            self.s.run.write_candidate_file(cid, "evaluation.json", saved)
            self.s.events.append(
                "evaluation", cid, status=evaluation.status, fitness=saved["fitness"],
                vs_baseline=saved["vs_baseline"], reason=evaluation.reason, seconds=evaluation.seconds,
            )  # fmt: skip
        status = "evaluated" if saved["status"] == "ok" else "failed"
        return {"evaluation": saved, "status": status, "error": saved["reason"] or None}

    def record(self, state: LoopState) -> dict[str, Any]:
        cid = state["candidate_id"]
        status, error = _final_status(state)
        draft = Draft.model_validate(state["draft"]) if state.get("draft") else None
        evaluation = state.get("evaluation") or {}
        fitness = evaluation.get("fitness")
        record = CandidateRecord(
            id=cid, run_id=self.run_id, target=self.s.target.name,
            name=draft.name if draft else "", thought=draft.thought if draft else "",
            code=draft.code if draft else "", parent_ids=list(state.get("parent_ids", [])), status=status,
            checks=CheckReport.model_validate(state["checks"]).checks if state.get("checks") else [],
            error=error, repair_count=state.get("repairs", 0), metrics=evaluation.get("metrics", {}),
            fitness=Fitness(**fitness) if fitness else None, generation=state["index"],
            cost=Cost(
                model=self.s.designer.model_name, prompt_tokens=state.get("cand_prompt_tokens", 0),
                completion_tokens=state.get("cand_completion_tokens", 0), usd=state.get("cand_usd") or None,
            ),
        )  # fmt: skip
        fingerprint = self.s.target.fingerprint(record.code) if status == "evaluated" else None
        self.s.memory.record(record, fingerprint)
        self.s.run.write_candidate_file(cid, "record.json", record.model_dump(mode="json"))
        if cid not in self.s.recorded:
            self.s.recorded.add(cid)
            self.s.events.append(
                "candidate", cid, name=record.name, status=status, error=error,
                fitness=fitness, vs_baseline=evaluation.get("vs_baseline"), repairs=record.repair_count,
                parents=record.parent_ids, tokens=record.cost.prompt_tokens + record.cost.completion_tokens,
            )  # fmt: skip
        update: dict[str, Any] = {"done": state["index"], "status": status, "error": error}
        best = state.get("best_fitness")
        if fitness and (best is None or fitness["value"] > best):
            update |= {"best_id": cid, "best_fitness": fitness["value"]}
        return update

    # ------------------------------------------------------------------ routers
    def after_design(self, state: LoopState) -> Literal["reflect", "check", "record"]:
        if state.get("status") == "failed":
            return "record"
        return "reflect" if self.s.config.loop.reflections > 0 else "check"

    def after_reflect(self, state: LoopState) -> Literal["reflect", "check"]:
        return "reflect" if len(state.get("reflections", [])) < self.s.config.loop.reflections else "check"

    def after_check(self, state: LoopState) -> Literal["evaluate", "repair", "record"]:
        if state.get("passed"):
            return "evaluate"
        if state.get("status") == "rejected":
            return "record"
        return "repair" if state.get("repairs", 0) < self.s.config.loop.max_repairs else "record"

    def after_repair(self, state: LoopState) -> Literal["check", "record"]:
        return "record" if state.get("status") == "failed" else "check"


def _failure_text(failures: list[CheckResult]) -> str:
    return "; ".join(f"{c.name}: {c.message}" for c in failures)[:1500]


def _final_status(state: LoopState) -> tuple[str, str | None]:
    """The candidate's status in the DESIGN contract, and the reason when it did not make it."""
    status = state.get("status", "proposed")
    if status in ("evaluated", "failed", "rejected"):
        return status, state.get("error")
    report = CheckReport.model_validate(state["checks"]) if state.get("checks") else None
    if report is not None and not report.passed:
        failures = report.failures()
        only_novelty = all(c.name == "novelty" for c in failures)
        reason = _failure_text(failures)
        repairs = state.get("repairs", 0)
        why = f"still failing after {repairs} repair(s): {reason}"
        return ("rejected" if only_novelty else "check_failed"), why
    return "failed", state.get("error") or "the candidate did not reach evaluation"


def step_timer() -> float:
    return time.perf_counter()
