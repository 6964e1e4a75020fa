"""The local backend's per-job supervisor process: `python -m tools.jobs.runner ROOT JOB_ID`.

Started detached (its own session) by whichever process scheduled the job, so it outlives the agent or
CLI that submitted it: it supervises the training, records the verdict in the store, and then starts
whatever queued jobs now fit in the resources it frees — the queue moves on with nobody watching.
"""

from __future__ import annotations

import signal
import sys
import traceback
from pathlib import Path

from tools.jobs.local import LocalBackend, LocalSettings
from tools.jobs.store import JobStore
from tools.jobs.supervise import supervise, worker_env


def run(root: Path, job_id: str) -> None:
    store = JobStore(root)
    # Blocks until the scheduler that launched this process has committed the job as running.
    with store.transaction():
        job = store.require(job_id)
    if job.state != "running" or job.resources is None:
        return  # cancelled before it could start, or not ours
    settings = LocalSettings.model_validate(store.get_setting("local") or {})
    stop = {"flag": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(flag=True))
    job_dir = store.job_dir(job_id)
    store.append_log(
        job_id, f"running on {job.resources.host}: {describe(job.resources.gpus, job.resources.cpus)}"
    )
    result = supervise(
        job_dir,
        job.spec,
        worker_env(job.resources.gpus, settings.cache_path(store.root)),
        cancelled=lambda: store.cancel_requested(job_id),
        stopping=lambda: stop["flag"],
    )
    with store.transaction() as db:
        store.finish(db, job_id, result.state, result.reason, result.traceback, result.metrics)
    LocalBackend(store, settings).schedule()


def describe(gpus: list[str], cpus: int) -> str:
    where = f"GPU {', '.join(gpus)}" if gpus else "CPU"
    return f"{where}, {cpus} core(s)"


def main(argv: list[str]) -> int:
    root, job_id = Path(argv[1]), argv[2]
    try:
        run(root, job_id)
    except Exception:
        # A bug of ours: the job must not stay 'running' forever; the traceback goes to its log.
        traceback.print_exc()
        store = JobStore(root)
        with store.transaction() as db:
            store.finish(
                db, job_id, "failed:crash", "the job's supervisor failed", traceback.format_exc()[-4000:]
            )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
