"""The E2B backend: E2B's cloud sandboxes through e2b-code-interpreter (`E2B_API_KEY`).

One E2B sandbox per run, created without internet access and killed afterwards. E2B runs the code in
its own VM, so time and output are bounded here, while memory and CPU are the template's (a run says
so in `isolation`). `call` requests need a template with disco installed (build one from
sandbox/Dockerfile with `e2b template build`).
"""

from __future__ import annotations

import json
import os
import shlex
import threading
import time
from typing import Any

import e2b
import httpx
from e2b_code_interpreter import Sandbox as E2BClient
from e2b_code_interpreter.models import Execution
from pydantic import BaseModel

from sandbox.base import Killed, OutputCapture, RawOutcome, finish, policy_refusal
from sandbox.models import BackendReport, SandboxRequest, SandboxResult
from sandbox.registry import SandboxUnavailable

WORKDIR = "/home/user/work"
VALUE_MARKER = "DISCO-VALUE:"
ISOLATION = [
    "network: none (allow_internet_access=False: all egress denied)",
    "file system: E2B micro-VM of its own, nothing of this host in it, discarded after the run",
    "limits: wall clock and output here; memory, CPU and processes are the template's",
    "environment: only the request's",
]
CANNOT = [
    "memory, CPU and process limits are the E2B template's, not the request's",
    "inside its VM the code runs as the template's user with the template's capabilities: no seccomp "
    "filter, read-only root or allow-list of disco's (the VM boundary is the isolation)",
    "no shared dirs: a request that needs one (the ADAS proxy's socket) is refused",
]
"""What E2B's API does not let disco enforce (`disco sandbox doctor` says so)."""


class E2BConfig(BaseModel):
    """Settings of the E2B backend."""

    api_key: str | None = None
    """Default: $E2B_API_KEY."""
    template: str | None = None
    """E2B template (default: E2B's code-interpreter template)."""
    api_url: str | None = None
    """Override E2B's API address (self-hosted E2B)."""


class E2BSandbox:
    name = "e2b"

    def __init__(self, config: E2BConfig | None = None, **settings: Any) -> None:
        self.config = config or E2BConfig(**settings)
        self.api_key = self.config.api_key or os.environ.get("E2B_API_KEY")
        if not self.api_key:
            raise SandboxUnavailable("the e2b sandbox needs an API key: set E2B_API_KEY")

    def _create(self, timeout_s: float, envs: dict[str, str]) -> E2BClient:
        opts: dict[str, Any] = {"api_key": self.api_key}
        if self.config.api_url:
            opts["api_url"] = self.config.api_url
        try:
            return E2BClient.create(
                template=self.config.template,
                timeout=int(timeout_s) + 30,
                envs=envs,
                allow_internet_access=False,
                **opts,
            )
        except e2b.AuthenticationException:
            raise SandboxUnavailable("E2B refused the API key in E2B_API_KEY") from None
        except (e2b.SandboxException, httpx.HTTPError, OSError) as exc:
            where = self.config.api_url or "E2B"
            raise SandboxUnavailable(f"cannot create an E2B sandbox at {where}: {exc}") from None

    def run(self, request: SandboxRequest, cancel: threading.Event | None = None) -> SandboxResult:
        refused = policy_refusal(request, self.name)
        if refused is not None:
            return refused
        if request.shared_dirs:
            raise SandboxUnavailable(
                "the e2b sandbox runs in a remote VM and cannot reach a local directory or socket "
                "(shared_dirs); use the local or docker backend"
            )
        limits = request.limits
        begin = time.monotonic()
        client = self._create(limits.timeout_s, request.env)
        done = threading.Event()
        killed: list[str] = []

        def watch() -> None:  # cancellation kills the remote sandbox, which ends run_code
            while not done.wait(0.1):
                if cancel is not None and cancel.is_set():
                    killed.append("cancelled")
                    client.kill()
                    return

        threading.Thread(target=watch, daemon=True).start()
        try:
            for name, content in request.files.items():
                client.files.write(f"{WORKDIR}/{name}", content)
            try:
                execution = client.run_code(to_python(request), envs=request.env, timeout=limits.timeout_s)
                raw = execution_outcome(execution, time.monotonic() - begin, limits.max_output_bytes)
            except e2b.TimeoutException:
                raw = _empty(time.monotonic() - begin, limits.max_output_bytes, "timeout")
            except e2b.SandboxException:
                if not killed:
                    raise
                raw = _empty(time.monotonic() - begin, limits.max_output_bytes, "cancelled")
            raw.files = {
                pattern: bytes(client.files.read(f"{WORKDIR}/{pattern}", format="bytes"))
                for pattern in request.return_files
                if "*" not in pattern
            }
        finally:
            done.set()
            if not killed:
                client.kill()
        return finish(raw, limits, self.name, list(ISOLATION))

    def doctor(self) -> BackendReport:
        return BackendReport(
            backend=self.name,
            available=True,
            detail="; ".join(ISOLATION),
            network_isolated=True,
            filesystem_readonly=False,
            pid_namespace=True,
            limits_enforced=["wall clock", "output"],
            warnings=list(CANNOT),
        )

    def close(self) -> None:
        return None


def to_python(request: SandboxRequest) -> str:
    """The request as one Python cell for E2B's interpreter."""
    head = f"import os\nos.makedirs({WORKDIR!r}, exist_ok=True)\nos.chdir({WORKDIR!r})\n"
    if request.code is not None:
        return head + request.code
    if request.command is not None:
        cmd = shlex.join(request.command)
        return head + f"import subprocess, sys\nsys.exit(subprocess.run({cmd!r}, shell=True).returncode)\n"
    module, _, name = (request.call or "").partition(":")
    return head + (
        # A user target's package travels in the request's files (targets.sources), like the worker's.
        f"import json, importlib, sys\nsys.path.append({WORKDIR!r})\n"
        f"value = getattr(importlib.import_module({module!r}), {name!r})"
        f"(**json.loads({json.dumps(request.kwargs)!r}))\n"
        "value = value.model_dump(mode='json') if hasattr(value, 'model_dump') else value\n"
        f"print({VALUE_MARKER!r} + json.dumps(value))\n"
    )


def execution_outcome(execution: Execution, duration_s: float, cap: int) -> RawOutcome:
    """Translate E2B's Execution (logs, error) into the shared raw outcome."""
    out, err = OutputCapture(cap), OutputCapture(cap)
    value = None
    for line in execution.logs.stdout:
        if line.startswith(VALUE_MARKER):
            value = json.loads(line[len(VALUE_MARKER) :])
            continue
        out.feed(line.encode())
    for line in execution.logs.stderr:
        err.feed(line.encode())
    code = 0
    if execution.error is not None:
        exit_code = _exit_status(execution.error.name, execution.error.value)
        if exit_code is None:
            error = execution.error
            err.feed(f"{error.traceback or ''}\n{error.name}: {error.value}\n".encode())
            code = 1
        else:
            code = exit_code
    return RawOutcome(exit_code=code, stdout=out, stderr=err, duration_s=duration_s, value=value)


def _exit_status(name: str, value: str) -> int | None:
    """SystemExit(n) is an exit status, not an error."""
    if name != "SystemExit":
        return None
    try:
        return int(value or 0)
    except ValueError:
        return 1


def _empty(duration_s: float, cap: int, killed: Killed) -> RawOutcome:
    return RawOutcome(
        exit_code=None,
        stdout=OutputCapture(cap),
        stderr=OutputCapture(cap),
        duration_s=duration_s,
        killed=killed,
    )
