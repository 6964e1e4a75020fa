"""Run losses over a β-sweep × seeds on the toy task, in warm worker processes.

Importing torch + transformers + TRL costs 6–9 s per process, so workers are started once and run
many (loss, β, seed) trainings each; the toy task, its SFT model and the reference log-probs are
built once (cached on disk) and loaded once per worker. The parent process never imports torch.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from targets.dpo.fitness import FULL_BETA_GRID, FitnessConfig, RunResult
from targets.dpo.toy.config import ToyTaskConfig

log = logging.getLogger("disco.sweep")

DEFAULT_BETAS: tuple[float, ...] = (0.05, 0.1, 0.25, 0.5, 1.0)


class ToyTrainSettings(BaseModel):
    """DPO hyper-parameters shared by every run of a sweep (β and seed vary per run)."""

    learning_rate: float = 2e-4
    """A tiny SFT model on CPU needs ~1e-4…1e-3 (TRL's default 1e-6 would not move it)."""
    batch_size: int = 32
    """Preference pairs per step."""
    max_steps: int = 100
    """Optimiser steps: ~6 epochs over the toy task's 512 pairs, the over-fitting regime in which
    DPO's margins grow without bound on near-deterministic labels and IPO's stay finite."""
    lr_scheduler_type: str = "constant"
    """Constant, as in the paper's IMDb runs: a decaying schedule would hide late over-fitting."""
    max_grad_norm: float = 10.0
    """Loose clipping: only a blow-up is clipped, so losses differ by their gradients, not by the clip."""
    max_length: int = 48
    """Prompt + completion tokens; the toy language's sequences are shorter."""


class SweepSpec(BaseModel):
    """What a loss benchmark runs: the β grid, the seeds, the task and the training."""

    betas: list[float] = Field(default_factory=lambda: list(DEFAULT_BETAS))
    seeds: list[int] = Field(default_factory=lambda: [0, 1])
    task: ToyTaskConfig = Field(default_factory=ToyTaskConfig)
    train: ToyTrainSettings = Field(default_factory=ToyTrainSettings)
    fitness: FitnessConfig = Field(default_factory=FitnessConfig)
    workers: int = Field(default_factory=lambda: max(1, min(2, os.cpu_count() or 1)))
    """Worker processes; each trains with one thread when there are several."""

    @classmethod
    def full_grid(cls, **kw: Any) -> SweepSpec:
        """The paper's full β grid (0.01 … 5)."""
        return cls(betas=list(FULL_BETA_GRID), **kw)


class SweepJob(BaseModel):
    loss: str
    code: str
    beta: float
    seed: int


# ---------------------------------------------------------------- worker side (imports torch lazily)

_WORKER: dict[str, Any] = {}


def _exit_with_parent(parent: int) -> None:
    """A worker whose parent died (killed, Ctrl-C) must not train on alone: poll and exit."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)


def _worker_init(threads: int, parent: int, cache_dir: str) -> None:
    # Confine first (namespaces are per thread, so before any thread starts): candidate code trains in
    # here, so no network, a read-only file system but the cache, a scrubbed environment, rlimits.
    from sandbox.confine import Confinement, confine_current_process

    _WORKER["isolation"] = confine_current_process(Confinement(writable=[Path(cache_dir)]))
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    import torch

    torch.set_num_threads(threads)
    from targets.dpo.trainer import quiet_hf  # warms the heavy imports before the first job

    quiet_hf()


def _worker_state(spec: SweepSpec, cache_dir: Path) -> dict[str, Any]:
    """Task, reference model and prepared data, loaded once per worker and per task config."""
    key = spec.task.key() + f"-L{spec.train.max_length}"
    if _WORKER.get("key") != key:
        from targets.dpo.refcache import prepare_preference_dataset
        from targets.dpo.toy.task import load_toy_task

        task = load_toy_task(spec.task, cache_dir)
        reference = task.load_sft_model().eval()
        prepared = prepare_preference_dataset(
            reference,
            task.tokenizer,
            task.train_pairs,
            cache_dir=cache_dir / "refcache",
            max_length=spec.train.max_length,
            batch_size=64,
        )
        _WORKER.update(key=key, task=task, reference=reference, prepared=prepared)
    return _WORKER


def prepare(spec: SweepSpec, cache_dir: Path) -> dict[str, Any]:
    """Build (or load) the task and the reference log-probs; returns the task's build stats."""
    state = _worker_state(spec, cache_dir)
    return {
        "n_pairs": len(state["prepared"]),
        "n_eval_prompts": len(state["task"].eval_prompts),
        "isolation": state.get("isolation", []),
    }


def run_job(job: SweepJob, spec: SweepSpec, cache_dir: Path) -> RunResult:
    """Train the SFT model with one loss at one β and seed, then evaluate it. Never raises for a bad loss."""
    from sandbox.policy import check_policy
    from targets.dpo.candidate import CandidateError, load_candidate
    from targets.dpo.policy import LOSS_ALLOWED_IMPORTS
    from targets.dpo.toy.evaluate import evaluate_policy
    from targets.dpo.trainer import DPOTrainConfig, train_candidate

    state = _worker_state(spec, cache_dir)
    task = state["task"]
    base = RunResult(loss=job.loss, beta=job.beta, seed=job.seed, status="error")
    violations = check_policy(job.code, LOSS_ALLOWED_IMPORTS)
    if violations:  # never train code that the static policy refuses
        return base.model_copy(update={"reason": "policy: " + "; ".join(v.message for v in violations[:3])})
    try:
        candidate = load_candidate(job.code)
    except CandidateError as exc:
        return base.model_copy(update={"reason": f"candidate does not load: {exc.message}"})
    policy = task.load_sft_model()
    config = DPOTrainConfig(
        beta=job.beta,
        seed=job.seed,
        learning_rate=spec.train.learning_rate,
        per_device_train_batch_size=spec.train.batch_size,
        max_steps=spec.train.max_steps,
        lr_scheduler_type=spec.train.lr_scheduler_type,
        max_grad_norm=spec.train.max_grad_norm,
        max_length=spec.train.max_length,
    )
    outcome = train_candidate(candidate, policy, task.tokenizer, state["prepared"], config)
    base = base.model_copy(update={"steps": outcome.steps, "train_seconds": outcome.seconds})
    if outcome.status != "ok":
        return base.model_copy(update={"status": outcome.status, "reason": outcome.reason})
    # The evaluation seed is shared by all losses (common random numbers): differences are the losses'.
    result = evaluate_policy(policy.eval(), state["reference"], task, seed=10_000 + job.seed)
    update: dict[str, Any] = {"eval_seconds": result.seconds}
    if result.degenerate:
        update |= {"status": "degenerate", "reason": result.degenerate_reason}
    else:
        update |= {"status": "ok", "rewards": result.rewards, "kls": result.kls}
    return base.model_copy(update=update)


# ---------------------------------------------------------------- parent side

ProgressFn = Callable[[RunResult, int, int], None]


class SweepPool:
    """Warm training workers kept across sweeps: the agent evaluates one candidate after another, and
    a fresh pool would pay the 6–9 s imports and the task load again for every candidate."""

    def __init__(self, spec: SweepSpec, cache_dir: Path) -> None:
        self.spec = spec
        self.cache_dir = cache_dir
        self._pool: ProcessPoolExecutor | None = None

    def _open(self) -> ProcessPoolExecutor:
        if self._pool is None:
            threads = 1 if self.spec.workers > 1 else max(1, os.cpu_count() or 1)
            self.cache_dir.mkdir(parents=True, exist_ok=True)  # must exist before a worker makes it writable
            pool = ProcessPoolExecutor(
                max_workers=self.spec.workers,
                mp_context=get_context("spawn"),
                initializer=_worker_init,
                initargs=(threads, os.getpid(), str(self.cache_dir)),
            )
            info = pool.submit(prepare, self.spec, self.cache_dir).result()
            for line in info["isolation"]:
                if "NOT" in line:  # say plainly what the host refused
                    log.warning("training workers: %s", line)
            self._pool = pool
        return self._pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __enter__(self) -> SweepPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def run(self, losses: dict[str, str], progress: ProgressFn | None = None) -> list[RunResult]:
        """Run every loss at every (β, seed); a loss that breaks yields failed runs, never an exception."""
        spec = self.spec
        jobs = [
            SweepJob(loss=name, code=code, beta=beta, seed=seed)
            for name, code in losses.items()
            for beta in spec.betas
            for seed in spec.seeds
        ]
        return self.run_jobs(jobs, progress)

    def run_jobs(self, jobs: list[SweepJob], progress: ProgressFn | None = None) -> list[RunResult]:
        """Run any (loss, β, seed) jobs on the sweep's task and training settings, in order of `jobs`;
        `progress` sees each result as it lands (in this process), e.g. to keep it before the rest ends."""
        spec = self.spec
        results: dict[int, RunResult] = {}
        pending = list(range(len(jobs)))
        for _attempt in range(2):  # a worker killed by the OS breaks the pool: restart it once
            if not pending:
                break
            pool = self._open()
            futures: dict[Future[RunResult], int] = {
                pool.submit(run_job, jobs[i], spec, self.cache_dir): i for i in pending
            }
            try:
                for fut in as_completed(futures):
                    i = futures[fut]
                    results[i] = fut.result()
                    if progress:
                        progress(results[i], len(results), len(jobs))
            except BrokenProcessPool:
                self._pool = None
                pool.shutdown(wait=False, cancel_futures=True)
            pending = [i for i in range(len(jobs)) if i not in results]
        for i in pending:
            job = jobs[i]
            results[i] = RunResult(
                loss=job.loss,
                beta=job.beta,
                seed=job.seed,
                status="error",
                reason="the worker process died (killed by the OS, e.g. out of memory)",
            )
        return [results[i] for i in range(len(jobs))]


def run_sweep(
    losses: dict[str, str], spec: SweepSpec, cache_dir: Path, progress: ProgressFn | None = None
) -> list[RunResult]:
    """Run every loss at every (β, seed) in a pool of its own; see SweepPool."""
    with SweepPool(spec, cache_dir) as pool:
        return pool.run(losses, progress)
