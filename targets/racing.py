"""Sequential racing with a known σ: how many seeds a candidate earns, and which claims it may make.

Training noise is the seed (evals/results/zoo: the per-seed paired difference between two losses has
sd ≈ 0.066 with β screened), so two seeds cannot tell +0.02 from luck, and a run that asks 50 candidates
"are you better?" at 5% each finds a false "best" almost surely. The rule here:

- A candidate is scored as per-seed paired differences d_s against a reference (DPO's seed bank, or the
  incumbent) on seeds both ran; the instrument's σ per seed is measured once per task (a pilot) and known,
  so after n seeds   d̄ ~ N(δ, σ²/n)   and z = d̄·√n/σ.
- It is looked at after 2, 4, 8, 16, 32, 64 seeds (`stages`). At each look it is **dropped** when even an
  optimistic bound cannot reach the smallest effect worth finding (d̄ + futility_z·σ/√n < min_effect),
  and **better** when z passes an efficacy bound that holds the *run-level* error: the run's α is split
  over its candidate budget (Bonferroni) and, within a candidate, over the looks that may claim
  (`claim_stages`). Dropping never raises the error of a claim, so P(any false claim in a run) ≤ α.
- "beats DPO" over a whole run is decided by Benjamini–Hochberg at q over every raced candidate's
  p-value (each p-value Bonferroni-adjusted over the looks it had), so the share of false "beats DPO"
  among those claimed is ≤ q.
- A claimed candidate is then run on `confirm_seeds` fresh seeds, and what is shown for it comes from
  those alone (the seeds that selected it overstate it: the winner's curse).
- What is shown is d̄ with the two-sided interval d̄ ± z·σ/√n and n; a ranking uses the shrunk estimate
  d̄·τ²/(τ² + σ²/n) (τ: the spread of true effects among the run's candidates), never an in-sample max.

Pure functions of numbers: the same differences give the same decisions. evals/bench_fitness_calibration.py
measures the error rates, power, coverage and cost that these settings give.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from statistics import NormalDist
from typing import Any, Literal, NamedTuple

from pydantic import BaseModel, Field, model_validator

Decision = Literal["continue", "drop", "better", "not_separated"]
"""At a look: race on; out (clearly not better); claimed better; the last stage reached without a claim."""
Verdict = Literal["better", "worse", "not_separated"]
_NORMAL = NormalDist()
_TINY = 1e-12
"""A floor on the sd: identical scores on every seed (a bit-identical copy) give z = 0, not 0 / 0."""


def _student_t() -> Any:
    """scipy's Student's t, imported on first use: `disco runs show` reads scores without it (~1 s)."""
    from scipy.stats import t

    return t


class RaceConfig(BaseModel):
    """The racing rule's settings; `sigma` is the instrument's, measured by a pilot (never a guess)."""

    sigma: float | None = Field(default=None, gt=0)
    """Per-seed sd of a paired difference between two losses (one seed's mean item score difference), as a
    pilot measured it; None where none was measured: then nothing is decided before `own_sd_from` seeds,
    and from there on each comparison's own spread is used."""
    stages: tuple[int, ...] = (2, 4, 8, 16, 32, 64)
    """Cumulative seeds at each look. Up to 64 with `futility_z` 0.5: the calibration's frontier
    (evals/results/fitness_calibration) finds +0.05 with probability 0.80 against 0.55 for 32 seeds with
    futility 1, at a lower mean cost a candidate (36 s against 38 s): dropping the hopeless sooner pays for
    taking the promising further."""
    claim_stages: tuple[int, ...] | None = None
    """Looks at which "better" may be claimed (default: every stage from 8 seeds on: at 4, Student's t with
    3 degrees of freedom puts the run-level bar out of reach); the run's α is split over them, so fewer
    claim looks mean a lower bar at each."""
    alpha: float = Field(default=0.05, gt=0, lt=0.5)
    """Run-level: the chance that a run declares any false "best"."""
    candidate_budget: int = Field(default=50, ge=1)
    """How many candidates a run may race; α is split over them."""
    q: float = Field(default=0.1, gt=0, lt=1)
    """Benjamini–Hochberg level for "beats DPO" over a run."""
    min_effect: float = Field(default=0.02, ge=0)
    """The smallest improvement worth the seeds: a candidate that cannot plausibly reach it is dropped."""
    futility_z: float = Field(default=0.5, ge=0)
    """How optimistic the drop rule is: dropped when d̄ + futility_z·σ/√n < min_effect."""
    confidence: float = Field(default=0.95, gt=0.5, lt=1)
    """Two-sided level of the intervals shown."""
    confirm_seeds: int = Field(default=16, ge=0)
    """Fresh seeds a claimed candidate is trained on before its difference is shown: the seeds that
    selected it overstate it (the winner's curse), so what is shown comes from seeds that did not."""
    own_sd_from: int = Field(default=4, ge=2)
    """From this many seeds on, a candidate is judged with the larger of σ and its own sd of differences,
    against Student's t with n − 1 degrees of freedom: a candidate noisier than the pilot (one that falls
    off the grammar cliff on some seeds) cannot ride the pilot's σ to a false claim."""

    @model_validator(mode="after")
    def _stages_make_sense(self) -> RaceConfig:
        if not self.stages or list(self.stages) != sorted(set(self.stages)) or self.stages[0] < 1:
            raise ValueError(f"stages must be increasing seed counts ≥ 1, got {self.stages}")
        if self.claim_stages is not None and not set(self.claim_stages) <= set(self.stages):
            raise ValueError(f"claim_stages {self.claim_stages} must be among stages {self.stages}")
        return self

    @property
    def claims(self) -> tuple[int, ...]:
        if self.claim_stages is not None:
            return tuple(self.claim_stages)
        later = tuple(n for n in self.stages if n >= 8)
        return later or self.stages[-1:]

    @property
    def alpha_per_look(self) -> float:
        return self.alpha / self.candidate_budget / len(self.claims)

    @property
    def efficacy_z(self) -> float:
        """The z a look on the pilot's σ alone must pass to claim "better" (one-sided)."""
        return _NORMAL.inv_cdf(1.0 - self.alpha_per_look)

    def critical(self, n: int) -> float:
        """What the statistic must pass at a look after n seeds."""
        if n < self.own_sd_from:
            return self.efficacy_z
        return float(_student_t().ppf(1.0 - self.alpha_per_look, n - 1))

    def quantile(self, n: int, level: float) -> float:
        """The two-sided interval's multiplier at n seeds (normal on σ alone, t once the own sd counts)."""
        p = 0.5 + level / 2.0
        return _NORMAL.inv_cdf(p) if n < self.own_sd_from else float(_student_t().ppf(p, n - 1))

    @property
    def interval_z(self) -> float:
        return _NORMAL.inv_cdf(0.5 + self.confidence / 2.0)

    def error_rate(self) -> str:
        """The error rates the claims are tested at, in words (shown next to every verdict)."""
        return (
            f"'best' at ≤ {self.alpha:g} false per run ({self.candidate_budget} candidates × "
            f"{len(self.claims)} looks, one-sided α {self.alpha_per_look:.2g} each); 'beats DPO' at FDR "
            f"q = {self.q:g}"
        )


class Look(BaseModel):
    """A candidate's standing after n seeds."""

    n: int
    diff: float
    """d̄: the mean per-seed difference (candidate − reference)."""
    ci_low: float | None
    ci_high: float | None
    """None while no spread is known (no pilot σ, fewer seeds than `own_sd_from`)."""
    z: float | None
    p_value: float | None
    """One-sided p of "no better", Bonferroni-adjusted over the claim looks this race has had."""
    decision: Decision
    next_n: int | None = None
    """Seeds the next look needs (None when the race is over)."""
    reason: str = ""

    @property
    def verdict(self) -> Verdict:
        """A comparison at this look at the interval's confidence (`better` only through the race's bar)."""
        if self.decision == "better":
            return "better"
        return "worse" if self.ci_high is not None and self.ci_high < 0 else "not_separated"


def seed_differences(
    candidate: Mapping[str, Sequence[float]], reference: Mapping[str, Sequence[float]]
) -> list[float]:
    """Per common seed (in seed order), the mean item-score difference; a seed whose item counts differ is
    not comparable and is left out."""
    out = []
    for key in sorted(set(candidate) & set(reference), key=int):
        a, b = candidate[key], reference[key]
        if a and len(a) == len(b):
            out.append(sum(x - y for x, y in zip(a, b, strict=True)) / len(a))
    return out


def look(diffs: Sequence[float], cfg: RaceConfig) -> Look:
    """The decision after the seeds in `diffs` (the first n of them, n the largest stage reached)."""
    reached = [n for n in cfg.stages if n <= len(diffs)]
    if not reached:
        raise ValueError(f"{len(diffs)} seed(s): the first look is at {cfg.stages[0]}")
    n = reached[-1]
    d = list(diffs[:n])
    mean = sum(d) / n
    later = [m for m in cfg.stages if m > n]
    sd = _sd(d, mean, cfg)
    if sd is None:  # no pilot σ and too few seeds for their own spread: nothing to decide yet
        unknown = {"n": n, "diff": mean, "ci_low": None, "ci_high": None, "z": None, "p_value": None}
        if not later:
            return Look(**unknown, decision="not_separated", reason=f"no spread known after {n} seeds")
        why = f"no σ measured: race on to {later[0]} seeds to see the spread"
        return Look(**unknown, decision="continue", next_n=later[0], reason=why)
    se = sd / math.sqrt(n)
    z = mean / se
    half = cfg.quantile(n, cfg.confidence) * se
    looks_so_far = [m for m in cfg.claims if m <= n]
    p_look = 1.0 - (_NORMAL.cdf(z) if n < cfg.own_sd_from else float(_student_t().cdf(z, n - 1)))
    p_value = min(1.0, p_look * max(1, len(looks_so_far)))
    base = {"n": n, "diff": mean, "ci_low": mean - half, "ci_high": mean + half, "z": z, "p_value": p_value}
    if n in cfg.claims and z >= cfg.critical(n):
        why = f"statistic {z:.2f} ≥ {cfg.critical(n):.2f} after {n} seeds"
        return Look(**base, decision="better", reason=why)
    if mean + cfg.futility_z * se < cfg.min_effect:
        why = f"cannot plausibly reach +{cfg.min_effect:g}: {mean:+.4f} + {cfg.futility_z:g}·{se:.4f}"
        return Look(**base, decision="drop", reason=why)
    if not later:
        return Look(**base, decision="not_separated", reason=f"not shown better after {n} seeds")
    return Look(**base, decision="continue", next_n=later[0], reason=f"race on to {later[0]} seeds")


def _sd(d: Sequence[float], mean: float, cfg: RaceConfig) -> float | None:
    """The pilot's σ, or the candidate's own sd of differences where it is larger and n allows (None: no
    spread known yet)."""
    if len(d) < cfg.own_sd_from:
        return cfg.sigma
    own = math.sqrt(sum((x - mean) ** 2 for x in d) / (len(d) - 1))
    return max(cfg.sigma or 0.0, own, _TINY)


class _Shown(NamedTuple):
    """What `shown` says, every part known."""

    n: int
    diff: float
    ci_low: float
    ci_high: float
    z: float
    p_value: float


def shown(diffs: Sequence[float], cfg: RaceConfig) -> Look:
    """The estimate to show from seeds that selected nothing (a claimed candidate's confirmation seeds): d̄
    with its interval and n, no decision."""
    s = _shown(diffs, cfg)
    return Look(
        n=s.n,
        diff=s.diff,
        ci_low=s.ci_low,
        ci_high=s.ci_high,
        z=s.z,
        p_value=s.p_value,
        decision="better",
        reason=f"on {s.n} fresh confirmation seeds",
    )


def _shown(diffs: Sequence[float], cfg: RaceConfig) -> _Shown:
    n = len(diffs)
    if n == 0:
        raise ValueError("nothing to show: no confirmation seeds")
    mean = sum(diffs) / n
    sd = _sd(diffs, mean, cfg)
    if sd is None:
        raise ValueError(f"no spread to show on {n} seed(s) without a measured σ: {cfg.own_sd_from} needed")
    se = sd / math.sqrt(n)
    half = cfg.quantile(n, cfg.confidence) * se
    z = mean / se
    p = 1.0 - (_NORMAL.cdf(z) if n < cfg.own_sd_from else float(_student_t().cdf(z, n - 1)))
    return _Shown(n=n, diff=mean, ci_low=mean - half, ci_high=mean + half, z=z, p_value=p)


class Comparison(BaseModel):
    """One loss against the baseline on fresh seeds: what every surface shows, with its verdict."""

    diff: float
    ci_low: float
    ci_high: float
    n_seeds: int
    verdict: Verdict
    p_value: float
    """One-sided p of "no better than the baseline"."""
    tested_at: str
    """The error rate the verdict holds at, in words."""


def compare_to_baseline(
    diffs_by_name: Mapping[str, Sequence[float]], cfg: RaceConfig
) -> dict[str, Comparison]:
    """Several losses, each as per-seed differences from the baseline on seeds that selected nothing (a
    table, not a race): `better` by Benjamini–Hochberg at q over the names compared, `worse` when the
    interval lies below 0, `not_separated` otherwise."""
    stats = {name: _shown(list(d), cfg) for name, d in diffs_by_name.items() if d}
    winners = benjamini_hochberg({name: s.p_value for name, s in stats.items()}, cfg.q)
    tested = (
        f"'better' by Benjamini–Hochberg at FDR q = {cfg.q:g} over {len(stats)} loss(es); "
        f"intervals {cfg.confidence:.0%} two-sided"
        + (f" (σ per seed ≥ {cfg.sigma:.4f})" if cfg.sigma else " (each loss's own spread)")
    )
    out = {}
    for name, s in stats.items():
        verdict: Verdict = "better" if name in winners else ("worse" if s.ci_high < 0 else "not_separated")
        out[name] = Comparison(
            diff=s.diff,
            ci_low=s.ci_low,
            ci_high=s.ci_high,
            n_seeds=s.n,
            verdict=verdict,
            p_value=s.p_value,
            tested_at=tested,
        )
    return out


def race(diffs: Sequence[float], cfg: RaceConfig) -> list[Look]:
    """Every look that `diffs` allow, in order, stopping at the first that ends the race."""
    out = []
    for n in cfg.stages:
        if n > len(diffs):
            break
        step = look(diffs[:n], cfg)
        out.append(step)
        if step.decision != "continue":
            break
    return out


def benjamini_hochberg(p_values: Mapping[str, float], q: float) -> set[str]:
    """The names whose hypotheses BH rejects at FDR q (step-up: the largest k with p_(k) ≤ k·q/m)."""
    ranked = sorted(p_values.items(), key=lambda kv: kv[1])
    m = len(ranked)
    cutoff = 0
    for k, (_, p) in enumerate(ranked, start=1):
        if p <= k * q / m:
            cutoff = k
    return {name for name, _ in ranked[:cutoff]}


def prior_spread(estimates: Iterable[tuple[float, int]], sigma: float) -> float:
    """τ² by the method of moments from the run's (d̄, n): the variance of true effects around 0 (DPO),
    floored at 0; shrinkage pulls each d̄ toward 0 by how little its n can say against that spread."""
    pairs = list(estimates)
    if not pairs:
        return 0.0
    excess = [d * d - sigma * sigma / n for d, n in pairs]
    return max(0.0, sum(excess) / len(excess))


def shrunk(diff: float, n: int, sigma: float, tau2: float) -> float:
    """The posterior mean of δ under δ ~ N(0, τ²): what a ranking uses instead of the noisy d̄."""
    noise = sigma * sigma / n
    return diff * tau2 / (tau2 + noise) if tau2 + noise > 0 else 0.0


def shrunk_differences(
    items: Mapping[str, tuple[float, float, float]], confidence: float = 0.95
) -> dict[str, float]:
    """Each (diff, ci_low, ci_high) pulled toward 0 by how little its seeds can say, under δ ~ N(0, τ²) with
    τ² by the method of moments over all of them: what a ranking uses instead of the noisy (and, among many,
    winner's-cursed) point difference."""
    z = _NORMAL.inv_cdf(0.5 + confidence / 2.0)
    se2 = {key: ((high - low) / (2 * z)) ** 2 for key, (_, low, high) in items.items()}
    if not se2:
        return {}
    tau2 = max(0.0, sum(items[k][0] ** 2 - v for k, v in se2.items()) / len(se2))
    return {k: items[k][0] * (tau2 / (tau2 + v) if tau2 + v > 0 else 0.0) for k, v in se2.items()}


def sigma_upper(sample_sd: float, dof: int, level: float = 0.9) -> float:
    """An upper confidence bound on σ from a pilot's sd with `dof` degrees of freedom (Wilson–Hilferty
    χ² quantile): racing with an underestimated σ would claim too much."""
    if dof < 1:
        raise ValueError("a pilot needs at least two seeds")
    z = _NORMAL.inv_cdf(1.0 - level)  # lower χ² quantile ⇒ upper σ
    chi2 = dof * (1.0 - 2.0 / (9.0 * dof) + z * math.sqrt(2.0 / (9.0 * dof))) ** 3
    return sample_sd * math.sqrt(dof / chi2)
