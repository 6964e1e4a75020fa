"""The loop's nodes: plan → design → reflect ×2 → check ⇄ repair (≤3) → evaluate → confirm → record.

Each node is a short method that reads the state, does one thing and returns the fields it changed.
A node may run twice for one candidate (a kill between its end and its checkpoint): model replies come
back from the exchange log, evaluations from the candidate's folder, and memory writes are upserts by
id, so a second run of a node costs nothing and records nothing twice.
"""

from __future__ import annotations

from typing import Any, Literal

from agent.context import ContextLimits, DesignContext, build_context
from agent.designers import StepResult
from agent.events import (
    CandidatePayload,
    CheckPayload,
    ErrorPayload,
    EvaluationPayload,
    JobPayload,
    NodePayload,
    ProgressPayload,
)
from agent.fresh import read_fresh
from agent.models import ModelError
from agent.schemas import Draft, RepairRequest
from agent.session import Services
from agent.state import LoopState
from memory.records import CandidateRecord, Cost, Fitness, Status, VsBaseline
from sandbox.redact import redact_obj
from targets.base import baseline_of, evaluators_of
from targets.progress import progress_to
from targets.results import CheckReport, CheckResult
from tools.toolbox import ToolError


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
        if exc.who_acts != "candidate":
            raise exc  # endpoint down, auth, timeout: a run state for the runner, not the candidate's fault
        self.s.events.append(
            ErrorPayload(step=step, error_kind=exc.kind, message=str(exc)), state["candidate_id"]
        )
        error = f"the model's {step} output was unusable: {exc}"
        return {"status": "failed", "error": error, "replay_broken": exc.kind == "replay_missing"}

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
            "replay_broken": False,
            "cand_prompt_tokens": 0,
            "cand_completion_tokens": 0,
            "cand_usd": 0.0,
            "job_id": None,
            "verdict": None,
            "evidence": None,
        }

    def design(self, state: LoopState) -> dict[str, Any]:
        cid = state["candidate_id"]
        ctx = self._context(state, query=self.s.target.description)
        try:
            step = self.s.designer.design(_key(state, "design"), ctx)
        except ModelError as exc:
            return self._model_failed(state, exc, "design")
        draft = step.value
        self._save_code(state, draft, "design")
        ignored = [h for h in ctx.hints if h in step.hints_ignored]
        designed = NodePayload(
            node="design",
            name=draft.name,
            thought=draft.thought,
            hints_used=[h for h in ctx.hints if h not in ignored],
            hints_ignored=ignored,
            parents=step.parent_ids,
            model=self.s.designer.model_name,
        )
        self.s.events.append(designed, cid)
        return {"draft": draft.model_dump(), "parent_ids": step.parent_ids} | self._usage(
            state, step, "design"
        )

    def reflect(self, state: LoopState) -> dict[str, Any]:
        cid = state["candidate_id"]
        round_ = len(state.get("reflections", [])) + 1
        draft = Draft.model_validate(state["draft"])
        if not self.s.designer.reflects:  # the offline proposer: nothing to ask, no context to build
            entry = {"round": round_, "skipped": True, "why": "offline proposer: no model to reflect"}
            self.s.events.append(NodePayload(node="reflect", **entry), cid)
            return {"reflections": [*state.get("reflections", []), entry]}
        ctx = self._context(state, query=f"{draft.name}\n{draft.thought}\n{draft.code}")
        try:
            step = self.s.designer.reflect(_key(state, f"reflect{round_}"), ctx, draft, round_)
        except ModelError as exc:
            if exc.who_acts != "candidate":
                raise
            # A failed critique keeps the draft as it was: the checks still judge it.
            entry = {"round": round_, "skipped": True, "why": f"the reflection failed: {exc}"}
            self.s.events.append(NodePayload(node="reflect", **entry), cid)
            return {"reflections": [*state.get("reflections", []), entry]}
        if step.value is None:  # a seed of the archive, or a designer without a model
            entry = {
                "round": round_,
                "skipped": True,
                "why": "a known design (seed archive): nothing to reflect on",
            }
            self.s.events.append(NodePayload(node="reflect", **entry), cid)
            return {"reflections": [*state.get("reflections", []), entry]}
        revised = step.value.draft()
        self._save_code(state, revised, f"reflect{round_}")
        entry = {"round": round_, "skipped": False, "reflection": step.value.reflection, "name": revised.name}
        self.s.events.append(NodePayload(node="reflect", **entry), cid)
        return {
            "reflections": [*state.get("reflections", []), entry],
            "draft": revised.model_dump(),
        } | self._usage(state, step, "reflect")

    def check(self, state: LoopState) -> dict[str, Any]:
        cid = state["candidate_id"]
        draft = Draft.model_validate(state["draft"])
        if cid in self.s.control.vetoed:
            return {"passed": False, "status": "rejected", "error": "vetoed by the person"}
        report = self.s.tools.check(draft.code, candidate_id=cid)
        blocked = [c for c in report.failures() if c.cause == "infrastructure"]
        if blocked:  # not the candidate's fault: no repair; the runner waits for the endpoint, then re-checks
            raise ModelError("unreachable", f"The check of {cid} could not run: {blocked[0].message}.")
        label = f"check{state.get('repairs', 0)}"
        checks = report.model_dump(mode="json", exclude={"fingerprint"})
        self.s.run.write_candidate_file(cid, f"{label}.json", checks)
        failures = [f"{c.name}: {c.message}" for c in report.failures()]
        self.s.events.append(
            CheckPayload(passed=report.passed, repairs=state.get("repairs", 0), failures=failures[:5]), cid
        )
        return {"checks": checks, "passed": report.passed, "fingerprint": report.fingerprint}

    def repair(self, state: LoopState) -> dict[str, Any]:
        cid = state["candidate_id"]
        attempt = state.get("repairs", 0) + 1
        draft = Draft.model_validate(state["draft"])
        report = CheckReport.model_validate(state["checks"])
        failures = report.failures()
        tb = next((c.traceback for c in failures if c.traceback), None)
        # The failed version goes into memory as a lesson ("this failed because…, fixed by …").
        lesson = CandidateRecord(
            id=f"{cid}-a{attempt - 1}",
            run_id=self.run_id,
            target=self.s.target.name,
            name=draft.name,
            thought=draft.thought,
            code=draft.code,
            status="check_failed",
            checks=report.checks,
            error=_failure_text(failures),
            parent_ids=list(state.get("parent_ids", [])),
        )
        self.s.memory.record(lesson)
        ctx = self._context(state, query=f"{draft.name}\n{draft.code}")
        try:
            request = RepairRequest(
                draft=draft,
                failures=failures,
                traceback=tb,
                attempt=attempt,
                max_attempts=self.s.config.loop.max_repairs,
            )
            step = self.s.designer.repair(_key(state, f"repair{attempt}"), ctx, request)
        except ModelError as exc:
            return {"repairs": attempt} | self._model_failed(state, exc, "repair")
        fixed = step.value
        self._save_code(state, fixed, f"repair{attempt}")
        self.s.events.append(NodePayload(node="repair", attempt=attempt, fed=[c.name for c in failures]), cid)
        attempts = [*state.get("attempts", []), {"id": lesson.id, "failures": [c.name for c in failures]}]
        parents = sorted({*state.get("parent_ids", []), lesson.id})
        return {
            "draft": fixed.model_dump(),
            "repairs": attempt,
            "attempts": attempts,
            "parent_ids": parents,
        } | self._usage(state, step, "repair")

    def evaluate(self, state: LoopState) -> dict[str, Any]:
        cid = state["candidate_id"]
        saved = self.s.run.read_candidate_json(cid, "evaluation.json")
        if saved is None:  # evaluated already when a kill came before the checkpoint: never twice
            draft = Draft.model_validate(state["draft"])
            with progress_to(self._progress(cid)):
                evaluation = self.s.tools.evaluate(draft.code, draft.name, candidate_id=cid)
            if evaluation.blocked:  # not recorded: the runner waits for the endpoint, then evaluates again
                why = f"The evaluation of {cid} could not run: {evaluation.blocked}."
                raise ModelError("unreachable", why)
            saved = redact_obj(evaluation.model_dump(mode="json"))  # reasons quote the candidate's errors
            self.s.run.write_candidate_file(cid, "evaluation.json", saved)
        if cid not in self.s.state.evaluated:
            evaluated = EvaluationPayload(
                status=saved["status"],
                fitness=saved["fitness"],
                vs_baseline=saved["vs_baseline"],
                baseline=baseline_of(self.s.target),
                reason=saved["reason"],
                seconds=saved["seconds"],
            )
            self.s.events.append(evaluated, cid)
        status = "evaluated" if saved["status"] == "ok" else "failed"
        return {"evaluation": saved, "status": status, "error": saved["reason"] or None}

    def _progress(self, cid: str) -> Any:
        """A long step's progress as events (targets.progress): what it does now, n of N, time left."""

        def sink(what: str, done: int | None, total: int | None, **extra: float) -> None:
            self.s.events.append(ProgressPayload(what=what, done=done, total=total, **extra), cid)

        return sink

    def confirm(self, state: LoopState) -> dict[str, Any]:
        """Evidence before best: the candidate against the incumbent over their common seeds, with rounds of
        fresh seeds for both while it is promising (agent.confirm; the rule in agent.evidence)."""
        from agent.confirm import Confirmer

        draft = Draft.model_validate(state["draft"])
        evidence_cfg = self.s.config.evidence
        budget = self.s.config.budget.max_candidates
        if budget:  # α is split over the candidates this run may race: exactly its cap when it has one
            evidence_cfg = evidence_cfg.model_copy(update={"candidate_budget": budget})
        confirmer = Confirmer(self.s.run, self.s.target, evidence_cfg, self.s.events, self.s.state.evidenced)
        with progress_to(self._progress(state["candidate_id"])):
            evidence = confirmer.decide(
                state["candidate_id"], draft.code, draft.name, state["evaluation"] or {}, state.get("best_id")
            )
        return {"verdict": evidence.verdict, "evidence": evidence.model_dump(mode="json")}

    def record(self, state: LoopState) -> dict[str, Any]:
        cid = state["candidate_id"]
        status, error = _final_status(state)
        draft = Draft.model_validate(state["draft"]) if state.get("draft") else None
        evaluation = state.get("evaluation") or {}
        fitness = evaluation.get("fitness")
        verdict = state.get("verdict") if status == "evaluated" else None
        record = CandidateRecord(
            id=cid,
            run_id=self.run_id,
            target=self.s.target.name,
            name=draft.name if draft else "",
            thought=draft.thought if draft else "",
            code=draft.code if draft else "",
            parent_ids=list(state.get("parent_ids", [])),
            status=status,
            checks=CheckReport.model_validate(state["checks"]).checks if state.get("checks") else [],
            error=error,
            repair_count=state.get("repairs", 0),
            metrics=evaluation.get("metrics", {}),
            fitness=Fitness(**fitness) if fitness else None,
            vs_baseline=self._vs_baseline(cid),
            generation=state["index"],
            verdict=verdict,
            cost=Cost(
                model=self.s.designer.model_name,
                prompt_tokens=state.get("cand_prompt_tokens", 0),
                completion_tokens=state.get("cand_completion_tokens", 0),
                usd=state.get("cand_usd") or None,
            ),
        )
        fingerprint = state.get("fingerprint") if status == "evaluated" else None
        if not state.get("replay_broken"):  # a replay's missing step is no lesson about the candidate
            self.s.memory.record(record, fingerprint)
        self.s.run.write_candidate_file(cid, "record.json", record.model_dump(mode="json"))
        if (best := state.get("best_id")) and best != cid:
            self._refresh_score(best)  # the race trained the incumbent on more fresh seeds
        if cid not in self.s.state.recorded:
            recorded = CandidatePayload(
                name=record.name,
                status=status,
                error=error,
                fitness=fitness,
                vs_baseline=record.vs_baseline,
                baseline=baseline_of(self.s.target),
                repairs=record.repair_count,
                parents=record.parent_ids,
                tokens=record.cost.prompt_tokens + record.cost.completion_tokens,
                verdict=verdict,
            )
            self.s.events.append(recorded, cid)
        update: dict[str, Any] = {"done": state["index"], "status": status, "error": error}
        if fitness and verdict in ("first", "best"):  # the point fitness alone never makes a best
            update |= {"best_id": cid, "best_fitness": fitness["value"]}
        return update

    def _vs_baseline(self, cid: str) -> VsBaseline | None:
        """The candidate's fresh-seed difference to the baseline (agent.fresh), when the target has one."""
        fresh = read_fresh(self.s.run, cid)
        return VsBaseline.model_validate(fresh.model_dump()) if fresh else None

    def _refresh_score(self, cid: str) -> None:
        """An earlier candidate's record (run folder and memory) with its latest fresh-seed difference."""
        saved = self.s.run.read_candidate_json(cid, "record.json")
        vs = self._vs_baseline(cid)
        if saved is None or vs is None:
            return
        record = CandidateRecord.model_validate(saved)
        if record.vs_baseline != vs:
            record = record.model_copy(update={"vs_baseline": vs})
            self.s.memory.record(record)
            self.s.run.write_candidate_file(cid, "record.json", record.model_dump(mode="json"))

    def gpu_job(self, state: LoopState) -> dict[str, Any]:
        """The expensive evaluator: a real DPO job for a candidate that beat the run's best so far.

        With approval on, the graph is interrupted until the person answers; on resume this node runs
        again from its first line, which is safe: nothing before `interrupt` has an effect.
        """
        from langgraph.types import interrupt

        cid = state["candidate_id"]
        if self.s.config.gpu.approval:
            question = {"kind": "gpu_job", "candidate": cid, "fitness": state.get("best_fitness")}
            if interrupt(question) != "approve":
                self.s.events.append(JobPayload(state="denied", message="the person denied the GPU job"), cid)
                return {"job_id": None}
        try:
            job = self.s.tools.launch_job(cid)
        except ToolError as exc:
            self.s.events.append(JobPayload(state="not_launched", message=str(exc)), cid)
            return {"job_id": None}
        if job["id"] not in self.s.state.jobs:  # a re-run of this node (a kill before its checkpoint)
            # submits again and finds the same job (ids are hashes of the spec): it is announced once
            self.s.events.append(
                JobPayload(job=job["id"], state=job["state"], message="GPU DPO job submitted"), cid
            )
        return {"job_id": job["id"]}

    # ------------------------------------------------------------------ routers
    def after_record(self, state: LoopState) -> Literal["gpu_job", "__end__"]:
        earned = state.get("status") == "evaluated" and state.get("best_id") == state["candidate_id"]
        return "gpu_job" if self.s.config.gpu.enabled and earned and self._has_gpu_evaluator else "__end__"

    @property
    def _has_gpu_evaluator(self) -> bool:
        """Only a target that declares a GPU evaluator (the DPO target's real job) can earn a GPU job."""
        return any(e.device == "gpu" for e in evaluators_of(self.s.target))

    def after_evaluate(self, state: LoopState) -> Literal["confirm", "record"]:
        return "confirm" if state.get("status") == "evaluated" else "record"

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


def _key(state: LoopState, step: str) -> str:
    """The exchange key of a model step: by candidate number, not id, so that a replay (another run id)
    finds the recorded answer of the same step."""
    return f"c{state['index']:04d}/{step}"


def _failure_text(failures: list[CheckResult]) -> str:
    return "; ".join(f"{c.name}: {c.message}" for c in failures)[:1500]


def _final_status(state: LoopState) -> tuple[Status, str | None]:
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
