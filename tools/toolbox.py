"""What the agent can do to the world, as plain methods: check and evaluate a candidate, query memory,
launch / watch / cancel a DPO job. The loop's nodes call these methods; `tools.langchain` wraps the same
methods as LangChain tools for the chat agent, so both see the same behaviour and the same results.

Every call is told to `on_call` (a `ToolCall`: the tool, its arguments and a short result), which the
agent writes to the run's event log.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from memory.records import PastAttempt
from memory.store import MemoryStore
from targets.base import Evaluation, Target
from targets.results import CheckReport, CheckResult


class ToolCall(BaseModel):
    """One call of a tool, as it is reported (the run's `tool` event, the TUI's tool line)."""

    tool: str
    args: dict[str, Any]
    result: str
    candidate: str | None = None
    chat: bool = False
    """Asked by the chat agent, not by the loop."""


OnCall = Callable[[ToolCall], None]


class Toolbox:
    def __init__(
        self,
        target: Target,
        memory: MemoryStore,
        jobs: Any | None = None,
        job_defaults: dict[str, Any] | None = None,
        on_call: OnCall | None = None,
        jobs_dir: Path | None = None,
    ) -> None:
        """`jobs_dir`: where a JobQueue is opened on first use when `jobs` is None (the data dir's jobs/,
        handed in by whoever composes the services: the toolbox does not look for the data dir)."""
        self.target = target
        self.memory = memory
        self.jobs = jobs
        """A tools.jobs.JobQueue, created on first use when None."""
        self.jobs_dir = jobs_dir
        self.job_defaults = job_defaults or {}
        self.on_call = on_call
        self.ignore_runs: tuple[str, ...] = ()
        """Runs whose candidates the novelty gate does not count (a replay's recorded run: the replay would
        otherwise be judged a duplicate of the very run it reproduces)."""

    def _log(self, tool: str, args: dict[str, Any], result: str, candidate: str | None = None) -> None:
        if self.on_call is not None:
            self.on_call(ToolCall(tool=tool, args=args, result=result[:500], candidate=candidate))

    # ------------------------------------------------------------------ checks and evaluation
    def check(self, code: str, candidate_id: str | None = None) -> CheckReport:
        """The static policy, the target's validity checks in the sandbox, then the novelty gate; a passing
        report carries the candidate's fingerprint where the target computes one."""
        policy = self.target.policy(code)
        report = CheckReport.from_checks([policy]) if not policy.passed else self.target.check(code)
        fingerprint = None
        if report.passed:  # the target's check computes it (targets.kit); asked for where it does not
            fingerprint = report.fingerprint
            if fingerprint is None:
                fingerprint = self.target.fingerprint(code)
            verdict = self.memory.novelty(
                code, self.target.name, fingerprint, exclude_id=candidate_id, ignore_runs=self.ignore_runs
            )
            message = verdict.message
            if not verdict.novel:
                message += ": change what the candidate computes, not how it is written or named"
            novelty = CheckResult(
                name="novelty",
                passed=verdict.novel,
                message=message,
                numbers={"similarity": verdict.similarity},
            )
            report = CheckReport.from_checks([*report.checks, novelty])
            report.fingerprint = None if fingerprint is None else [float(x) for x in fingerprint]
        failed = [c.name for c in report.failures()]
        self._log(
            "run_checks",
            {"chars": len(code)},
            "passed" if report.passed else f"failed: {failed}",
            candidate_id,
        )
        return report

    def evaluate(self, code: str, name: str, candidate_id: str | None = None) -> Evaluation:
        evaluation = self.target.evaluate(code, name)
        fit = evaluation.fitness
        summary = f"fitness {fit.value:+.4f}" if fit else f"failed: {evaluation.reason[:200]}"
        self._log("evaluate", {"name": name}, summary, candidate_id)
        return evaluation

    # ------------------------------------------------------------------ memory
    def similar(self, query: str, k: int = 5) -> list[PastAttempt]:
        hits = self.memory.search(query, k=k, target=self.target.name)
        out = [PastAttempt.brief(h.record, h.similarity) for h in hits]
        self._log("similar", {"query": query[:200], "k": k}, ", ".join(f"{b.id}" for b in out))
        return out

    def best(self, k: int = 5) -> list[PastAttempt]:
        out = [PastAttempt.brief(r) for r in self.memory.top_by_score(self.target.name, k)]
        shown = [
            f"{b.id}={b.vs_baseline.diff:+.3f} (n {b.vs_baseline.n_seeds})" for b in out if b.vs_baseline
        ]
        shown += [
            f"{b.id}=fitness {b.fitness.value:+.3f}"
            for b in out
            if not b.vs_baseline and b.fitness is not None
        ]
        self._log("best", {"k": k}, ", ".join(shown))
        return out

    def failures(self, k: int = 5) -> list[dict[str, Any]]:
        lessons = self.memory.recent_failures(self.target.name, k)
        out = [
            {
                "failed": PastAttempt.brief(x.candidate, code_chars=800).model_dump(),
                "error": x.error[:800],
                "fixed_by": PastAttempt.brief(x.fixed_by, code_chars=800).model_dump()
                if x.fixed_by
                else None,
            }
            for x in lessons
        ]
        self._log("failures", {"k": k}, ", ".join(x.candidate.id for x in lessons))
        return out

    def candidate(self, candidate_id: str) -> PastAttempt | None:
        rec = self.memory.get(candidate_id)
        return PastAttempt.brief(rec, code_chars=6000) if rec else None

    # ------------------------------------------------------------------ DPO jobs
    def queue(self) -> Any:
        """The GPU job queue, opened on first use."""
        if self.jobs is None:
            from tools.jobs import JobQueue

            if self.jobs_dir is None:
                raise ToolError("this session has no job queue (no jobs directory was given)")
            self.jobs = JobQueue(self.jobs_dir)
        return self.jobs

    def launch_job(
        self, candidate_id: str, train: dict[str, Any] | None = None, gpus: int | None = None
    ) -> dict[str, Any]:
        """Submit a real DPO job for a recorded candidate (idempotent: the same spec is the same job)."""
        from tools.jobs import JobError, JobSpec, Resources

        rec = self.memory.get(candidate_id)
        if rec is None:
            raise ToolError(f"no candidate {candidate_id!r} in memory")
        train_spec = train or self.job_defaults.get("train")
        if not train_spec:
            raise ToolError("no training settings for DPO jobs: set [gpu.spec] train in the config")
        gpus = int(self.job_defaults.get("gpus", 1)) if gpus is None else gpus
        try:
            spec = JobSpec(
                candidate_name=rec.name or rec.id,
                candidate_code=rec.code,
                train=train_spec,
                resources=Resources(gpus=gpus, **self.job_defaults.get("resources", {})),
                time_limit_s=self.job_defaults.get("time_limit_s", 3600.0),
            )
            job = self.queue().submit(spec)
        except JobError as exc:
            raise ToolError(str(exc)) from None
        self._log(
            "launch_job", {"candidate": candidate_id, "gpus": gpus}, f"{job.id}: {job.state}", candidate_id
        )
        return job.model_dump(mode="json", include={"id", "state", "reason", "created_at"})

    def job_status(self, job_id: str) -> dict[str, Any]:
        from tools.jobs import JobError

        try:
            job = self.queue().get(job_id)
        except JobError as exc:
            raise ToolError(str(exc)) from None
        if job is None:
            raise ToolError(f"no job {job_id!r}")
        lines, _ = self.queue().logs(job_id)
        doc = job.model_dump(
            mode="json", include={"id", "state", "reason", "metrics", "started_at", "finished_at"}
        )
        doc["last_log_lines"] = lines[-10:]
        self._log("job_status", {"job": job_id}, job.state)
        return doc

    def cancel_job(self, job_id: str) -> dict[str, Any]:
        from tools.jobs import JobError

        try:
            job = self.queue().cancel(job_id)
        except JobError as exc:
            raise ToolError(str(exc)) from None
        self._log("cancel_job", {"job": job_id}, job.state)
        return job.model_dump(mode="json", include={"id", "state", "reason"})


class ToolError(Exception):
    """A tool call that cannot be done (unknown id, missing settings); the message goes back to the model."""
