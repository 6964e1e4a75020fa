"""A user target for disco: discover an optimizer's update rule, scored on small problems on the CPU.

Run it with `disco run --target examples/optimizer_target/target.py` (docs/targets.md walks through it).
disco finds `make_target(options, env)` here; the class below satisfies targets.base.Target, with the
plumbing every target shares (the sandbox, the check's report and fingerprint, close) from targets.kit.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from pydantic import BaseModel

from targets.base import Evaluation, EvaluatorInfo, Interval, OfflineProposer, SeedCandidate, TargetEnv
from targets.kit import SandboxCaller, TargetKit, policy_result
from targets.results import CheckReport, CheckResult

PACKAGE = __name__.rpartition(".")[0] or __name__
"""The package the sandbox imports `sandboxed` from (its sources travel with each request)."""

DESCRIPTION = """\
Discover the update rule of a first-order optimizer: given the parameters, their gradient and a state
the rule keeps between steps, return the next parameters. Classic rules are SGD, momentum, Nesterov,
RMSProp, Adagrad and Adam. A rule is run for 200 steps on five small problems (two ill-conditioned
quadratics, a quadratic with noisy gradients, the Rosenbrock valley and a logistic regression), each at
its best learning rate from a grid; what counts is how far it closes each problem's optimality gap."""

INTERFACE = """\
One Python function, no imports (`np` = numpy and `math` are provided):

def adam(self, param, grad, state):
    # param, grad: float arrays of the same shape (n,); state: the dict this function returned last
    # step ({} at the first step); self.lr: the learning rate, tuned over 1e-3 … 1 for each problem
    t = state.get("t", 0) + 1
    m = 0.9 * state.get("m", np.zeros_like(param)) + 0.1 * grad
    v = 0.999 * state.get("v", np.zeros_like(param)) + 0.001 * grad * grad
    direction = (m / (1 - 0.9 ** t)) / (np.sqrt(v / (1 - 0.999 ** t)) + 1e-8)
    return param - self.lr * direction, {"t": t, "m": m, "v": v}   # (new_param, new_state)"""

RULES = [
    "Exactly one function (self, param, grad, state) returning (new_param, state): new_param an array of "
    "param's shape, state a dict.",
    "No imports, no file, network or process access, no global state: only np and math.",
    "Finite for zero, tiny (1e-12) and huge (1e6) gradients: put ε outside square roots, bound exponentials.",
    "It must descend: at some learning rate, 100 steps at least halve a simple quadratic.",
    "Deterministic (no randomness) and fast: 2000 steps on 100 parameters well under 2 s.",
]

FITNESS_MEANING = (
    "Mean progress over 5 problems × 3 seeds, each problem's progress being the fraction of 12 orders of "
    "magnitude of its optimality gap closed in 200 steps at the best learning rate (0 to 1), with a "
    "seeded bootstrap 95% CI over problems × seeds; also reported as the paired difference to Adam on the "
    "same problems. Higher is better; a diverging rule scores 0 on that problem."
)

EVALUATORS = [
    EvaluatorInfo(
        name="cpu_problems",
        what="200 steps on 5 small problems × 3 seeds at 7 learning rates, progress vs Adam",
        cost="about a second of CPU per candidate, in the sandbox",
    )
]


class OptimizerConfig(BaseModel):
    """Options of this target (`[targets."<its path>"]` in disco's config)."""

    seeds: list[int] = [0, 1, 2]
    """Evaluation seeds: each one builds a new instance of every problem."""
    steps: int = 200
    sandbox: str = "local"
    """disco's sandbox backend for the checks and the evaluation: local | docker | e2b."""
    check_time_budget_s: float = 2.0


def bootstrap(values: np.ndarray, seed: int = 0, n: int = 2000) -> Interval:
    """The mean with a percentile-bootstrap 95% CI (seeded: the same scores give the same interval)."""
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(n, len(values)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return Interval(value=float(values.mean()), ci_low=float(low), ci_high=float(high))


class OptimizerTarget(TargetKit):
    """An update rule, checked and scored in disco's sandbox, compared with Adam."""

    name = "optimizer"
    summary = "an optimizer's update rule (numpy), scored on small CPU problems against Adam"
    description = DESCRIPTION
    interface = INTERFACE
    rules = RULES
    fitness_meaning = FITNESS_MEANING
    baseline = "Adam"
    evaluators = EVALUATORS

    def __init__(self, config: OptimizerConfig, env: TargetEnv) -> None:
        # `sandboxed` is called in the sandbox, this package's sources shipped with each request
        module = f"{PACKAGE}.sandboxed"
        super().__init__(SandboxCaller(config.sandbox, module, preload=("numpy",), ship_sources=True))
        self.config = config
        self.env = env  # this target caches nothing and calls no model; a target that does uses these
        self._adam: dict[str, list[float]] = {}
        """Adam's per-problem scores by seed, computed once per seed."""

    # ------------------------------------------------------------------ checks
    def policy(self, code: str) -> CheckResult:
        from sandbox.policy import check_policy

        return policy_result(check_policy(code, frozenset({"numpy", "math"})), "only np and math are used")

    def check(self, code: str) -> CheckReport:
        budget = self.config.check_time_budget_s
        return self.check_in_sandbox(code, "check_and_fingerprint", budget + 30, time_budget_s=budget)

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, code: str, name: str, seeds: list[int] | None = None) -> Evaluation:
        """Score on every problem of every seed, paired with Adam on the same problems."""
        from .blocks import CLASSICS, render

        seeds, steps = list(seeds if seeds is not None else self.config.seeds), self.config.steps
        start = time.perf_counter()
        missing = [s for s in seeds if str(s) not in self._adam]
        if missing:  # Adam in a sandbox of its own: a candidate scored beside it could rewrite its numpy
            adam = {"adam": render(CLASSICS[-1][1], "adam")}
            base = self.call_in_sandbox("score_codes", {"codes": adam, "seeds": missing, "steps": steps}, 300)
            if base.status != "ok" or not isinstance(base.value, dict):
                reason = f"scoring the baseline (Adam) failed ({base.status}): {base.reason}"
                return Evaluation(status="failed", reason=reason, seconds=time.perf_counter() - start)
            self._adam |= base.value["adam"]["scores"]
        candidate = {"codes": {"candidate": code}, "seeds": seeds, "steps": steps}
        result = self.call_in_sandbox("score_codes", candidate, 300)
        seconds = time.perf_counter() - start
        if result.status != "ok" or not isinstance(result.value, dict):
            tail = (result.stderr or "").strip().splitlines()[-1:] or [result.reason]
            return Evaluation(
                status="failed", reason=f"scoring failed ({result.status}): {tail[0]}", seconds=seconds
            )
        value = result.value
        mine = value["candidate"]
        items = {str(s): mine["scores"][str(s)] for s in seeds}
        scores = np.array([x for s in seeds for x in items[str(s)]])
        adam = np.array([x for s in seeds for x in self._adam[str(s)]])
        details = {
            "problems": value["problems"],
            "best_lrs": mine["lrs"],
            "errors": mine["errors"],
            "seeds": seeds,
        }
        if not scores.any() and mine["errors"]:
            return Evaluation(
                status="failed",
                reason=f"every run failed: {mine['errors'][0]}",
                seconds=seconds,
                details=details,
            )
        metrics = {  # mean progress per problem
            problem: float(np.mean([items[str(s)][i] for s in seeds]))
            for i, problem in enumerate(value["problems"])
        }
        return Evaluation(
            status="ok",
            fitness=bootstrap(scores),
            vs_baseline=bootstrap(scores - adam),
            metrics=metrics,
            seconds=seconds,
            details=details,
            item_scores=items,
            baseline_item_scores={str(s): self._adam[str(s)] for s in seeds},
        )

    # ------------------------------------------------------------------ archive and proposer
    def seeds(self) -> list[SeedCandidate]:
        from .blocks import seed_archive

        return seed_archive()

    def offline_proposer(self, seed: int) -> OfflineProposer:
        from .blocks import BlockProposer

        return BlockProposer(seed)


def make_target(options: dict[str, Any], env: TargetEnv) -> OptimizerTarget:
    """disco's entry: `options` is this target's table in the config, `env` its cache dir and models."""
    return OptimizerTarget(OptimizerConfig.model_validate(options), env)
