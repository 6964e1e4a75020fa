"""Run losses over a β-sweep × seeds on the toy task, in warm worker processes.

Importing torch + transformers + TRL costs 6–9 s per process, so workers are started once and run
many (loss, β, seed) trainings each; the toy task, its SFT model and the reference log-probs are
built once (cached on disk) and loaded once per worker. The parent process never imports torch.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from targets.dpo.fitness import FULL_BETA_GRID, SCREEN_BETAS, SCREEN_SEEDS, FitnessConfig, RunResult
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
    run_timeout_s: float = 600.0
    """Wall-clock limit of one training run in its jailed child (a shard of k runs gets k times this)."""
    child_memory_mb: int | None = None
    """Address-space limit of a training child (None: no limit; torch reserves large virtual ranges)."""

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
# A worker is trusted: it builds and loads the task, forks one jailed child per candidate shard, and scores
# what the child hands back. It never runs candidate code itself, so nothing a candidate does in its child
# (module attributes, hooks, the RNG, the model) reaches the scorer, the next candidate or DPO's baseline.

_WORKER: dict[str, Any] = {}
MAX_REPORT_BYTES = 1 << 20
HF_QUIET_ENV = {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
}


def _exit_with_parent(parent: int) -> None:
    """A worker whose parent died (killed, Ctrl-C) must not train on alone: poll and exit."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)


_STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}


@contextlib.contextmanager
def _stop_signals_blocked() -> Iterator[None]:
    """Around a submit, which may spawn a worker: the worker starts with the stop signals blocked (a mask
    survives fork and exec), so that a Ctrl-C while it imports cannot kill it; the parent gets a signal
    that arrived meanwhile when the mask is lifted."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _worker_init(threads: int, parent: int) -> None:
    from sandbox.redact import SECRET_NAME

    # The parent owns shutdown. In a session of its own, a worker never sees the terminal's Ctrl-C nor a
    # SIGTERM/SIGHUP sent to the run's process group (which would kill it mid-run and come back to the
    # parent as a KeyboardInterrupt or a broken pool); it leaves when its parent does (below).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with contextlib.suppress(OSError):
        os.setsid()
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)  # blocked by the parent until here
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()
    # What this process holds, its forked training children hold too: it keeps no key or token.
    for name in [name for name in os.environ if SECRET_NAME.search(name)]:
        del os.environ[name]
    for name, value in HF_QUIET_ENV.items():
        os.environ.setdefault(name, value)
    import torch

    # GNU OpenMP is not fork-safe: a child that runs a parallel region after its parent has used a
    # team of threads hangs. So this worker computes with one thread, and only its forked training
    # children use `threads`.
    torch.set_num_threads(1)
    _WORKER["child_threads"] = threads
    from targets.dpo.trainer import quiet_hf  # warms the heavy imports before the first job

    quiet_hf()


def _worker_state(spec: SweepSpec, cache_dir: Path) -> dict[str, Any]:
    """Task, reference model and prepared data, built (verified by digest) and loaded once per worker."""
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
    """Build (or load) the task and the reference log-probs; returns the task's build stats and whether
    the host can jail a training child."""
    from sandbox.jail import probe_jail

    state = _worker_state(spec, cache_dir)
    jail_ok, jail_why = probe_jail()
    return {
        "n_pairs": len(state["prepared"]),
        "n_eval_prompts": len(state["task"].eval_prompts),
        "jail": jail_ok,
        "jail_reason": jail_why,
    }


def run_job(job: SweepJob, spec: SweepSpec, cache_dir: Path) -> RunResult:
    """One (loss, β, seed) run in a jailed child of its own, scored here."""
    return run_shard([job], spec, cache_dir)[0]


def run_shard(jobs: list[SweepJob], spec: SweepSpec, cache_dir: Path) -> list[RunResult]:
    """Train one candidate's runs in ONE jailed child used by it alone, then score each run here from the
    weights it hands back. Never raises for a bad loss: a failed run is a RunResult with a reason."""
    import shutil
    import tempfile

    from sandbox.forked import run_forked
    from sandbox.jail import JailSpec
    from targets.dpo.loss_policy import check_loss_policy

    if len({job.code for job in jobs}) != 1:
        raise ValueError("a shard holds the runs of one candidate: a child is never shared by two")
    job = jobs[0]
    state = _worker_state(spec, cache_dir)
    bases = [RunResult(loss=j.loss, beta=j.beta, seed=j.seed, status="error") for j in jobs]
    violations = check_loss_policy(job.code)
    if violations:  # never train code that the static policy refuses
        reason = "policy: " + "; ".join(v.message for v in violations[:3])
        return [b.model_copy(update={"reason": reason}) for b in bases]
    scratch = Path(tempfile.mkdtemp(prefix="disco-train-"))
    try:
        jail = JailSpec(
            writable=[scratch],
            unsafe=os.environ.get("DISCO_UNSAFE_SANDBOX") == "1",
            memory_mb=spec.child_memory_mb,
        )
        outcome = run_forked(
            lambda: _train_in_child(jobs, spec, state, scratch), jail, scratch, spec.run_timeout_s * len(jobs)
        )
        return [
            _score(j, i, b, state, scratch, outcome) for i, (j, b) in enumerate(zip(jobs, bases, strict=True))
        ]
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _train_in_child(jobs: list[SweepJob], spec: SweepSpec, state: dict[str, Any], scratch: Path) -> None:
    """In the jailed child: compile the candidate, train each run, write its report and weights."""
    import json

    import torch
    from safetensors.torch import save

    from targets.dpo.candidate import CandidateError, load_candidate
    from targets.dpo.trainer import DPOTrainConfig, train_candidate

    # More than one thread only where the parent never ran a parallel region (see _worker_init).
    torch.set_num_threads(state.get("child_threads", 1))
    os.environ["TMPDIR"] = str(scratch)
    try:
        candidate = load_candidate(jobs[0].code)
    except CandidateError as exc:
        for i in range(len(jobs)):
            report = {"status": "error", "reason": f"candidate does not load: {exc.message}"}
            (scratch / f"run-{i}.json").write_text(json.dumps(report))
        return
    for i, job in enumerate(jobs):
        policy = state["task"].load_sft_model()
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
        outcome = train_candidate(candidate, policy, state["task"].tokenizer, state["prepared"], config)
        if outcome.status == "ok":
            weights = {k: v.detach().contiguous().clone() for k, v in policy.state_dict().items()}
            weights.pop("lm_head.weight", None)  # tied to the token embedding
            (scratch / f"run-{i}.safetensors").write_bytes(save(weights))
        report = outcome.model_dump(include={"status", "reason", "steps", "seconds"})
        (scratch / f"run-{i}.json").write_text(json.dumps(report))


class ChildReport(BaseModel):
    """What a child says about one run: untrusted, so only the status and short text are taken from it."""

    status: Literal["ok", "diverged", "error"]
    reason: str | None = Field(default=None, max_length=4000)
    steps: int = Field(default=0, ge=0)
    seconds: float = Field(default=0.0, ge=0.0)


def _score(
    job: SweepJob, i: int, base: RunResult, state: dict[str, Any], scratch: Path, outcome: Any
) -> RunResult:
    """Validate the child's report and weights, then evaluate the policy in this (clean) process."""
    from pydantic import ValidationError

    from sandbox.forked import read_untrusted
    from targets.dpo.toy.evaluate import evaluate_policy

    try:
        report = ChildReport.model_validate_json(read_untrusted(scratch / f"run-{i}.json", MAX_REPORT_BYTES))
    except (OSError, ValueError, ValidationError):
        return base.model_copy(update={"reason": _child_failure(outcome)})
    base = base.model_copy(update={"steps": report.steps, "train_seconds": report.seconds})
    if report.status != "ok":
        return base.model_copy(update={"status": report.status, "reason": report.reason})
    try:
        policy = load_trained_policy(scratch / f"run-{i}.safetensors", state["task"])
    except (OSError, ValueError) as exc:
        return base.model_copy(update={"reason": f"the trained weights were rejected: {exc}"})
    # The evaluation seed is shared by all losses (common random numbers): differences are the losses'.
    result = evaluate_policy(policy, state["reference"], state["task"], seed=10_000 + job.seed)
    update: dict[str, Any] = {"eval_seconds": result.seconds}
    if result.degenerate:
        update |= {"status": "degenerate", "reason": result.degenerate_reason}
    else:
        update |= {"status": "ok", "rewards": result.rewards, "kls": result.kls}
    return base.model_copy(update=update)


def _child_failure(outcome: Any) -> str:
    if outcome.refused:
        return "the training sandbox was refused by this host: " + outcome.log_tail.strip()[-300:]
    if outcome.timed_out:
        return f"training did not finish within its time limit ({outcome.seconds:.0f} s) and was killed"
    if outcome.signal:
        return f"the training process was killed by signal {outcome.signal} (e.g. out of memory)"
    return f"the training process ended (exit {outcome.exit_code}) without a result for this run"


def load_trained_policy(path: Path, task: Any) -> Any:
    """The SFT architecture with weights a child returned, after checking them: the same names, shapes and
    dtypes as the SFT model's, every value finite, and something trained (ValueError says what is wrong)."""
    import torch
    from safetensors.torch import load

    from sandbox.forked import read_untrusted

    expected = task.sft_weights()
    limit = sum(t.numel() * t.element_size() for t in expected.values()) + (1 << 20)
    data = read_untrusted(path, limit)  # OSError for a link or a missing file, ValueError when too big
    try:
        weights = load(data)
    except Exception as exc:  # a malformed file is the child's doing: say so, never crash the scorer
        raise ValueError(f"not a readable safetensors file ({type(exc).__name__})") from None
    if set(weights) != set(expected) - {"lm_head.weight"}:
        odd = sorted(set(weights) ^ (set(expected) - {"lm_head.weight"}))[:3]
        raise ValueError(f"unexpected or missing tensors: {', '.join(odd)}")
    for name, tensor in weights.items():
        ref = expected[name]
        if tensor.shape != ref.shape or tensor.dtype != ref.dtype:
            raise ValueError(
                f"{name} is {tuple(tensor.shape)} {tensor.dtype}, expected {tuple(ref.shape)} {ref.dtype}"
            )
        if not bool(torch.isfinite(tensor).all()):
            raise ValueError(f"{name} holds non-finite values")
    if all(torch.equal(weights[name], expected[name]) for name in weights):
        raise ValueError("they equal the SFT model's: training moved nothing")
    policy = task.load_sft_model()
    policy.load_state_dict(weights, strict=False)  # lm_head.weight stays tied to the embedding
    return policy.eval()


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
            from sandbox.registry import SandboxUnavailable
            from targets.progress import one_time

            threads = 1 if self.spec.workers > 1 else max(1, os.cpu_count() or 1)
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            with one_time(
                "starting the training workers (the toy task and its SFT model are built once, then cached)"
            ):
                pool = ProcessPoolExecutor(
                    max_workers=self.spec.workers,
                    mp_context=get_context("spawn"),
                    initializer=_worker_init,
                    initargs=(threads, os.getpid()),
                )
                with _stop_signals_blocked():
                    first = pool.submit(prepare, self.spec, self.cache_dir)
                info = first.result()
            if not info["jail"]:
                if os.environ.get("DISCO_UNSAFE_SANDBOX") != "1":
                    pool.shutdown(wait=False, cancel_futures=True)
                    raise SandboxUnavailable(
                        "candidate losses cannot be trained in isolation on this host "
                        f"({info['jail_reason']}); run with --unsafe-sandbox (or DISCO_UNSAFE_SANDBOX=1) to "
                        "train them with weaker isolation"
                    )
                log.warning(
                    "training children are NOT fully isolated (--unsafe-sandbox): %s", info["jail_reason"]
                )
            self._pool = pool
        return self._pool

    def start(self) -> None:
        """Start the workers now (they start with the first job otherwise): their one-time cost is then
        counted apart from the first job's."""
        self._open()

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
        `progress` sees each result as it lands (in this process), e.g. to keep it before the rest ends.
        Each candidate's runs go to jailed children used by that candidate alone (`shards`)."""
        spec = self.spec
        results: dict[int, RunResult] = {}
        pending = list(range(len(jobs)))
        for _attempt in range(2):  # a worker killed by the OS breaks the pool: restart it once
            if not pending:
                break
            pool = self._open()
            with _stop_signals_blocked():
                futures: dict[Future[list[RunResult]], list[int]] = {
                    pool.submit(run_shard, [jobs[i] for i in shard], spec, self.cache_dir): shard
                    for shard in shards([jobs[i] for i in pending], spec.workers, pending)
                }
            try:
                for fut in as_completed(futures):
                    for i, run in zip(futures[fut], fut.result(), strict=True):
                        results[i] = run
                        if progress:
                            progress(run, len(results), len(jobs))
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


def shards(jobs: list[SweepJob], workers: int, index: list[int]) -> list[list[int]]:
    """Split jobs into groups of one candidate's runs (by code), each candidate over at most `workers`
    groups so that every worker has work; returns the groups as lists of `index` entries."""
    by_code: dict[str, list[int]] = {}
    for job, i in zip(jobs, index, strict=True):
        by_code.setdefault(job.code, []).append(i)
    out: list[list[int]] = []
    for members in by_code.values():
        n = min(max(1, workers), len(members))
        out += [members[k::n] for k in range(n)]
    return out


def run_sweep(
    losses: dict[str, str], spec: SweepSpec, cache_dir: Path, progress: ProgressFn | None = None
) -> list[RunResult]:
    """Run every loss at every (β, seed) in a pool of its own; see SweepPool."""
    with SweepPool(spec, cache_dir) as pool:
        return pool.run(losses, progress)


def sweep_spec(preset: str, workers: int | None = None, samples_per_prompt: int = 1) -> SweepSpec:
    """The sweep of a preset: the β screen, seeds, task and training the DPO target scores with."""
    extra: dict[str, Any] = {"workers": workers} if workers else {}
    if preset == "default":
        task = ToyTaskConfig(eval_samples_per_prompt=samples_per_prompt)
        return SweepSpec(betas=list(SCREEN_BETAS), seeds=list(range(SCREEN_SEEDS)), task=task, **extra)
    if preset == "quick":
        task = ToyTaskConfig(eval_samples_per_prompt=samples_per_prompt)
        return SweepSpec(betas=[0.1, 0.5], seeds=[0], task=task, **extra)
    task = ToyTaskConfig(
        sft_corpus_size=1500,
        sft_steps=120,
        sft_batch_size=32,
        n_train_pairs=96,
        n_eval_prompts=48,
        eval_samples_per_prompt=samples_per_prompt,
    )
    return SweepSpec(
        betas=[0.5], seeds=[0], task=task, train=ToyTrainSettings(max_steps=8, batch_size=16), **extra
    )


def spec_key(spec: SweepSpec) -> str:
    """What a sweep's cached results depend on (not the machine: workers, timeouts, memory)."""
    import hashlib

    exclude: dict[str, Any] = {"workers": True, "run_timeout_s": True, "child_memory_mb": True}
    if spec.task.eval_samples_per_prompt == 1:  # the setting's default keeps the caches built before it
        exclude["task"] = {"eval_samples_per_prompt": True}
    blob = spec.model_dump_json(exclude=exclude)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]
