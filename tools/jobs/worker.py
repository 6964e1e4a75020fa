"""The training process of one job: `python -m tools.jobs.worker JOB_DIR`.

It confines itself first (no network, a read-only file system except the job's folder and the shared
cache, a scrubbed environment, an address-space limit for CPU jobs — `sandbox.confine`), because it runs
model-written code; then trains the candidate with `targets.dpo.real.run_real_dpo` (reference log-probs
from the shared cache), streams metrics through `tools.jobs.callbacks`, and writes its verdict to
result.json. Its stdout and stderr are the job's log. It never decides `timeout` or `cancelled`: its
supervisor (tools/jobs/supervise.py) does, from outside, because a hung candidate cannot report itself.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from tools.jobs.classify import from_exception, from_outcome
from tools.jobs.models import JobSpec, WorkerResult

PR_SET_PDEATHSIG = 1
OFFLINE_ENV = (
    "HF_HUB_OFFLINE",
    "HF_DATASETS_OFFLINE",
    "HF_HUB_DISABLE_TELEMETRY",
    "HF_HUB_DISABLE_PROGRESS_BARS",
)
ENV_CACHE = "DISCO_JOB_CACHE_DIR"
ENV_PARENT = "DISCO_JOB_PARENT"
SUMMARY_KEYS = (
    "device", "train_pairs", "eval_pairs", "steps_per_second", "tokens_per_second", "peak_gpu_memory_gib",
    "final_loss", "eval_reward_margin", "eval_reward_accuracy", "load_seconds", "prepare_seconds",
)  # fmt: skip


def die_with_parent(parent: int) -> None:
    """SIGKILL this process when its supervisor dies: no training may go on unwatched (and hold a GPU)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if parent and os.getppid() != parent:  # the supervisor died before the line above ran
        os._exit(1)


def confine(spec: JobSpec, job_dir: Path, cache: Path) -> list[str]:
    from sandbox.confine import Confinement, confine_current_process

    memory = spec.resources.memory_gb
    conf = Confinement(
        writable=[job_dir, cache],
        memory_mb=int(memory * 1024) if memory and spec.resources.gpus == 0 else None,
    )
    return confine_current_process(conf)


def summary(result: Any) -> dict[str, Any]:
    """The figures a person compares jobs by (the full result stays in metrics.json)."""
    out = {k: getattr(result, k) for k in SUMMARY_KEYS}
    out |= {"steps": result.outcome.steps, "train_seconds": result.outcome.seconds}
    return out


def train(spec: JobSpec, job_dir: Path, cache: Path) -> WorkerResult:
    """Check, load and train the candidate; every way it can end becomes a WorkerResult."""
    from sandbox.policy import check_policy
    from targets.dpo.policy import LOSS_ALLOWED_IMPORTS

    violations = check_policy(spec.candidate_code, LOSS_ALLOWED_IMPORTS)
    if violations:
        reason = "the candidate breaks the sandbox policy: " + "; ".join(v.message for v in violations[:3])
        return WorkerResult(state="failed:crash", reason=reason)

    import torch

    torch.set_num_threads(spec.resources.cpus)
    from targets.dpo.candidate import CandidateError, load_candidate
    from targets.dpo.real import RealDPOError, RealDPOSpec, run_real_dpo
    from tools.jobs.callbacks import StreamMetrics

    real = RealDPOSpec.model_validate(spec.train)
    if real.cache_dir is None:
        real = real.model_copy(update={"cache_dir": cache / "refcache"})
    try:
        candidate = load_candidate(spec.candidate_code)
    except CandidateError as exc:
        return WorkerResult(state="failed:crash", reason=f"the candidate does not load: {exc.message}")
    stream = StreamMetrics(job_dir / "metrics.jsonl", spec.stop_if_loss_above)
    print(f"[job] training {spec.candidate_name} on {real.model} with {real.dataset}", flush=True)
    try:
        result = run_real_dpo(real, candidate, callbacks=[stream])
    except RealDPOError as exc:
        return WorkerResult(state="failed:crash", reason=str(exc))
    except Exception as exc:  # the trainer and the machine: classified (oom or crash), never swallowed
        state, reason, tb = from_exception(exc)
        print(tb, file=sys.stderr, flush=True)
        return WorkerResult(state=state, reason=reason, traceback=tb)
    (job_dir / "metrics.json").write_text(result.model_dump_json(indent=2))
    state, reason, tb = from_outcome(result.outcome.model_dump(mode="json"))
    if state == "succeeded" and stream.stopped:
        state, reason = "failed:nan", stream.stopped
    return WorkerResult(state=state, reason=reason, traceback=tb, metrics=summary(result))


def write_result(job_dir: Path, result: WorkerResult) -> None:
    """Atomically, so that the supervisor reads a whole verdict or none."""
    tmp = job_dir / "result.json.tmp"
    tmp.write_text(result.model_dump_json(indent=2))
    tmp.replace(job_dir / "result.json")


def main(argv: list[str]) -> int:
    job_dir = Path(argv[1]).resolve()
    die_with_parent(int(os.environ.get(ENV_PARENT, "0")))
    spec = JobSpec.model_validate_json((job_dir / "spec.json").read_text())
    cache = Path(os.environ.get(ENV_CACHE) or job_dir / "cache").resolve()
    cache.mkdir(parents=True, exist_ok=True)
    for line in confine(spec, job_dir, cache):
        print(f"[isolation] {line}", flush=True)
    # The data set loader writes an Arrow cache; the home cache is read-only now.
    os.environ["HF_DATASETS_CACHE"] = str(cache / "datasets")
    for var in OFFLINE_ENV:
        os.environ.setdefault(var, "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    t0 = time.perf_counter()
    try:
        result = train(spec, job_dir, cache)
    except Exception as exc:  # a bug of ours or a broken install: still a verdict, with the traceback
        state, reason, tb = from_exception(exc)
        print(tb, file=sys.stderr, flush=True)
        result = WorkerResult(state=state, reason=reason, traceback=tb)
    result.metrics.setdefault("job_seconds", time.perf_counter() - t0)
    write_result(job_dir, result)
    print(f"[job] {result.state}" + (f": {result.reason}" if result.reason else ""), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
