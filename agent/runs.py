"""Run directories: one per run under `<home>/runs/<id>/`, holding everything needed to resume or report.

run.json            what was asked for (target, model, config without secrets)
status.json         where it stands (running, paused, waiting, stopped, finished, failed) and why
checkpoints.sqlite  LangGraph's checkpoints of the loop's state
events.jsonl        the append-only event log
control.jsonl       commands from the person (`disco control`, the TUI)
exchanges.jsonl     every model exchange (and offline proposal), for resume and `--replay`
candidates/<id>/    code, checks, evaluation and the final record of each candidate
runner.lock         held by the process running the loop; a second runner is refused
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field

from agent.models.base import EndpointState
from sandbox.redact import redact, redact_obj

if TYPE_CHECKING:
    from agent.config import RunConfig

StatusState = Literal["created", "running", "paused", "waiting", "stopped", "finished", "failed"]
ACTIVE_STATES: tuple[str, ...] = ("created", "running", "paused", "waiting")
"""States in which a runner should be holding the run; without one the run was interrupted."""
MAX_REASON_CHARS = 4000


class RunError(RuntimeError):
    """A run that cannot be created, found or resumed: one sentence for the person."""


class RunMeta(BaseModel):
    run_id: str
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    target: str
    model: str
    replay_of: str | None = None
    config: dict[str, Any] = Field(default_factory=dict)


"""How the model endpoint answers: "slow" took the request and then sent no token for timeout_s (busy or
stuck, not re-sent); "down" is unreachable or failing (5xx); "rate-limited" answers 429."""


class RunStatus(BaseModel):
    state: StatusState = "created"
    reason: str = ""
    endpoint: EndpointState = "ok"
    """The model endpoint as the runner last found it (slow is not down: a person's remedy differs)."""
    pid: int | None = None
    pid_start: int | None = None
    """The runner's process start time (tools.processes): with `pid`, it survives pid reuse."""
    updated_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    candidates: int = 0
    best_id: str | None = None
    best_fitness: float | None = None
    elapsed_s: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    usd: float = 0.0
    cpu_s: float = 0.0
    """CPU seconds spent evaluating candidates (training, scoring, checks) in this run."""
    gpu_s: float = 0.0
    """GPU seconds of this run's GPU jobs (wall clock × GPUs), for the GPU-hours budget."""


RUN_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
"""A run id names a folder under `runs/`: a slug, so that no id (`../../evil`, `/etc`, `a/b`) reaches
outside it. Candidate ids are `<run id>-NNNN`, so the same holds for them."""


def check_run_id(run_id: str) -> str:
    """`run_id` when it is a safe slug; RunError with one sentence otherwise."""
    if not RUN_ID_PATTERN.fullmatch(run_id):
        raise RunError(
            f"run id {run_id!r} is not allowed: use up to 100 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return run_id


def new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(2)


def write_json_atomically(path: Path, data: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    tmp.replace(path)


class RunDir:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.run_id = root.name

    meta_path = property(lambda self: self.root / "run.json")
    status_path = property(lambda self: self.root / "status.json")
    checkpoints = property(lambda self: self.root / "checkpoints.sqlite")
    events_path = property(lambda self: self.root / "events.jsonl")
    control_path = property(lambda self: self.root / "control.jsonl")
    exchanges_path = property(lambda self: self.root / "exchanges.jsonl")
    lock_path = property(lambda self: self.root / "runner.lock")

    @classmethod
    def create(cls, runs_root: Path, meta: RunMeta) -> RunDir:
        root = runs_root / check_run_id(meta.run_id)
        if root.exists():
            raise RunError(f"run {meta.run_id} already exists; resume it with `disco resume {meta.run_id}`")
        (root / "candidates").mkdir(parents=True)
        run = cls(root)
        write_json_atomically(run.meta_path, redact_obj(meta).model_dump_json(indent=2))
        run.write_status(RunStatus())
        return run

    @classmethod
    def open(cls, runs_root: Path, run_id: str) -> RunDir:
        root = runs_root / check_run_id(run_id)
        if not (root / "run.json").is_file():
            known = ", ".join(sorted(p.parent.name for p in runs_root.glob("*/run.json"))[-5:])
            hint = f" (recent runs: {known})" if known else ""
            raise RunError(f"no run {run_id!r} under {runs_root}{hint}")
        return cls(root)

    def meta(self) -> RunMeta:
        return RunMeta.model_validate_json(self.meta_path.read_text(encoding="utf-8"))

    def status(self) -> RunStatus:
        try:
            return RunStatus.model_validate_json(self.status_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return RunStatus()

    def write_status(self, status: RunStatus) -> None:
        status.updated_at = datetime.now(UTC)
        status.reason = redact(status.reason, MAX_REASON_CHARS)  # may quote an error a candidate caused
        write_json_atomically(self.status_path, status.model_dump_json(indent=2))

    def candidate_dir(self, candidate_id: str) -> Path:
        path = self.root / "candidates" / candidate_id
        path.mkdir(parents=True, exist_ok=True)
        return path

    def write_candidate_file(self, candidate_id: str, name: str, data: str | dict | list) -> Path:
        """Write one file of the candidate's folder. Everything here is the candidate's or quotes it (code,
        check messages, reasons): every string is redacted before it is written."""
        text = redact(data) if isinstance(data, str) else json.dumps(redact_obj(data), indent=2, default=str)
        path = self.candidate_dir(candidate_id) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomically(path, text)
        return path

    def read_candidate_json(self, candidate_id: str, name: str) -> Any | None:
        path = self.root / "candidates" / candidate_id / name
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def runner_alive(self, status: RunStatus | None = None) -> bool:
        """Is the runner named in the status still running? Read-only: it never touches the runner lock,
        so that watching a run cannot make a starting runner think the run is taken."""
        from tools.processes import process_start

        status = status or self.status()
        if status.state not in ACTIVE_STATES or status.pid is None:
            return False
        return process_start(status.pid) == status.pid_start

    def display_state(self, status: RunStatus | None = None) -> str:
        """The state to show: `interrupted` for a run whose status says it runs but whose runner is gone."""
        status = status or self.status()
        if status.state in ACTIVE_STATES and status.state != "created" and not self.runner_alive(status):
            return "interrupted"
        return status.state

    @contextlib.contextmanager
    def runner_lock(self) -> Iterator[None]:
        """Held while a runner drives the loop: two runners on one run would record candidates twice."""
        with self.lock_path.open("a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise RunError(f"run {self.run_id} is already running in another process") from None
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def list_runs(runs_root: Path) -> list[RunDir]:
    if not runs_root.exists():
        return []
    return [RunDir(p.parent) for p in sorted(runs_root.glob("*/run.json"))]


def create_run(runs_root: Path, config: RunConfig, run_id: str, replay_of: str | None = None) -> RunDir:
    """A new run directory holding the config (without secrets)."""
    model = config.models.meta.model
    if replay_of:
        model = f"replay:{replay_of}"
    safe = config.model_dump(mode="json")
    for role in safe.get("models", {}).values():
        role.pop("api_key", None)
    meta = RunMeta(run_id=run_id, target=config.target, model=model, replay_of=replay_of, config=safe)
    return RunDir.create(runs_root, meta)
