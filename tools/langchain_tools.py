"""The toolbox as LangChain tools, for the chat agent (and any tool-calling model).

A tool that cannot do what it was asked returns the reason as its result, so that the model reads it
and tries something else; it never raises into the agent.
"""

from __future__ import annotations

import json
from typing import Any

from langchain_core.tools import BaseTool, StructuredTool
from pydantic import BaseModel, Field

from tools.toolbox import Toolbox, ToolError


class CodeArgs(BaseModel):
    code: str = Field(description="The complete candidate source.")


class EvaluateArgs(BaseModel):
    code: str = Field(description="The complete candidate source.")
    name: str = Field(description="A short snake_case name for it.")


class QueryArgs(BaseModel):
    query: str = Field(description="Text or code to find similar past attempts to.")
    k: int = Field(default=5, ge=1, le=20)


class CountArgs(BaseModel):
    k: int = Field(default=5, ge=1, le=20)


class CandidateArgs(BaseModel):
    candidate_id: str = Field(description="A candidate id, e.g. 20261122-101500-ab12-0012.")


class LaunchArgs(BaseModel):
    candidate_id: str = Field(description="The recorded candidate to train for real.")
    gpus: int = Field(default=1, ge=0, le=8, description="GPUs for the job (0: CPU).")


class JobArgs(BaseModel):
    job_id: str


def _json(value: Any) -> str:
    if isinstance(value, BaseModel):
        return value.model_dump_json(indent=1)
    if isinstance(value, list):
        return json.dumps(
            [v.model_dump(mode="json") if isinstance(v, BaseModel) else v for v in value], indent=1
        )
    return json.dumps(value, indent=1, default=str)


def _safe(fn: Any) -> Any:
    def call(**kwargs: Any) -> str:
        try:
            return _json(fn(**kwargs))
        except ToolError as exc:
            return f"error: {exc}"
        except Exception as exc:  # a job queue or sandbox that is unavailable: the model must hear why
            return f"error: {type(exc).__name__}: {exc}"

    return call


def as_langchain_tools(box: Toolbox) -> list[BaseTool]:
    def run_unit_tests(code: str) -> Any:
        report = box.check(code)
        return {"passed": report.passed, "checks": [c.model_dump(exclude_none=True) for c in report.checks]}

    def evaluate_candidate(code: str, name: str) -> Any:
        return box.evaluate(code, name).model_dump(mode="json", exclude={"details"})

    def show_candidate(candidate_id: str) -> Any:
        found = box.candidate(candidate_id)
        if found is None:
            raise ToolError(f"no candidate {candidate_id!r} in memory")
        return found

    specs: list[tuple[str, Any, type[BaseModel], str]] = [
        (
            "run_unit_tests",
            run_unit_tests,
            CodeArgs,
            "Run the target's static policy, validity checks (in the sandbox) and novelty gate on code.",
        ),
        (
            "evaluate_candidate",
            evaluate_candidate,
            EvaluateArgs,
            "Train and score a candidate on the cheap evaluator (~1 min on CPU); returns fitness ± CI.",
        ),
        (
            "similar_candidates",
            box.similar,
            QueryArgs,
            "Past attempts most similar to a text or code, with status, fitness and errors.",
        ),
        ("best_candidates", box.best, CountArgs, "The fittest evaluated candidates of this target."),
        (
            "recent_failures",
            box.failures,
            CountArgs,
            "The latest failed attempts with why they failed and what fixed them.",
        ),
        ("show_candidate", show_candidate, CandidateArgs, "One candidate's full record and code."),
        (
            "launch_dpo_job",
            box.launch_job,
            LaunchArgs,
            "Train a recorded candidate for real (a GPU DPO job); returns the job id. Idempotent.",
        ),
        ("job_status", box.job_status, JobArgs, "State, metrics and last log lines of a DPO job."),
        ("cancel_job", box.cancel_job, JobArgs, "Cancel a queued or running DPO job."),
    ]
    return [
        StructuredTool.from_function(func=_safe(fn), name=name, description=doc, args_schema=schema)
        for name, fn, schema, doc in specs
    ]
