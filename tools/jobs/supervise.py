"""Run one job's training process and watch it from outside, on whatever machine the backend chose.

The same supervisor serves both backends: the local runner process (tools/jobs/runner.py) and the Ray
actor (tools/jobs/ray_actor.py). It starts `python -m tools.jobs.worker` in its own session, with its
stdout and stderr appended to the job's log, then polls: a cancel request or the end of the time limit
kills the whole process group. The worker's own verdict (result.json) wins whenever it wrote one; a
process that died without one is classified from how it ended (tools/jobs/classify.py).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from tools.jobs.classify import from_exit
from tools.jobs.models import JobSpec, WorkerResult
from tools.jobs.streams import tail
from tools.jobs.worker import ENV_CACHE, ENV_PARENT

REPO_ROOT = Path(__file__).resolve().parents[2]
POLL_S = 0.25


def worker_env(gpus: list[str] | None, cache_dir: Path) -> dict[str, str]:
    """The training process's environment: only the GPUs it was given (`[]` hides them all; None keeps
    the inherited `CUDA_VISIBLE_DEVICES`, which Ray has set), numbered as nvidia-smi numbers them,
    offline Hugging Face libraries, and the repository importable."""
    env = dict(os.environ)
    if gpus is not None:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(gpus)
    env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
    env[ENV_PARENT] = str(os.getpid())
    env[ENV_CACHE] = str(cache_dir)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HF_HUB_DISABLE_TELEMETRY"):
        env.setdefault(var, "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    return env


def _read_result(job_dir: Path) -> WorkerResult | None:
    path = job_dir / "result.json"
    try:
        return WorkerResult.model_validate_json(path.read_text())
    except (FileNotFoundError, ValueError):
        return None


def supervise(
    job_dir: Path,
    spec: JobSpec,
    env: dict[str, str],
    cancelled: Callable[[], bool],
    stopping: Callable[[], bool] = lambda: False,
    on_start: Callable[[int], None] | None = None,
) -> WorkerResult:
    """Train the job in `job_dir` (which holds spec.json) and return its verdict; never raises for
    anything the job does. `cancelled` and `stopping` are polled; `on_start` gets the worker's pid."""
    (job_dir / "result.json").unlink(missing_ok=True)
    log = open(job_dir / "log", "ab")  # noqa: SIM115 — the child writes into it for its whole life
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tools.jobs.worker", str(job_dir)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=job_dir,
            start_new_session=True,  # one process group to kill, away from the supervisor's terminal
        )
    except OSError as exc:
        log.close()
        return WorkerResult(state="failed:crash", reason=f"the training process could not start: {exc}")
    if on_start is not None:
        on_start(proc.pid)
    deadline = time.monotonic() + spec.time_limit_s
    killed_for: str | None = None
    while proc.poll() is None:
        time.sleep(POLL_S)
        if cancelled():
            killed_for = "cancel"
        elif stopping():
            killed_for = "shutdown"
        elif time.monotonic() > deadline:
            killed_for = "timeout"
        if killed_for is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            break
    log.close()
    result = _read_result(job_dir)
    if result is not None:
        return result
    state, reason = from_exit(proc.returncode, killed_for, spec.time_limit_s)
    traceback = tail(job_dir / "log") if state == "failed:crash" else None
    return WorkerResult(state=state, reason=reason, traceback=traceback)
