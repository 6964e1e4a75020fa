"""The data every sandbox backend shares: what to run, within which limits, and what happened.

Pydantic models because they cross process and machine boundaries (CLI JSON, a container, E2B).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from sandbox.policy import PolicyViolation

Status = Literal["ok", "error", "timeout", "oom", "killed", "policy"]
"""ok: exited 0. error: exited non-zero. timeout: wall clock or CPU time ran out. oom: the memory limit
was hit. killed: ended by a signal, by the output limit or by cancellation. policy: refused before
anything ran (static policy)."""

RESULT_FILE = ".disco-result.json"
"""Where a `call` request's return value is written inside the work dir (JSON)."""


class SandboxLimits(BaseModel):
    """Bounds on one run. Every backend enforces each of them or says in `SandboxResult.isolation` that
    it could not."""

    model_config = ConfigDict(frozen=True)

    timeout_s: float = Field(default=30.0, gt=0)
    """Wall clock for the whole run; the whole process tree is SIGKILLed when it is over."""
    cpu_s: float | None = Field(default=None, gt=0)
    """CPU seconds (RLIMIT_CPU); default: the wall-clock timeout plus one second."""
    memory_mb: int = Field(default=2048, ge=64)
    """Address space (local: RLIMIT_AS, counted from the warm worker's imports) or memory (Docker)."""
    max_processes: int = Field(default=64, ge=1)
    """Processes and threads of the sandbox's uid (RLIMIT_NPROC; Docker: pids_limit)."""
    max_open_files: int = Field(default=256, ge=16)
    max_file_mb: int = Field(default=64, ge=1)
    """Largest file the code may write (RLIMIT_FSIZE)."""
    max_output_bytes: int = Field(default=64_000, ge=1024)
    """stdout and stderr are each kept to this many bytes (head and tail); the rest is dropped."""
    output_kill_bytes: int = Field(default=16_000_000, ge=1024)
    """A run that writes more than this in total is killed (a flood of output)."""
    gpus: int = Field(default=0, ge=0)
    """GPUs to request (Docker device_requests); the local backend leaves visibility to the host."""

    @property
    def cpu_seconds(self) -> float:
        return self.cpu_s if self.cpu_s is not None else self.timeout_s + 1.0


class SandboxRequest(BaseModel):
    """One run: exactly one of `code` (Python source), `command` (argv) or `call` ("module:function"
    called with `kwargs`, its JSON-able return value coming back as `SandboxResult.value`)."""

    code: str | None = None
    command: list[str] | None = None
    call: str | None = None
    kwargs: dict[str, Any] = Field(default_factory=dict)
    files: dict[str, str | bytes] = Field(default_factory=dict)
    """Written into the private work dir before the run (relative paths only)."""
    return_files: list[str] = Field(default_factory=list)
    """Glob patterns, relative to the work dir, of files to bring back."""
    allowed_imports: frozenset[str] | None = None
    """When set, `code` must pass `sandbox.policy.check_policy` with this allow-list or nothing runs."""
    preload: tuple[str, ...] = ()
    """Modules a warm worker imports before the code arrives (e.g. torch): paid once per worker."""
    env: dict[str, str] = Field(default_factory=dict)
    """Extra environment; nothing from the caller's environment reaches the code otherwise."""
    shared_dirs: tuple[str, ...] = ()
    """Host directories bound read-write at the same path (absolute paths), e.g. one holding the Unix
    socket of a proxy in the caller's process: the only way out of a sandbox without network. Backends
    that cannot bind a host directory (E2B) refuse such a request."""
    limits: SandboxLimits = Field(default_factory=SandboxLimits)

    @model_validator(mode="after")
    def _one_kind(self) -> SandboxRequest:
        kinds = [k for k in ("code", "command", "call") if getattr(self, k)]
        if len(kinds) != 1:
            raise ValueError("a sandbox request needs exactly one of code, command or call")
        if self.call and ":" not in self.call:
            raise ValueError("call must be 'module:function'")
        for name in self.files:
            if name.startswith("/") or ".." in name.split("/"):
                raise ValueError(f"file name {name!r} must be relative and stay inside the work dir")
        for path in self.shared_dirs:
            if not path.startswith("/") or ".." in path.split("/"):
                raise ValueError(f"shared dir {path!r} must be an absolute path without '..'")
        return self

    @property
    def kind(self) -> Literal["code", "command", "call"]:
        return "code" if self.code else "command" if self.command else "call"


class SandboxResult(BaseModel):
    """What happened, filled the same way by every backend (see `sandbox.base.finish`)."""

    model_config = ConfigDict(ser_json_bytes="base64", val_json_bytes="base64")

    status: Status
    exit_code: int | None = None
    """The process's exit status; negative for a signal (-9: SIGKILL), None when nothing ran."""
    stdout: str = ""
    stderr: str = ""
    duration_s: float = 0.0
    peak_memory_mb: float | None = None
    reason: str = ""
    """One sentence on why the status is what it is (which limit, which signal, which rule)."""
    backend: str = ""
    isolation: list[str] = Field(default_factory=list)
    """What this run was isolated by, and what was unavailable, in words."""
    policy: list[PolicyViolation] = Field(default_factory=list)
    files: dict[str, bytes] = Field(default_factory=dict)
    value: Any = None
    """The return value of a `call` request (JSON), when it returned."""

    def summary(self) -> dict[str, Any]:
        """The CLI's JSON shape."""
        keys = ("status", "exit_code", "stdout", "stderr", "duration_s", "peak_memory_mb", "reason")
        return {k: getattr(self, k) for k in keys}


class BackendReport(BaseModel):
    """What a backend achieves on this host (`disco sandbox doctor`)."""

    backend: str
    available: bool
    detail: str = ""
    """Why it is unavailable, or how it isolates."""
    network_isolated: bool = False
    filesystem_readonly: bool = False
    pid_namespace: bool = False
    separate_uid: bool = False
    limits_enforced: list[str] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
