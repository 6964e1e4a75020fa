"""The data of a DPO training job: what to run (`JobSpec`), what became of it (`Job`), and the small
records that cross process and machine boundaries (a worker's result, a resource assignment).

Pydantic models, because every one of them is written to disk or sent through Ray. This module imports
nothing heavy: `disco jobs list` must not pay for torch. The training config (`JobSpec.train`) is kept as
JSON here and validated against `targets.dpo.real.RealDPOSpec` when a job is submitted (see
`JobSpec.normalized`), which is the one place that imports the trainer.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

JobState = Literal[
    "queued",
    "running",
    "succeeded",
    "failed:oom",
    "failed:nan",
    "failed:timeout",
    "failed:crash",
    "cancelled",
]
TERMINAL: frozenset[str] = frozenset(s for s in get_args(JobState) if s not in ("queued", "running"))
FailedState = Literal["failed:oom", "failed:nan", "failed:timeout", "failed:crash"]
BackendName = Literal["local", "ray"]
BACKENDS: tuple[str, ...] = get_args(BackendName)


class JobError(Exception):
    """A problem a person (or the agent) caused and can fix — a bad spec, an unknown id, no GPU — told in
    one sentence. Candidate failures are never raised: they are a job's final state."""


class Resources(BaseModel):
    """What one job needs; the local backend admits it when the machine has that much free."""

    model_config = ConfigDict(extra="forbid")

    gpus: int = Field(default=0, ge=0)
    """GPUs for the job; 0 trains on the CPU (and hides every GPU from the job)."""
    gpu_memory_gb: float | None = Field(default=None, gt=0)
    """Peak memory the job needs on each of its GPUs; several jobs share a GPU when their sums fit.
    None takes each GPU whole."""
    cpus: int = Field(default=1, ge=1)
    """CPU cores (torch threads) of the job; CPU jobs run while their sum stays within the CPU slots."""
    memory_gb: float | None = Field(default=None, gt=0)
    """Address-space limit of a CPU job (RLIMIT_AS, counted from ~2.5 GB of imports); an allocation beyond
    it fails and the job ends as failed:oom. Not applied to GPU jobs: CUDA reserves huge address ranges."""


class JobSpec(BaseModel):
    """One training run of one candidate loss. Its id is a hash of its content, so submitting the same
    spec twice (e.g. after the agent restarted) finds the first job instead of launching a second."""

    model_config = ConfigDict(extra="forbid")

    candidate_name: str = Field(min_length=1, max_length=200)
    candidate_code: str = Field(min_length=1)
    """The loss function's source, in the target's candidate form (see targets/dpo/candidate.py)."""
    target: Literal["dpo"] = "dpo"
    train: dict[str, Any]
    """A `targets.dpo.real.RealDPOSpec` as JSON: model, data set, hyperparameters (its `train` key).
    Its device follows `resources`: CUDA when the job has GPUs, else the CPU."""
    resources: Resources = Field(default_factory=Resources)
    time_limit_s: float = Field(default=3600.0, gt=0)
    """Wall clock of the whole job (start-up, reference log-probs, training, scoring); then failed:timeout."""
    stop_if_loss_above: float | None = None
    """A finite training loss above this is hopeless: stop early, failed:nan (a non-finite loss or gradient
    always stops the job). None: only non-finite values stop it."""
    backend: BackendName | None = None
    """Where to run; None takes the queue's default. Not part of the id: it says where, not what."""

    def job_id(self) -> str:
        """`job-` and 16 hex digits of the SHA-256 of the canonical JSON of everything but `backend`."""
        body = self.model_dump(mode="json", exclude={"backend"})
        digest = hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
        return f"job-{digest[:16]}"

    def normalized(self) -> JobSpec:
        """The spec with `train` validated and its defaults filled in (so that leaving a default out and
        writing it down give the same id). Imports the trainer; raises JobError with one sentence."""
        from pydantic import ValidationError

        from targets.dpo.real import RealDPOSpec

        try:
            real = RealDPOSpec.model_validate(self.train)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "train"
            raise JobError(f"bad training config train.{where}: {first['msg']}") from None
        # The resources decide the device: RealDPOSpec defaults to CUDA, a CPU job must not inherit that.
        written = (self.train.get("train") or {}).get("device", "auto")
        device = "cuda" if self.resources.gpus else "cpu"
        if written not in ("auto", device):
            raise JobError(
                f"the training config asks for device {written!r} but resources.gpus is {self.resources.gpus}"
            )
        real.train.device = device
        return self.model_copy(update={"train": real.model_dump(mode="json")})


class Assignment(BaseModel):
    """Where a running job was placed: which GPUs (by UUID, so that device numbering cannot mislead) and
    how much it holds of each resource; kept in the store so that later admissions count it."""

    gpus: list[str] = Field(default_factory=list)
    gpu_memory_gb: float | None = None
    """Memory reserved per GPU; None when the GPUs are held whole."""
    cpus: int = 0
    host: str = ""
    node: str | None = None
    """The Ray node that ran the job, when it ran on Ray."""


class WorkerResult(BaseModel):
    """What the training process (tools/jobs/worker.py) leaves in result.json; the supervisor adds the
    states only it can know (timeout, cancelled, killed)."""

    state: JobState
    reason: str = ""
    traceback: str | None = None
    metrics: dict[str, Any] = Field(default_factory=dict)


class Job(BaseModel):
    """A job as the store knows it."""

    id: str
    spec: JobSpec
    backend: BackendName
    state: JobState
    reason: str = ""
    """One sentence for failed and cancelled jobs (what went wrong, which limit, at which step)."""
    traceback: str | None = None
    """The tail of the traceback, for failed:crash."""
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    metrics: dict[str, Any] = Field(default_factory=dict)
    """Final figures of a finished job (tokens/s, final loss, held-out reward margin and accuracy...)."""
    artefacts: dict[str, str] = Field(default_factory=dict)
    """Name → path of the files the job left (log, metrics.jsonl, metrics.json, result.json)."""
    resources: Assignment | None = None
    """Where it ran (None while queued)."""
    launches: int = 0
    """How many times it was started: 1 for any job that ran; never more (idempotent submission)."""

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL

    @property
    def seconds(self) -> float | None:
        if self.started_at is None:
            return None
        import time

        return (self.finished_at or time.time()) - self.started_at


class JobCursor(BaseModel):
    """Where a reader stopped in a job's log and metrics stream (byte offsets)."""

    log: int = 0
    metrics: int = 0


class JobUpdate(BaseModel):
    """What changed since a cursor: the agent copies these into its run's event log."""

    job: Job
    log_lines: list[str]
    metrics: list[dict[str, Any]]
    cursor: JobCursor
