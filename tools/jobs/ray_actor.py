"""The Ray side of a job: a detached, named actor that supervises the training on its node.

Created by `RayBackend` with the job's resources (CPUs, GPUs, memory); Ray places it on a node that has
them and sets `CUDA_VISIBLE_DEVICES`. The actor keeps the job's files in a folder on that node and runs
the same supervisor as the local backend in a thread. It is detached, so it outlives the driver that
created it: the agent may restart and find it again by name (the job id). The agent pulls the log,
metrics and verdict through `poll`, and kills the actor once it has the verdict.

A plain class, made a Ray actor by `ray.remote(JobActor)` in tools/jobs/ray_backend.py, so that this
module imports without Ray.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

from tools.jobs.models import JobSpec, WorkerResult
from tools.jobs.streams import read_lines
from tools.jobs.supervise import supervise, worker_env


class JobActor:
    """Runs one job on the node Ray chose; every method returns plain JSON-able data."""

    def __init__(self, job_id: str, spec_json: str, node_dir: str, cache_dir: str | None) -> None:
        self.job_id = job_id
        self.spec = JobSpec.model_validate_json(spec_json)
        self.dir = Path(node_dir).expanduser() / job_id
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "spec.json").write_text(spec_json)
        self.cache = Path(cache_dir).expanduser() if cache_dir else Path(node_dir).expanduser() / "cache"
        self.started_at = time.time()
        self.host = socket.gethostname()
        self.gpus = os.environ.get("CUDA_VISIBLE_DEVICES", "")
        self._cancel = threading.Event()
        self._result: WorkerResult | None = None
        self._thread = threading.Thread(target=self._run, name=f"disco-{job_id}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        # A CPU job sees no GPU even on a GPU node; a GPU job sees the ones Ray gave the actor.
        gpus = None if self.spec.resources.gpus else []
        try:
            result = supervise(
                self.dir, self.spec, worker_env(gpus, self.cache), cancelled=self._cancel.is_set
            )
        except Exception as exc:  # a bug of ours must still end the job, not leave it running forever
            result = WorkerResult(state="failed:crash", reason=f"the job's Ray supervisor failed: {exc!r}")
        self._result = result

    def poll(self, log_offset: int, metrics_offset: int) -> dict[str, Any]:
        """New log and metrics lines since the offsets, and the verdict once there is one."""
        done = self._result is not None  # read first: the files are complete when the verdict is set
        lines, log_next = read_lines(self.dir / "log", log_offset)
        metrics, metrics_next = read_lines(self.dir / "metrics.jsonl", metrics_offset)
        out: dict[str, Any] = {
            "started_at": self.started_at,
            "host": self.host,
            "gpus": self.gpus,
            "log": lines,
            "log_offset": log_next,
            "metrics": metrics,
            "metrics_offset": metrics_next,
            "result": None,
            "final_metrics": None,
        }
        caught_up = log_next == _size(self.dir / "log") and metrics_next == _size(self.dir / "metrics.jsonl")
        if done and caught_up and self._result is not None:
            out["result"] = self._result.model_dump(mode="json")
            final = self.dir / "metrics.json"
            out["final_metrics"] = final.read_text() if final.exists() else None
        return out

    def cancel(self) -> None:
        self._cancel.set()


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0
