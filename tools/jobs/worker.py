"""The training process of one job: `python -m tools.jobs.worker JOB_DIR`.

It is trusted: it never runs candidate code. It confines itself first (no network, a read-only file
system except the job's folder and the shared cache, a scrubbed environment, an address-space limit for
CPU jobs — `sandbox.confine`), checks the candidate against the static policy, then runs
`targets.dpo.real.run_real_dpo`: it loads the model and data and prepares the reference log-probs (the
only writer of the shared cache), a jailed child forked from it trains the candidate and hands back its
weights, and it scores them itself. While the child trains, `tools.jobs.relay` copies its output into the
job's log and its metrics into metrics.jsonl; the verdict goes to result.json, which only this process
writes. It never decides `timeout` or `cancelled`: its supervisor (tools/jobs/supervise.py) does, from
outside, because a hung job cannot report itself.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any

from tools.jobs.classify import from_child, from_exception, from_outcome, tail
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
WORK_DIR = "work"
"""The job's working folder: the child's scratch dir (the only place it can write) and prepared data."""
METRICS = "metrics.jsonl"
CHILD_GRACE_S = 30.0
SUMMARY_KEYS = (
    "device", "train_pairs", "eval_pairs", "steps_per_second", "tokens_per_second", "peak_gpu_memory_gib",
    "final_loss", "eval_reward_margin", "eval_reward_accuracy", "load_seconds", "prepare_seconds",
    "score_seconds",
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


def policy_violations(code: str) -> list[str]:
    """What the static loss policy refuses in `code` (defence in depth: the jail is the boundary)."""
    from targets.dpo.loss_policy import check_loss_policy

    return [v.message for v in check_loss_policy(code)]


def train(spec: JobSpec, job_dir: Path, cache: Path, deadline: float) -> WorkerResult:
    """Check, prepare, train in a jailed child and score the candidate; every way it can end becomes a
    WorkerResult. `deadline` (time.monotonic) is the job's end: the supervisor kills it then."""
    violations = policy_violations(spec.candidate_code)
    if violations:
        reason = "the candidate breaks the sandbox policy: " + "; ".join(violations[:3])
        return WorkerResult(state="failed:crash", reason=reason)

    import torch

    torch.set_num_threads(spec.resources.cpus)
    from sandbox.forked import LOG_NAME
    from targets.dpo.real import ChildFailed, RealDPOError, RealDPOSpec, run_real_dpo, scratch_dir
    from tools.jobs.callbacks import StreamMetrics
    from tools.jobs.relay import Relay, append_metrics

    real = RealDPOSpec.model_validate(spec.train)
    if real.cache_dir is None:
        real = real.model_copy(update={"cache_dir": cache / "refcache"})
    work = job_dir / WORK_DIR
    shutil.rmtree(work, ignore_errors=True)  # a killed earlier attempt's leftovers
    scratch = scratch_dir(work)
    stream = StreamMetrics(scratch / METRICS, spec.stop_if_loss_above)
    memory = spec.resources.memory_gb
    print(f"[job] training {spec.candidate_name} on {real.model} with {real.dataset}", flush=True)
    try:
        with Relay(scratch / LOG_NAME, sys.stdout.fileno(), scratch / METRICS, job_dir / METRICS):
            result = run_real_dpo(
                real,
                spec.candidate_code,
                work,
                callbacks=[stream],
                # The supervisor's limit comes first; this one holds if the supervisor is gone.
                timeout_s=max(1.0, deadline - time.monotonic()) + CHILD_GRACE_S,
                memory_mb=int(memory * 1024) if memory and spec.resources.gpus == 0 else None,
            )
    except RealDPOError as exc:
        return WorkerResult(state="failed:crash", reason=str(exc))
    except ChildFailed as exc:
        state, reason = from_child(exc.kind, exc.message, exc.detail, exc.signal, spec.time_limit_s)
        return WorkerResult(state=state, reason=reason, traceback=tail(exc.detail) if exc.detail else None)
    except Exception as exc:  # the trainer and the machine: classified (oom or crash), never swallowed
        state, reason, tb = from_exception(exc)
        print(tb, file=sys.stderr, flush=True)
        return WorkerResult(state=state, reason=reason, traceback=tb)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    (job_dir / "metrics.json").write_text(result.model_dump_json(indent=2))
    if result.eval_reward_margin is not None:
        record = {"kind": "eval", "step": result.outcome.steps, "time": time.time()}
        record |= result.outcome.eval_metrics  # eval_rewards/margins, eval_rewards/accuracies
        append_metrics(job_dir / METRICS, record)
        print(
            f"[eval] scored by the worker: margin={result.eval_reward_margin:.4g} "
            f"accuracy={result.eval_reward_accuracy:.4g} on {result.eval_pairs} held-out pairs",
            flush=True,
        )
    state, reason, tb = from_outcome(result.outcome.model_dump(mode="json"))
    if state == "succeeded" and result.stopped:
        state, reason = "failed:nan", result.stopped
    return WorkerResult(state=state, reason=reason, traceback=tb, metrics=summary(result))


def write_result(job_dir: Path, result: WorkerResult) -> None:
    """Atomically, so that the supervisor reads a whole verdict or none."""
    tmp = job_dir / "result.json.tmp"
    tmp.write_text(result.model_dump_json(indent=2))
    tmp.replace(job_dir / "result.json")


def main(argv: list[str]) -> int:
    # Before torch is imported: asking whether CUDA is there must not initialise it (see targets.dpo.real).
    os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")
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
    deadline = time.monotonic() + spec.time_limit_s
    try:
        result = train(spec, job_dir, cache, deadline)
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
