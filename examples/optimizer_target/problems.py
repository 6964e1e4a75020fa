"""Small optimisation problems on the CPU, each rebuilt from a seed: what an update rule is scored on.

A rule is run from the problem's start for `STEPS` steps at every learning rate of `LRS`; its score on
the problem is its best progress over the grid, where progress is the fraction of `ORDERS` (12) orders of
magnitude of the optimality gap f(x₀) − f* that it closed (0: no progress or diverged, 1: all of them).
Tuning the learning rate per rule keeps the comparison about the rule, not about its step size.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

STEPS = 200
LRS = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0)
ORDERS = 12.0
Update = Callable[[Any, np.ndarray, np.ndarray, dict], tuple[np.ndarray, dict]]


@dataclass
class Hyper:
    """The `self` a candidate sees."""

    lr: float


@dataclass
class Problem:
    name: str
    x0: np.ndarray
    loss: Callable[[np.ndarray], float]
    grad: Callable[[np.ndarray, np.random.Generator], np.ndarray]
    """The gradient at x; the generator drives the noise of a stochastic problem."""
    f_star: float


def quadratic(name: str, seed: int, cond: float, dim: int = 10, noise: float = 0.0) -> Problem:
    """½ xᵀAx with A's eigenvalues spread log-evenly over [1/cond, 1] in a random basis; f* = 0."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(dim, dim)))
    a = (q * np.logspace(-math.log10(cond), 0.0, dim)) @ q.T  # (dim, dim), symmetric positive definite
    return Problem(
        name,
        rng.normal(size=dim),
        lambda x: 0.5 * float(x @ a @ x),
        lambda x, r: a @ x + noise * r.normal(size=dim),
        0.0,
    )


def rosenbrock(seed: int) -> Problem:
    """The banana valley (1 − x)² + 100 (y − x²)², from near the classic start (−1.2, 1); f* = 0."""
    rng = np.random.default_rng(seed)

    def loss(p: np.ndarray) -> float:
        return float((1 - p[0]) ** 2 + 100 * (p[1] - p[0] ** 2) ** 2)

    def grad(p: np.ndarray, _: np.random.Generator) -> np.ndarray:
        return np.array([-2 * (1 - p[0]) - 400 * p[0] * (p[1] - p[0] ** 2), 200 * (p[1] - p[0] ** 2)])

    return Problem("rosenbrock", np.array([-1.2, 1.0]) + 0.1 * rng.normal(size=2), loss, grad, 0.0)


def logistic(seed: int, n: int = 200, dim: int = 10, reg: float = 1e-2) -> Problem:
    """L2-regularised logistic regression on noisy synthetic labels; f* found by Newton's method."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, dim))
    s = np.sign(x @ rng.normal(size=dim) + 0.5 * rng.normal(size=n))  # (n,) labels ±1

    def loss(w: np.ndarray) -> float:
        return float(np.mean(np.logaddexp(0.0, -s * (x @ w))) + 0.5 * reg * w @ w)

    def grad(w: np.ndarray, _: np.random.Generator | None = None) -> np.ndarray:
        p = 0.5 * (1 - np.tanh(0.5 * s * (x @ w)))  # σ(−s·xw), stable
        return -(x.T @ (s * p)) / n + reg * w

    w = np.zeros(dim)
    for _ in range(30):
        p = 0.5 * (1 - np.tanh(0.5 * s * (x @ w)))
        hessian = (x.T * (p * (1 - p))) @ x / n + reg * np.eye(dim)
        w = w - np.linalg.solve(hessian, grad(w))
    return Problem("logistic", np.zeros(dim), loss, grad, loss(w))


def make_problems(seed: int) -> list[Problem]:
    """The problem set of one evaluation seed, always in this order (item i of every candidate pairs)."""
    return [
        quadratic("quadratic_k10", seed, cond=10.0),
        quadratic("quadratic_k1000", seed + 10_000, cond=1000.0),
        quadratic("noisy_quadratic", seed + 20_000, cond=100.0, noise=0.05),
        rosenbrock(seed),
        logistic(seed),
    ]


PROBLEM_NAMES = ["quadratic_k10", "quadratic_k1000", "noisy_quadratic", "rosenbrock", "logistic"]
"""The names of `make_problems`' items, in order."""


def run(update: Update, problem: Problem, lr: float, steps: int = STEPS, seed: int = 0) -> float:
    """The loss after `steps` updates (inf when the rule diverged or broke the shape)."""
    rng = np.random.default_rng(seed)
    x, state = problem.x0.copy(), {}
    with np.errstate(all="ignore"):  # overflow on the way to inf is the expected form of divergence
        for _ in range(steps):
            x, state = update(Hyper(lr), x, problem.grad(x, rng), state)
            x = np.asarray(x, dtype=float)
            if x.shape != problem.x0.shape or not np.all(np.isfinite(x)):
                return math.inf
        final = problem.loss(x)
    return final if math.isfinite(final) else math.inf


def progress(problem: Problem, final: float) -> float:
    """Orders of magnitude of the optimality gap closed, over ORDERS, in [0, 1]."""
    gap0 = problem.loss(problem.x0) - problem.f_star
    if not math.isfinite(final):
        return 0.0
    gap = max(final - problem.f_star, gap0 * 10**-ORDERS)
    return min(max(math.log10(gap0 / gap) / ORDERS, 0.0), 1.0)


def score(update: Update, seed: int, steps: int = STEPS) -> tuple[list[float], list[float], list[str]]:
    """Per problem of `seed`: the best progress over the learning-rate grid, the learning rate that
    reached it, and the errors the rule raised (a raising run counts as diverged)."""
    scores, best_lrs, errors = [], [], []
    for problem in make_problems(seed):
        best, best_lr = 0.0, math.nan
        for lr in LRS:
            try:
                value = progress(problem, run(update, problem, lr, steps, seed))
            except Exception as exc:  # the candidate's own failure, reported with the scores
                errors.append(f"{problem.name} at lr={lr:g}: {type(exc).__name__}: {exc}")
                value = 0.0
            if value > best:
                best, best_lr = value, lr
        scores.append(best)
        best_lrs.append(best_lr)
    return scores, best_lrs, errors
