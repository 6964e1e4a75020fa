"""A DPO-loss genome: a weighted, optionally gated mix of loss terms of the margin z = βρ.

The offline proposer (`targets.dpo.proposer`) searches this space instead of free-form code. Every term
is a building block of a published loss in the zoo (`targets/dpo/zoo/`), written in its numerically
stable form, so rendered genomes pass the target's checks by construction rather than by luck:

    losses = Σ_i w_i · g_i(z) · term_i(z),   g_i ∈ {1, 1 - σ(z/τ), σ(z/τ)}

where the gate σ(z/τ) is LRML's log-ratio modulation (DiscoPOP): branch `low` acts on mis-ordered pairs
(z < 0), `high` on ordered ones. `render` turns a genome into candidate code whose first line,
`# genome: {json}`, lets the proposer read a parent's genome back from its code.

Pure string work: nothing here imports torch.
"""

from __future__ import annotations

import hashlib
import json
from typing import Literal, NamedTuple

from pydantic import BaseModel, Field, ValidationError

TermKind = Literal[
    "logistic",
    "smoothed_logistic",
    "robust_logistic",
    "hinge",
    "squared",
    "exponential",
    "sigmoid",
    "tanh_logistic",
]
Branch = Literal["all", "low", "high"]
GENOME_PREFIX = "# genome: "
MAX_TERMS = 3


class Bounds(NamedTuple):
    default: float
    low: float
    high: float


class TermSpec(NamedTuple):
    """What a term kind is, where it comes from and which of its parameters mean something."""

    tag: str
    """Short name used in candidate names and variable names."""
    source: str
    """The zoo loss it is taken from (the why of including it)."""
    temperature: Bounds | None = None
    margin: Bounds | None = None
    eps: Bounds | None = None
    cap: Bounds | None = None


# Bounds keep every rendered term finite and trainable under the checks (|ρ| ≤ 1e3, β ≤ 5, bf16):
# a sigmoid or tanh whose argument is saturated at every pair has an exactly zero gradient in float32,
# hence the floors on their temperatures and the ceiling on the sigmoid's margin.
VOCABULARY: dict[TermKind, TermSpec] = {
    "logistic": TermSpec(
        "logistic",
        "DPO (dpo.py): -log σ((z - m)/t) as softplus",
        Bounds(1.0, 0.05, 10.0),
        Bounds(0.0, 0.0, 5.0),
    ),
    "smoothed_logistic": TermSpec(
        "smoothed",
        "cDPO (cdpo.py): label smoothing ε pulls z towards log((1-ε)/ε)",
        eps=Bounds(0.1, 0.0, 0.4),
    ),
    "robust_logistic": TermSpec(
        "robust", "Robust DPO (robust_dpo.py): unbiased under label-flip rate ε", eps=Bounds(0.1, 0.0, 0.4)
    ),
    "hinge": TermSpec(
        "hinge", "SLiC (slic.py): relu(m - z), stops at the margin", margin=Bounds(1.0, 0.05, 5.0)
    ),
    "squared": TermSpec(
        "squared",
        "IPO (ipo.py): (ρ - m/(2β))², a bounded preference strength",
        margin=Bounds(1.0, 0.05, 10.0),
    ),
    "exponential": TermSpec(
        "exp",
        "CELL / LRML (cell.py, lrml.py): exp(-z/t), exponent capped so it cannot overflow",
        Bounds(1.0, 0.25, 10.0),
        cap=Bounds(30.0, 5.0, 40.0),
    ),
    "sigmoid": TermSpec(
        "sigmoid", "KTO pair (kto_pair.py): 1 - σ(z), bounded", Bounds(1.0, 0.25, 10.0), Bounds(0.0, 0.0, 2.0)
    ),
    "tanh_logistic": TermSpec(
        "tanh",
        "PADLL-style robustness (padll.py): t·tanh(softplus(-z)/t), DPO near 0, saturating at t",
        Bounds(1.0, 0.5, 10.0),
    ),
}
TAU = Bounds(0.05, 0.01, 5.0)
"""The gate's temperature; 0.05 is LRML's (the DiscoPOP paper's best setting)."""
WEIGHT_FLOOR = 0.02


class Term(BaseModel):
    """One weighted loss term; parameters its kind does not use keep their defaults and are ignored."""

    kind: TermKind
    weight: float = Field(default=1.0, ge=0)
    branch: Branch = "all"
    """`all`: ungated; `low`: times 1 - σ(z/τ) (mis-ordered pairs); `high`: times σ(z/τ) (ordered pairs)."""
    temperature: float = Field(default=1.0, gt=0)
    margin: float = 0.0
    eps: float = Field(default=0.0, ge=0, lt=0.5)
    """Label-noise rate of the smoothed and robust logistic terms; robust DPO divides by 1 - 2ε."""
    cap: float | None = None
    """Largest exponent of an exponential term; None renders the raw, overflowing exp (never proposed)."""


class Genome(BaseModel):
    """A loss as 1-3 terms of z = βρ, optionally split by LRML's gate σ(z/τ)."""

    terms: list[Term] = Field(min_length=1, max_length=MAX_TERMS)
    tau: float = Field(default=TAU.default, gt=0)

    @property
    def gated(self) -> bool:
        return any(t.branch != "all" for t in self.terms)

    def key(self) -> str:
        """Canonical compact JSON: equal genomes have equal keys (and render to equal code)."""
        return json.dumps(self.model_dump(mode="json", exclude_defaults=True), separators=(",", ":"))


def sig(x: float, digits: int = 3) -> float:
    """`x` rounded to `digits` significant figures, so rendered numbers stay short and round-trip exactly."""
    return float(f"{x:.{digits}g}")


def clip(x: float, bounds: Bounds) -> float:
    return sig(min(max(x, bounds.low), bounds.high))


def default_term(kind: TermKind, weight: float = 1.0, branch: Branch = "all") -> Term:
    """A term with its kind's zoo defaults (ε = 0.1 as in cdpo.py, margin 1 as in slic.py, ...)."""
    spec = VOCABULARY[kind]
    return Term(
        kind=kind,
        weight=weight,
        branch=branch,
        temperature=spec.temperature.default if spec.temperature else 1.0,
        margin=spec.margin.default if spec.margin else 0.0,
        eps=spec.eps.default if spec.eps else 0.0,
        cap=spec.cap.default if spec.cap else None,
    )


def normalise(genome: Genome) -> Genome:
    """Clip every parameter into its kind's bounds, reset unused ones, and scale the weights to sum to 1.

    Scaling the whole loss changes little under Adam, so fixing the sum removes a direction the search
    would otherwise waste proposals on. A raw (cap None) exponential stays raw: only `repair` adds a cap.
    A gated genome keeps at least one term on the low or ungated branch.
    """
    total = sum(max(t.weight, WEIGHT_FLOOR) for t in genome.terms)
    terms = []
    for t in genome.terms:
        spec = VOCABULARY[t.kind]
        terms.append(
            Term(
                kind=t.kind,
                weight=sig(max(t.weight, WEIGHT_FLOOR) / total),
                # IPO's (ρ - m/(2β))² is in units of ρ², huge next to the other terms: on the high branch
                # the gate's rise at z = 0 times that square makes the loss grow with z, so it stays ungated.
                branch="all" if t.kind == "squared" and t.branch == "high" else t.branch,
                temperature=clip(t.temperature, spec.temperature) if spec.temperature else 1.0,
                margin=clip(t.margin, spec.margin) if spec.margin else 0.0,
                eps=clip(t.eps, spec.eps) if spec.eps else 0.0,
                cap=clip(t.cap, spec.cap) if spec.cap and t.cap is not None else None,
            )
        )
    gated = any(t.branch != "all" for t in terms)
    if gated and all(t.branch == "high" for t in terms):
        # Only σ(z/τ)-weighted terms would give mis-ordered pairs (z << 0) no loss at all, and a loss that
        # rises with z near 0: the first term takes the low branch instead.
        terms[0] = terms[0].model_copy(update={"branch": "low"})
    return Genome(terms=terms, tau=clip(genome.tau, TAU) if gated else TAU.default)


SEEDS: dict[str, Genome] = {
    "dpo": Genome(terms=[default_term("logistic")]),
    "cdpo": Genome(terms=[default_term("smoothed_logistic")]),
    "robust_dpo": Genome(terms=[default_term("robust_logistic")]),
    "slic": Genome(terms=[default_term("hinge")]),
    "ipo": Genome(terms=[default_term("squared")]),
    "kto_pair": Genome(terms=[default_term("sigmoid")]),
    "cell": Genome(terms=[default_term("exponential", 0.5), default_term("logistic", 0.5)]),
    # LRML: (1 - σ(z/τ))·logistic + σ(z/τ)·exp(-z), τ = 0.05.
    "lrml": Genome(terms=[default_term("logistic", 0.5, "low"), default_term("exponential", 0.5, "high")]),
    # AQL without its batch statistic: logistic below the switch, SLiC's hinge above it.
    "aql": Genome(terms=[default_term("logistic", 0.5, "low"), default_term("hinge", 0.5, "high")]),
    # DBAQL once its blend saturates: a tempered logistic (t = 0.9).
    "dbaql": Genome(terms=[Term(kind="logistic", temperature=0.9)]),
    "tanh_dpo": Genome(terms=[default_term("tanh_logistic")]),
}
"""Genomes equivalent to the zoo's losses (or their per-pair core): where a search without parents starts."""


def parse_genome(code: str) -> Genome | None:
    """The genome in code's `# genome:` line, or None when it has none or it does not parse."""
    for line in code.splitlines():
        if line.startswith(GENOME_PREFIX):
            try:
                return Genome.model_validate(json.loads(line.removeprefix(GENOME_PREFIX)))
            except (ValueError, ValidationError):  # JSONDecodeError is a ValueError
                return None
    return None


def genome_name(genome: Genome) -> str:
    """A snake_case name from the terms' tags plus a short hash, e.g. `logistic_exp_gated_3f2a`."""
    tags = list(dict.fromkeys(VOCABULARY[t.kind].tag for t in genome.terms))
    if genome.gated:
        tags.append("gated")
    elif len(genome.terms) > 1:
        tags.append("mix")
    digest = hashlib.sha256(genome.key().encode()).hexdigest()[:4]
    return "_".join([*tags, digest])


def _n(x: float) -> str:
    return repr(sig(x, 4))


def _scaled(t: Term) -> str:
    """The term's argument: -z, -z / t, or (m - z) / t, so that the term falls as z grows."""
    arg = "-z" if t.margin == 0 else f"({_n(t.margin)} - z)"
    if t.temperature != 1:
        arg += f" / {_n(t.temperature)}"
    return arg


def _term_expr(t: Term) -> tuple[str, str]:
    """(expression, comment) computing one term of shape (B,)."""
    if t.kind == "logistic":
        return f"F.softplus({_scaled(t)})", "DPO: -log σ((z - m)/t), as softplus (finite for any z)"
    if t.kind == "smoothed_logistic":
        e = t.eps
        return (
            f"{_n(1 - e)} * F.softplus(-z) + {_n(e)} * F.softplus(z)",
            "cDPO: labels trusted with prob 1 - ε",
        )
    if t.kind == "robust_logistic":
        e = t.eps
        return (
            f"({_n(1 - e)} * F.softplus(-z) - {_n(e)} * F.softplus(z)) / {_n(1 - 2 * e)}",
            "robust DPO: unbiased under flip rate ε",
        )
    if t.kind == "hinge":
        return f"torch.relu({_n(t.margin)} - z)", "SLiC: no push once z ≥ m"
    if t.kind == "squared":
        return f"(rho - {_n(t.margin)} / (2 * self.beta)) ** 2", "IPO: regress ρ onto m/(2β), not +∞"
    if t.kind == "exponential":
        if t.cap is None:
            return f"torch.exp({_scaled(t)})", "CELL's exp(-z/t); overflows for very negative z"
        return (
            f"torch.exp(torch.clamp({_scaled(t)}, max={_n(t.cap)}))",
            "CELL/LRML: exp(-z/t), capped exponent",
        )
    if t.kind == "sigmoid":
        return f"torch.sigmoid({_scaled(t)})", "KTO's 1 - σ((z - m)/t): bounded"
    s = _n(t.temperature)  # tanh_logistic
    return f"{s} * torch.tanh(F.softplus(-z) / {s})", "-log σ(z) saturating at t: robust to bad labels"


_INPUTS = (
    "policy_chosen_logps",
    "policy_rejected_logps",
    "reference_chosen_logps",
    "reference_rejected_logps",
)


def render(genome: Genome, name: str | None = None) -> str:
    """Candidate code for `genome`: one line per term, each with its shape, and the genome as line 1."""
    name = name or genome_name(genome)
    lines = [
        GENOME_PREFIX + genome.key(),
        f"def {name}(",
        "    self, " + ", ".join(_INPUTS),
        "):",
        "    pi_logratios = policy_chosen_logps - policy_rejected_logps  # (B,)",
        "    ref_logratios = reference_chosen_logps - reference_rejected_logps  # (B,)",
        "    rho = pi_logratios - ref_logratios  # (B,) ρ, the log-ratio margin",
        "    z = self.beta * rho  # (B,) z = βρ, the implicit reward margin",
    ]
    if genome.gated:
        tau = _n(genome.tau)
        lines.append(
            f"    gate = torch.sigmoid(z / {tau})  # (B,) LRML's modulation: 0 if z << 0, 1 if z >> 0"
        )
    names: list[str] = []
    for t in genome.terms:
        count = sum(other.kind == t.kind for other in genome.terms[: len(names)])
        var = t.kind if count == 0 else f"{t.kind}_{count + 1}"
        names.append(var)
        expr, comment = _term_expr(t)
        lines.append(f"    {var} = {expr}  # (B,) {comment}")
    single = len(genome.terms) == 1 and not genome.gated
    for i, (t, var) in enumerate(zip(genome.terms, names, strict=True)):
        factor = {"all": "", "low": "(1 - gate) * ", "high": "gate * "}[t.branch]
        addend = var if single else f"{_n(t.weight)} * {factor}{var}"
        rhs = addend if i == 0 else f"losses + {addend}"
        lines.append(f"    losses = {rhs}  # (B,)")
    lines.append("    return losses  # (B,)")
    return "\n".join(lines) + "\n"
