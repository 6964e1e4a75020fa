"""The candidate record: what memory keeps of every attempt, whatever its fate.

This is the DESIGN contract of a candidate. The agent creates records; memory stores, searches and
exports them; a record round-trips through JSON unchanged (the JSONL export is one record per line).
"""

from __future__ import annotations

import ast
import hashlib
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

from targets.base import Interval
from targets.results import CheckResult

Status = Literal["proposed", "rejected", "check_failed", "failed", "evaluated", "baseline"]
"""`baseline`: a published method of the target (the DPO zoo), put in memory so that the novelty gate and
the prompts know it is no discovery (memory/baselines.py); never ranked, never a failure."""
STATUSES: tuple[Status, ...] = ("proposed", "rejected", "check_failed", "failed", "evaluated", "baseline")
FAILED_STATUSES: tuple[Status, ...] = ("rejected", "check_failed", "failed")


BASELINE_RUN = "baseline"
"""The run id of baseline records (ids `baseline-<target>-<name>`: memory/baselines.py)."""


def is_baseline_id(candidate_id: str | None) -> bool:
    return bool(candidate_id) and str(candidate_id).startswith(f"{BASELINE_RUN}-")


def code_hash(code: str) -> str:
    """sha256 of the code with line endings and trailing whitespace normalised.

    Two copies that differ only in how an editor saved them are the same candidate; anything else
    (a comment, a renamed variable) changes the hash and is left to the embeddings and fingerprints.
    """
    lines = [line.rstrip() for line in code.replace("\r\n", "\n").strip("\n").split("\n")]
    return hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()


def normalise_code(code: str) -> str:
    """Python code as the AST prints it: comments, docstrings and layout gone (what the code space embeds).

    A changed comment or a reformatted file is then the same text, and the embedding spends its 256
    tokens on the computation rather than on a citation line. Code that does not parse is kept as is.
    """
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return code.strip()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (
            isinstance(node, ast.Module | ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
            and isinstance(body, list)
            and len(body) > 1
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            node.body = body[1:]
    return ast.unparse(tree)


def derive_id(target: str, run_id: str, code: str) -> str:
    """A stable id for a candidate that came without one, so that recording it twice keeps one."""
    digest = hashlib.sha256(f"{target}\0{run_id}\0{code_hash(code)}".encode()).hexdigest()
    return f"c-{digest[:16]}"


def _now() -> datetime:
    return datetime.now(UTC)


Fitness = Interval
"""A candidate's fitness with its confidence interval: the one Interval (targets.base), by its role."""


class VsBaseline(BaseModel):
    """The candidate's difference to its target's baseline on seeds that chose nothing, with its interval
    and n (agent.fresh.Fresh has these fields): the score memory ranks by and prompts show."""

    diff: float
    ci_low: float
    ci_high: float
    n_seeds: int


class Cost(BaseModel):
    """What producing the candidate cost: the model that wrote it and the tokens it used."""

    model: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    usd: float | None = None


class CandidateRecord(BaseModel):
    """One attempt of one run: proposal, checks, repairs, evaluation and cost."""

    id: str = ""
    """Unique id; derived from (target, run id, code) when left empty."""
    run_id: str = ""
    target: str
    """The target's short name, e.g. `dpo`; novelty and rankings are per target."""
    name: str = ""
    thought: str = ""
    """The model's reasoning behind the candidate (what it tried and why)."""
    code: str
    code_hash: str = ""
    """Filled from `code` when empty; see `code_hash()`."""
    parent_ids: list[str] = Field(default_factory=list)
    """Candidates this one was derived from; a repair names the failed attempt it fixes."""
    status: Status = "proposed"
    checks: list[CheckResult] = Field(default_factory=list)
    error: str | None = None
    """Why the candidate failed or was rejected, in words a model can act on (traceback included)."""
    repair_count: int = 0
    metrics: dict[str, float] = Field(default_factory=dict)
    fitness: Fitness | None = None
    """The evaluation's fitness on its default seeds (for DPO, those that chose β: in-sample)."""
    vs_baseline: VsBaseline | None = None
    """The fresh-seed difference to the baseline, when the target has one: the score ranked by."""
    verdict: str | None = None
    """The run's evidence rule on an evaluated candidate: first | best | promising | not_better (a
    `best` beat the incumbent of its run on a paired bootstrap over seeds; see docs/evidence.md)."""
    cost: Cost = Field(default_factory=Cost)
    source: str = "disco"
    """Where the record came from: `disco`, or the archive format it was imported from."""
    generation: int | None = None
    created_at: datetime = Field(default_factory=_now)
    updated_at: datetime = Field(default_factory=_now)

    @model_validator(mode="after")
    def _fill_derived(self) -> CandidateRecord:
        if not self.code_hash:
            self.code_hash = code_hash(self.code)
        if not self.id:
            self.id = derive_id(self.target, self.run_id, self.code)
        return self

    def meaning_text(self) -> str:
        """What the meaning space embeds: the name and the thought (the code when there is no thought)."""
        parts = [self.name.replace("_", " ").strip(), self.thought.strip()]
        text = "\n".join(p for p in parts if p)
        return text if self.thought.strip() else f"{text}\n{self.code}".strip()

    def failure_text(self) -> str:
        """The reason the candidate failed: its error, else the messages of its failed checks."""
        if self.error:
            return self.error
        failed = [f"{c.name}: {c.message}" for c in self.checks if not c.passed and c.level == "error"]
        return "; ".join(failed)

    def filter_fields(self) -> dict[str, Any]:
        """The fields Chroma filters on (metadata values must be scalars or lists; no None)."""
        out: dict[str, Any] = {
            "target": self.target,
            "run_id": self.run_id,
            "status": self.status,
            "name": self.name,
            "code_hash": self.code_hash,
            "source": self.source,
            "created_at": self.created_at.timestamp(),
            "updated_at": self.updated_at.timestamp(),
            "has_fitness": self.fitness is not None,
        }
        if self.parent_ids:
            out["parent_ids"] = list(self.parent_ids)
        if self.fitness is not None:
            out["fitness"] = self.fitness.value
        if self.vs_baseline is not None:
            vs = self.vs_baseline
            out |= {"vs_diff": vs.diff, "vs_low": vs.ci_low, "vs_high": vs.ci_high, "vs_n": vs.n_seeds}
        return out


class PastAttempt(BaseModel):
    """A candidate of memory as a model reads it: in a prompt (agent.context clips and redacts it) and in
    a tool's result (`brief`). The one such projection; its fitness is an Interval like everywhere."""

    id: str
    name: str
    status: str
    fitness: Fitness | None = None
    """On the seeds that chose it (in-sample), with its 95% interval."""
    vs_baseline: VsBaseline | None = None
    """The difference to the target's baseline on seeds that chose nothing: the score ranked by."""
    thought: str = ""
    code: str = ""
    error: str | None = None
    """Why it failed (its error or failed checks)."""
    fixed_by: str | None = None
    """Name of the later candidate that repaired this failure, when one did (prompts only)."""
    similarity: float | None = None
    """Cosine similarity to the search query, when memory search found it."""

    @classmethod
    def brief(
        cls, rec: CandidateRecord, similarity: float | None = None, code_chars: int = 1500
    ) -> PastAttempt:
        """The record cut to what a model needs to read in a tool result."""
        return cls(
            id=rec.id,
            name=rec.name,
            status=rec.status,
            fitness=rec.fitness,
            vs_baseline=rec.vs_baseline,
            error=rec.failure_text() or None,
            thought=rec.thought[:600],
            code=rec.code[:code_chars],
            similarity=similarity,
        )
