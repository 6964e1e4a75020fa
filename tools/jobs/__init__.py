"""DPO training jobs: a durable queue, a local GPU/CPU backend and a Ray backend.

- `models.py`   JobSpec (what to train; its hash is the job id), Job, states, resources
- `queue.py`    JobQueue: submit (idempotent), get, list, cancel, logs, metrics, poll, wait
- `store.py`    SQLite (WAL) job table + one folder per job (spec, log, metrics, result)
- `local.py`    admission by free GPU memory / CPU slots, detached runner per job (`runner.py`)
- `ray_backend.py` / `ray_actor.py`   one detached Ray actor per job on a cluster
- `supervise.py`    watches the training process: time limit, cancel, verdict
- `worker.py`   the confined training process (targets.dpo.real), `callbacks.py` its metric stream
- `classify.py` failed:oom | nan | timeout | crash
- `specfile.py` SPEC.toml → JobSpec (the CLI's format)

Nothing heavy is imported here: torch is imported by the worker, and once by `JobQueue.submit` to
validate the training config.
"""

from tools.jobs.models import Job, JobCursor, JobError, JobSpec, JobState, JobUpdate, Resources
from tools.jobs.queue import JobQueue

__all__ = ["Job", "JobCursor", "JobError", "JobQueue", "JobSpec", "JobState", "JobUpdate", "Resources"]
