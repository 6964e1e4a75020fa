"""A candidate on extra seeds, for the agent's evidence rule (docs/evidence.md): trained only at the β it
chose on the default seeds, never re-chosen on the new data, and paired with DPO at DPO's chosen β on the
same seeds. Every finished training is kept on disk, so asking again (a resumed run, an incumbent that a
later challenger is compared with) trains nothing twice.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from targets.base import Evaluation
from targets.cache_dirs import read_sealed, write_sealed
from targets.dpo.fitness import RunResult
from targets.progress import Counter

if TYPE_CHECKING:
    from targets.dpo.sweep import SweepJob, SweepPool
    from targets.dpo.target import DPOTarget


def _digest(code: str) -> str:
    return hashlib.sha256(code.strip().encode()).hexdigest()[:16]


class BetaMemory:
    """The β each code chose on the default seeds, by code hash and sweep settings: a restarted process
    confirms a candidate at the β it chose, without re-running its sweep."""

    def __init__(self, cache_dir: Path, spec_key: str) -> None:
        self.cache_dir = cache_dir
        self.root = cache_dir / "chosen_beta"
        self.spec_key = spec_key

    def path(self, code: str) -> Path:
        return self.root / f"{self.spec_key}-{_digest(code)}.json"

    def remember(self, code: str, beta: float | None) -> None:
        """`None` records that no β trained (every run failed)."""
        write_sealed(self.path(code), self.cache_dir, json.dumps({"beta": beta}))

    def known(self, code: str) -> bool:
        return read_sealed(self.path(code), self.cache_dir) is not None

    def recall(self, code: str) -> float | None:
        try:
            return json.loads(read_sealed(self.path(code), self.cache_dir) or "")["beta"]
        except (ValueError, KeyError, TypeError):
            return None


class RunCache:
    """Finished training runs on disk, one file per (sweep settings, code, β, seed), written as each run
    lands: a process killed in the middle of a batch keeps what it finished."""

    def __init__(self, cache_dir: Path, spec_key: str) -> None:
        self.cache_dir = cache_dir
        self.root = cache_dir / "runs" / spec_key

    def _path(self, job: SweepJob) -> Path:
        return self.root / f"{_digest(job.code)}-b{job.beta:g}-s{job.seed}.json"

    def get(self, job: SweepJob) -> RunResult | None:
        """A run this data dir's parent process trained and sealed; a forged entry is never used."""
        try:
            run = RunResult.model_validate_json(read_sealed(self._path(job), self.cache_dir) or "")
        except ValueError:
            return None
        return run.model_copy(update={"loss": job.loss})

    def put(self, job: SweepJob, run: RunResult) -> None:
        write_sealed(self._path(job), self.cache_dir, run.model_dump_json())

    def run(self, pool: SweepPool, jobs: list[SweepJob]) -> list[RunResult]:
        """`jobs`' results, from the cache or trained now (in the order of `jobs`)."""
        found = {i: self.get(job) for i, job in enumerate(jobs)}
        missing = [i for i, run in found.items() if run is None]
        if missing:
            todo = [jobs[i] for i in missing]
            by_key = {(j.loss, j.beta, j.seed): j for j in todo}
            counter = Counter(f"runs on seeds {sorted({j.seed for j in todo})}")

            def keep(run: RunResult, done: int, total: int) -> None:
                self.put(by_key[(run.loss, run.beta, run.seed)], run)
                counter(done, total)

            for i, run in zip(missing, pool.run_jobs(todo, keep), strict=True):
                found[i] = run
        return [run for _, run in sorted(found.items()) if run is not None]


def evaluate_on_seeds(target: DPOTarget, code: str, name: str, seeds: list[int]) -> Evaluation:
    """`code` at its chosen β on `seeds`, scored and paired with DPO on the same seeds and prompts; the
    code is evaluated on the default seeds first when no β is known for it."""
    from targets.dpo.fitness import chosen_beta, fixed_beta_fitness, frontier, seed_item_scores
    from targets.dpo.sweep import SweepJob, spec_key
    from targets.dpo.zoo import get_zoo_loss

    start = time.perf_counter()
    pool = target.sweep_pool()
    key = spec_key(target.spec)
    memory = BetaMemory(target.cache_dir, key)
    if not memory.known(code):
        target.evaluate(code, name)  # chooses and remembers its β
    beta = memory.recall(code)
    details: dict[str, Any] = {"seeds": seeds, "preset": target.config.preset, "beta": beta}
    if beta is None:
        reason = "no β to confirm: every training run on the default seeds failed"
        return Evaluation(status="failed", reason=reason, details=details)
    cfg = target.spec.fitness
    base_beta = chosen_beta(frontier(target.baseline_runs(), cfg))
    label = "candidate" if name == "dpo" else name
    jobs = [SweepJob(loss=label, code=code, beta=beta, seed=s) for s in seeds]
    jobs += [SweepJob(loss="dpo", code=get_zoo_loss("dpo").code, beta=base_beta, seed=s) for s in seeds]
    results = RunCache(target.cache_dir, key).run(pool, jobs)
    runs, base = results[: len(seeds)], results[len(seeds) :]
    # Every item of a failed run scores the floor: as many items as any run of these seeds produced.
    n_items = max((len(r.rewards) for r in results if r.status == "ok"), default=0)
    item_scores = seed_item_scores(runs, beta, cfg, n_items=n_items or target.spec.task.n_eval_prompts)
    ok = [r for r in runs if r.status == "ok"]
    details |= {
        "baseline_beta": base_beta,
        "runs": [r.model_dump(mode="json", exclude={"rewards", "kls"}) for r in runs],
    }
    # DPO's own item scores on these seeds: the agent pairs them with the candidate's, seed by seed, for its
    # difference to DPO on seeds that chose nothing (agent.fresh.fresh_vs_baseline).
    baseline_items = seed_item_scores(base, base_beta, cfg, n_items=n_items or None)
    metrics = {"beta": beta, "runs_ok": float(len(ok)), "runs_failed": float(len(runs) - len(ok))}
    seconds = time.perf_counter() - start
    if not ok:
        reasons = sorted({f"{r.status}: {r.reason}" for r in runs})
        return Evaluation(
            status="failed",
            reason=f"every training run at β={beta:g} failed: " + "; ".join(reasons)[:800],
            seconds=seconds,
            metrics=metrics,
            details=details,
            item_scores=item_scores,
            baseline_item_scores=baseline_items,
        )
    fitness = fixed_beta_fitness(runs, base, cfg)
    details["frontier"] = [p.model_dump(mode="json") for p in fitness.frontier]
    details["baseline_frontier"] = [p.model_dump(mode="json") for p in frontier(base, cfg)]
    vs = fitness.vs_baseline
    return Evaluation(
        status="ok",
        fitness=fitness.fitness.model_copy(),
        vs_baseline=vs.diff.model_copy() if vs else None,
        metrics=metrics,
        seconds=seconds,
        details=details,
        item_scores=item_scores,
        baseline_item_scores=baseline_items,
    )
