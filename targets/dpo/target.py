"""The DPO-loss target behind the agent's Target seam: prompt material, checks in the sandbox, the toy-task
fitness paired with DPO, the zoo as seed archive, and the offline proposer."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from targets.base import Baseline, Evaluation, OfflineProposer, SeedCandidate, TargetEnv
from targets.cache_dirs import file_lock, read_sealed, write_sealed
from targets.kit import SandboxCaller, TargetKit, policy_result, sandboxed_check
from targets.progress import Counter, one_time
from targets.results import CheckReport, CheckResult

log = logging.getLogger("disco.target.dpo")

Preset = Literal["default", "quick", "tiny"]

DESCRIPTION = """\
Discover an offline preference-optimisation objective for aligning a language model, as in DiscoPOP
(Lu et al. 2024): a loss over the log-probabilities that the policy and a frozen reference model give to
a chosen and a rejected completion of the same prompt. DPO's loss is -log σ(β·ρ), where ρ is the policy's
log-ratio (chosen − rejected) minus the reference's. A candidate is trained with DPO's recipe on a toy
sentiment task whose reward is exact; what counts is how much reward the trained policy earns and how far
it drifts from the reference (KL), over a sweep of β."""

INTERFACE = """\
One Python function, no imports (`torch`, `F` = torch.nn.functional and `math` are provided):

def my_loss(
    self, policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps
):
    # each argument: a float tensor of shape (B,), summed log-probs of a completion
    pi_logratios = policy_chosen_logps - policy_rejected_logps      # (B,)
    ref_logratios = reference_chosen_logps - reference_rejected_logps  # (B,)
    logits = self.beta * (pi_logratios - ref_logratios)              # (B,) z = β·ρ
    losses = -F.logsigmoid(logits)                                   # (B,) DPO
    return losses                                                    # shape (B,), one loss per pair

`self.beta` is the β of the screen (0.5 or 1; what scale your loss
gives it is yours). Lower loss must favour the chosen completion."""

RULES = [
    "Exactly one function with the five parameters above; it returns a tensor of shape (B,).",
    "No imports, no file, network or process access, no global state: only torch, F and math.",
    "Only pure tensor operations (torch.exp, torch.where, F.logsigmoid, F.softplus, x.clamp(), x.mean(), "
    "...): no attribute or item assignment, no in-place ops (x.add_(), out=), no .grad_fn/.data/hooks, "
    "no classes, try, with or decorators; read self.beta and other self values, never call them.",
    "Finite losses and gradients for ordinary margins, for extreme margins (|ρ| up to 1000) and in "
    "bfloat16: use softplus / logsigmoid instead of log(sigmoid(x)), clamp or log-space exponentials.",
    "Lowering the loss must raise the chosen completion's log-ratio relative to the rejected one.",
    "Deterministic (no sampling) and fast (well under a second for a batch of 64).",
]

FITNESS_MEANING = (
    "reward − 0.05·KL of the trained policy on held-out prompts, at the candidate's best β, with a "
    "seeded bootstrap 95% CI over seeds × prompts; also reported as the paired difference to DPO. "
    "Higher is better; a β whose training diverged scores the reward floor."
)


class DPOTargetConfig(BaseModel):
    """How the DPO target checks and scores candidates (`[target.dpo]` in the config file)."""

    preset: Preset = "default"
    """`default`: β 0.5 and 1 screened on 2 seeds, then raced on fresh seeds (~40 s a candidate on 2
    cores); `quick`: 2 β × 1 seed;
    `tiny`: 1 β × 1 seed on a small task, for tests and smoke runs."""
    check_time_budget_s: float = 10.0
    """Seconds for all validity checks of one candidate together."""
    sandbox: str = "local"
    """Sandbox backend of the checks: local | docker | e2b."""
    workers: int | None = None
    """Training worker processes (default: up to 2)."""
    samples_per_prompt: int = Field(default=1, ge=1, le=16)
    """Completions sampled per held-out prompt at evaluation (their mean is the prompt's score): less
    item-sampling noise for more evaluation time (evals/results/variance_levers). σ is shipped for 1
    only: measure it for another with `disco bench sigma --samples-per-prompt N`."""


def check_and_fingerprint(code: str, time_budget_s: float = 10.0) -> dict[str, Any]:
    """Run inside the sandbox: the validity checks, then (for a passing loss) its behavioural fingerprint,
    so that the candidate's code runs in one isolated process and never in the agent's."""
    from targets.dpo.checks import check_candidate
    from targets.dpo.fingerprint import FingerprintError, loss_fingerprint

    report = check_candidate(code, time_budget_s=time_budget_s)
    fingerprint = None
    if report.passed:
        try:
            fingerprint = loss_fingerprint(code)
        except FingerprintError:
            fingerprint = None
    return sandboxed_check(report, fingerprint)


class DPOTarget(TargetKit):
    """A preference-optimisation loss, scored on the toy task (see targets/dpo/toy) against DPO."""

    name = "dpo"
    description = DESCRIPTION
    interface = INTERFACE
    rules = RULES
    fitness_meaning = FITNESS_MEANING
    summary = "a preference-optimisation loss (DiscoPOP), scored on the toy task against DPO"
    baseline = "DPO"
    evaluators = (  # targets.base.EvaluatorInfo fields, cheap first
        {
            "name": "toy",
            "what": "DPO training of a tiny GPT-2 on the toy sentiment task with an exact reward, over a "
            "β sweep × seeds: reward − 0.05·KL paired with DPO",
            "cost": "~40 s CPU per candidate (preset default; quick ~10 s, tiny ~2 s)",
        },
        {
            "name": "real_dpo_job",
            "what": "a real DPO job (model, preference data set) scored by a reward model and/or a judge",
            "cost": "hours on a GPU; launched for a candidate that beats the run's best when [gpu] enabled",
            "device": "gpu",
            "automatic": False,
        },
    )

    def __init__(self, config: DPOTargetConfig | None = None, cache_dir: Path | None = None) -> None:
        self.config = config or DPOTargetConfig()
        preload = ("torch", "targets.dpo.checks", "targets.dpo.fingerprint")
        super().__init__(SandboxCaller(self.config.sandbox, __name__, preload=preload, memory_mb=4096))
        self.cache_dir = Path(cache_dir) if cache_dir else Path(".disco/cache")
        self._pool: Any = None
        self._spec: Any = None
        self._baseline: list[Any] | None = None

    @property
    def seed_sigma(self) -> float | None:
        """σ per seed of a paired difference (the evidence rule's race): a pilot's for this instrument when
        one was measured in this data dir (`disco bench sigma`), else the one shipped for the default
        preset; None otherwise, and each comparison's own spread counts."""
        from targets.dpo.sigma import race_sigma

        return race_sigma(self.cache_dir, self.spec)

    # ------------------------------------------------------------------ checks
    def policy(self, code: str) -> CheckResult:
        from targets.dpo.loss_policy import check_loss_policy

        return policy_result(check_loss_policy(code), "only torch, F and math are used")

    def check(self, code: str) -> CheckReport:
        """The validity checks and the fingerprint in the sandbox (`check_and_fingerprint`)."""
        budget = self.config.check_time_budget_s
        return self.check_in_sandbox(
            code, "check_and_fingerprint", budget + 60, cpu_s=budget + 60, time_budget_s=budget
        )

    # ------------------------------------------------------------------ evaluation
    @property
    def spec(self) -> Any:
        """The sweep this target scores with (targets.dpo.sweep.SweepSpec): its preset's β screen, seeds,
        task and training."""
        if self._spec is None:
            from targets.dpo.sweep import sweep_spec

            self._spec = sweep_spec(self.config.preset, self.config.workers, self.config.samples_per_prompt)
        return self._spec

    def sweep_pool(self) -> Any:
        """The pool that trains candidates on `spec` (started on first use, kept until `close`)."""
        if self._pool is None:
            from targets.dpo.sweep import SweepPool

            self._pool = SweepPool(self.spec, self.cache_dir)
        return self._pool

    def baseline_runs(self) -> list[Any]:
        """DPO's runs on the same sweep, computed once per sweep spec and kept on disk for every run."""
        from targets.dpo.fitness import RunResult
        from targets.dpo.zoo import get_zoo_loss

        if self._baseline is not None:
            return self._baseline
        from targets.dpo.sweep import spec_key

        pool = self.sweep_pool()
        key = spec_key(self.spec)
        path = self.cache_dir / "baselines" / f"dpo-{key}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        with file_lock(path.with_suffix(".lock")):
            saved = read_sealed(path, self.cache_dir)  # written by a parent process only, HMAC-sealed
            if saved is not None:
                runs = [RunResult.model_validate(r) for r in json.loads(saved)]
            else:
                pool.start()  # its own one-time piece: not inside the baseline's seconds
                with one_time("DPO's baseline runs, once for this preset (kept in the cache)"):
                    runs = pool.run({"dpo": get_zoo_loss("dpo").code}, _counted("DPO's baseline runs"))
                write_sealed(path, self.cache_dir, json.dumps([r.model_dump(mode="json") for r in runs]))
        self._baseline = runs
        return runs

    def evaluate(self, code: str, name: str, seeds: list[int] | None = None) -> Evaluation:
        """Train over the β sweep × seeds and score against DPO's runs on the same seeds and prompts; with
        `seeds`, train only at the β chosen on the default seeds (targets.dpo.extra_seeds)."""
        from targets.dpo.fitness import chosen_beta, compute_fitness, seed_item_scores

        if seeds is not None:
            from targets.dpo.extra_seeds import evaluate_on_seeds

            return evaluate_on_seeds(self, code, name, list(seeds))
        start = time.perf_counter()
        baseline = self.baseline_runs()
        label = "candidate" if name == "dpo" else name
        runs = self.sweep_pool().run({label: code}, _counted(f"training {name}"))
        seconds = time.perf_counter() - start
        ok = [r for r in runs if r.status == "ok"]
        details: dict[str, Any] = {
            "runs": [r.model_dump(mode="json", exclude={"rewards", "kls"}) for r in runs],
            "betas": list(self.spec.betas),
            "seeds": list(self.spec.seeds),
            "selection_seeds": list(self.spec.seeds),  # β is chosen on them: the evidence never scores them
            "preset": self.config.preset,
        }
        if not ok:
            self._remember_beta(code, None)
            reasons = sorted({f"{r.status}: {r.reason}" for r in runs})
            return Evaluation(
                status="failed",
                reason="every training run failed: " + "; ".join(reasons)[:800],
                seconds=seconds,
                details=details,
            )
        fits = compute_fitness({label: runs, "dpo": baseline}, self.spec.fitness, baseline="dpo")
        fitness = fits[label]
        beta = chosen_beta(fitness.frontier)
        self._remember_beta(code, beta)
        details["frontier"] = [p.model_dump(mode="json") for p in fitness.frontier]
        details["baseline_frontier"] = [p.model_dump(mode="json") for p in fits["dpo"].frontier]
        details["best_beta"] = beta
        metrics = {
            "runs_ok": float(len(ok)),
            "runs_failed": float(len(runs) - len(ok)),
            "train_seconds": float(sum(r.train_seconds for r in runs)),
        }
        best = max(fitness.frontier, key=lambda p: p.objective)
        if best.reward is not None:
            metrics |= {"best_beta": best.beta, "reward": best.reward, "kl": best.kl or 0.0}
        vs = fitness.vs_baseline
        return Evaluation(
            status="ok",
            fitness=fitness.fitness.model_copy(),
            vs_baseline=vs.diff.model_copy() if vs else None,
            metrics=metrics,
            seconds=seconds,
            details=details,
            item_scores=seed_item_scores(runs, beta, self.spec.fitness),
        )

    def _remember_beta(self, code: str, beta: float | None) -> None:
        from targets.dpo.extra_seeds import BetaMemory
        from targets.dpo.sweep import spec_key

        BetaMemory(self.cache_dir, spec_key(self.spec)).remember(code, beta)

    # ------------------------------------------------------------------ archive and proposer
    def seeds(self) -> list[SeedCandidate]:
        from targets.dpo.zoo import list_zoo

        return [
            SeedCandidate(name=z.name, thought=f"{z.title}. {z.citation}", code=z.code) for z in list_zoo()
        ]

    def baselines(self) -> list[Baseline]:
        """The zoo, for memory: known losses, no discoveries (fingerprints shipped: no sandbox, no torch)."""
        from targets.dpo.zoo.fingerprints import shipped

        prints = shipped()
        return [Baseline(**s.model_dump(), fingerprint=prints.get(s.name)) for s in self.seeds()]

    def offline_proposer(self, seed: int) -> OfflineProposer:
        from targets.dpo.proposer import DPOBlockProposer

        return DPOBlockProposer(seed)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None
        super().close()


def make_target(options: dict[str, Any], env: TargetEnv) -> DPOTarget:
    """The registry's factory: options are the config's `[targets.dpo]` table."""
    return DPOTarget(DPOTargetConfig.model_validate(options), cache_dir=env.cache_dir)


def _counted(what: str) -> Any:
    """A sweep's progress callback: `what: n of N done, ~s left` as each training run lands."""
    counter = Counter(what)
    return lambda _run, done, total: counter(done, total)
