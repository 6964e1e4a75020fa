"""The baseline zoo: published DPO-style losses, each a file written exactly as a candidate would be.

Every `<name>.py` here holds a single loss function (no imports: `torch`, `F` and `math` are the
candidate's globals) whose first line is a one-line citation. The files are read as package data, never
imported: they are seeds for the archive, baselines for fitness, and examples for the design prompt.
"""

from __future__ import annotations

from importlib import resources

from pydantic import BaseModel


class ZooLoss(BaseModel):
    """A published loss as candidate source, with where it comes from."""

    name: str
    """Short name, also the file name (`lrml` → `lrml.py`)."""
    title: str
    citation: str
    """The file's first-line comment, without the leading `# `."""
    code: str
    """The candidate source, exactly as stored (citation line included)."""
    notes: str = ""
    """How this version differs from a reference implementation, when it does."""


class UnknownZooLoss(KeyError):
    """Raised for a name that is not in the zoo; the message lists the valid names."""

    def __str__(self) -> str:  # KeyError would show the message in quotes
        return str(self.args[0])


# name -> (title, notes); the order is the order of `disco losses list`.
_ZOO: dict[str, tuple[str, str]] = {
    "dpo": ("DPO (sigmoid), optional label smoothing via self.label_smoothing", ""),
    "cdpo": ("Conservative DPO, ε = 0.1", "TRL: loss_type='sigmoid' with label_smoothing=0.1."),
    "slic": ("SLiC hinge loss, relu(1 - βρ)", "TRL: loss_type='hinge'."),
    "ipo": (
        "IPO, (ρ - 1/(2β))²",
        "Computed on log-probs SUMMED over the completion (all a candidate sees); TRL's loss_type='ipo' "
        "averages them over the completion length, so the two differ unless completions have length 1.",
    ),
    "kto_pair": (
        "KTO on paired data (old TRL kto_pair)",
        "Batch-dependent by design (batch-mean KL reference points). Returns chosen + rejected terms per "
        "pair, shape (B,); old TRL concatenated them to (2B,), so its batch mean is half of this one's.",
    ),
    "robust_dpo": ("Robust DPO, ε = 0.1", "TRL: loss_type='robust' with label_smoothing=0.1."),
    "lrml": (
        "LRML / DiscoPOP, log-ratio modulated loss, τ = 0.05",
        "σ(z/τ)·exp(-z) is computed as exp(-z + logσ(z/τ)), so the loss and its gradient stay finite for "
        "very negative margins where the published form gives inf·0 = NaN; equal elsewhere.",
    ),
    "padll": ("PADLL, performance-adaptive decay logistic loss", ""),
    "aqfl": ("AQFL, adaptive quantile feedback loss", "Batch-dependent; NaN for a batch of one (std)."),
    "aql": ("AQL, adaptive quantile loss", "Slightly batch-dependent (batch-mean threshold)."),
    "dbaql": (
        "DBAQL, dynamic blended adaptive quantile loss",
        "Batch-dependent; NaN for a batch of one (var); exp term overflows for very negative margins.",
    ),
    "cell": ("CELL, combined exponential + logistic loss", "exp term overflows for very negative margins."),
    "pfl": ("PFL, policy focused loss", ""),
}


def zoo_names() -> list[str]:
    """Every zoo loss name, in listing order."""
    return list(_ZOO)


def get_zoo_loss(name: str) -> ZooLoss:
    """The zoo loss called `name`; an unknown name raises UnknownZooLoss listing the valid ones."""
    if name not in _ZOO:
        raise UnknownZooLoss(f"no zoo loss named {name!r}; valid names: {', '.join(_ZOO)}")
    title, notes = _ZOO[name]
    code = resources.files(__name__).joinpath(f"{name}.py").read_text(encoding="utf-8")
    citation = code.splitlines()[0].removeprefix("#").strip()
    return ZooLoss(name=name, title=title, citation=citation, code=code, notes=notes)


def list_zoo() -> list[ZooLoss]:
    """All zoo losses, in listing order."""
    return [get_zoo_loss(name) for name in _ZOO]
