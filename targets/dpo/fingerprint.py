"""Behavioural fingerprint of a DPO loss: what it computes, not how it is written.

Two losses that are the same function (renamed variables, reordered terms, softplus(-z) written as
-logsigmoid(z), constants folded, comments changed) give the same losses and gradients on the same
inputs, however different their text; a changed constant or a different shape of loss does not. The
fingerprint is the loss and d loss / d policy log-probs on one fixed batch, at a fixed grid of β:

  batch 1, rows 0..14   margin grid: ρ from -20 to 20, split evenly between chosen and rejected
          rows 15..23  fixed random realistic log-probs (seeded), so that losses using the log-probs
                       themselves (not only ρ) are told apart
  batch 2, 15 rows      the margin grid shrunk 1000× (policy ≈ reference, as at the start of training):
                       losses built on batch statistics (std, var, mean of the margins) behave very
                       differently on a narrow batch, and a term they switch off on wide batches shows

Each value x becomes asinh(x / SCALE): about linear below SCALE and logarithmic above, so that the
l2 distance in memory measures relative differences (a 1% change of every value is about 0.01 RMS) and
no single huge value dominates. Run only on candidates that passed the checks: this calls the code
in-process, after the static policy, under the same SIGALRM time limit as the checks.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import warnings

import torch

from targets.dpo.candidate import CandidateError, LossContext, load_candidate
from targets.dpo.checks import CallTimeout, time_limit
from targets.dpo.loss_policy import check_loss_policy

BETAS: tuple[float, ...] = (0.1, 0.5, 2.0)
MARGINS: tuple[float, ...] = tuple(float(x) for x in torch.linspace(-20.0, 20.0, 15).tolist())
N_RANDOM = 9
SCALE = 1e-3
"""Values far below this count as zero: a loss of 1e-6 and one of 1e-7 behave the same in training."""
NARROW = 1e-3
BATCH_SIZES: tuple[int, ...] = (len(MARGINS) + N_RANDOM, len(MARGINS))
DIM = len(BETAS) * sum(BATCH_SIZES) * 3  # per β and batch: losses, d/d policy_chosen, d/d policy_rejected
VERSION = 2


class FingerprintError(Exception):
    """The loss could not be fingerprinted (does not load, raises, wrong shape, too slow)."""


def _batches() -> list[list[torch.Tensor]]:
    """The two fixed batches (float64): (wide grid + seeded realistic rows), (narrow grid)."""
    rho = torch.tensor(MARGINS, dtype=torch.float64)
    base = torch.full_like(rho, -60.0)
    g = torch.Generator().manual_seed(1234)
    pc_r = -(20 + 180 * torch.rand(N_RANDOM, generator=g, dtype=torch.float64))
    pr_r = -(20 + 180 * torch.rand(N_RANDOM, generator=g, dtype=torch.float64))
    rc_r = pc_r + 3 * torch.randn(N_RANDOM, generator=g, dtype=torch.float64)
    rr_r = pr_r + 3 * torch.randn(N_RANDOM, generator=g, dtype=torch.float64)
    wide = [
        torch.cat([base + rho / 2, pc_r]),
        torch.cat([base - rho / 2, pr_r]),
        torch.cat([base, rc_r]),
        torch.cat([base.clone(), rr_r]),
    ]
    narrow = [base + NARROW * rho / 2, base - NARROW * rho / 2, base.clone(), base.clone()]
    return [wide, narrow]


def _transform(values: torch.Tensor) -> torch.Tensor:
    clean = torch.nan_to_num(values, nan=0.0, posinf=1e30, neginf=-1e30)
    return torch.asinh(clean / SCALE)


def loss_fingerprint(code: str, time_limit_s: float = 2.0) -> list[float]:
    """The fingerprint vector (length DIM) of a candidate loss; raises FingerprintError.

    Code that breaks the static policy is refused before it runs (imports from an archive reach here
    without having been checked).
    """
    violations = check_loss_policy(code)
    if violations:
        raise FingerprintError(f"the loss breaks the static policy: {violations[0].message}")
    try:
        loss = load_candidate(code)
    except CandidateError as exc:
        raise FingerprintError(f"the loss does not load: {exc.message}") from None
    parts: list[torch.Tensor] = []
    try:
        with (
            time_limit(time_limit_s),
            contextlib.redirect_stdout(io.StringIO()),
            contextlib.redirect_stderr(io.StringIO()),
            warnings.catch_warnings(),
            torch.enable_grad(),
        ):
            warnings.simplefilter("ignore")
            for batch, beta in itertools.product(_batches(), BETAS):
                pc, pr, rc, rr = (t.clone() for t in batch)
                pc.requires_grad_(True)
                pr.requires_grad_(True)
                out = loss(LossContext(beta=beta), pc, pr, rc, rr)
                size = len(pc)
                if not isinstance(out, torch.Tensor) or tuple(out.shape) != (size,):
                    shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
                    raise FingerprintError(f"the loss returned {shape}; expected shape ({size},)")
                if out.requires_grad:
                    grads = torch.autograd.grad(out.sum(), [pc, pr], allow_unused=True)
                    gc, gr = (torch.zeros_like(pc) if g is None else g for g in grads)
                else:
                    gc, gr = torch.zeros_like(pc), torch.zeros_like(pr)
                parts += [out.detach().double(), gc.detach().double(), gr.detach().double()]
    except CallTimeout:
        raise FingerprintError(f"the loss did not return within {time_limit_s:g} s") from None
    except FingerprintError:
        raise
    except Exception as exc:  # model-written code: any error is the candidate's
        raise FingerprintError(f"the loss raised {type(exc).__name__}: {exc}") from None
    return _transform(torch.cat(parts)).tolist()
