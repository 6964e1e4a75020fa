"""The baseline zoo: every loss loads as a candidate and matches its formula, written again here."""

from __future__ import annotations

import math

import pytest
import torch

from targets.dpo.candidate import LossContext, load_candidate
from targets.dpo.loss_policy import check_loss_policy
from targets.dpo.zoo import UnknownZooLoss, get_zoo_loss, list_zoo, zoo_names

torch.set_num_threads(1)

NAMES = [
    "dpo", "cdpo", "slic", "ipo", "kto_pair", "robust_dpo",
    "lrml", "padll", "aqfl", "aql", "dbaql", "cell", "pfl",
]  # fmt: skip

Inputs = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def _inputs(batch: int = 16, seed: int = 0, dtype: torch.dtype = torch.float64) -> Inputs:
    g = torch.Generator().manual_seed(seed)
    pc = -(20 + 180 * torch.rand(batch, generator=g, dtype=dtype))
    pr = -(20 + 180 * torch.rand(batch, generator=g, dtype=dtype))
    return (
        pc,
        pr,
        pc + 4 * torch.randn(batch, generator=g, dtype=dtype),
        pr + 4 * torch.randn(batch, generator=g, dtype=dtype),
    )


# Reference formulas, written from the definitions in plain torch (float64), independently of the zoo.
def _lsig(x: torch.Tensor) -> torch.Tensor:
    return torch.log(torch.sigmoid(x))


def _ref(name: str, beta: float, pc, pr, rc, rr, eps: float = 0.0) -> torch.Tensor:
    rho = (pc - pr) - (rc - rr)
    z = beta * rho
    s = z / 0.05
    if name == "dpo":
        return -(1 - eps) * _lsig(z) - eps * _lsig(-z)
    if name == "cdpo":
        return -0.9 * _lsig(z) - 0.1 * _lsig(-z)
    if name == "slic":
        return torch.clamp(1 - z, min=0)
    if name == "ipo":
        return (rho - 1 / (2 * beta)) ** 2
    if name == "kto_pair":
        ckl = max(float((pc - rc).mean()), 0.0)
        rkl = max(float((pr - rr).mean()), 0.0)
        return (1 - torch.sigmoid(beta * ((pc - rc) - rkl))) + (1 - torch.sigmoid(beta * (ckl - (pr - rr))))
    if name == "robust_dpo":
        return (-0.9 * _lsig(z) + 0.1 * _lsig(-z)) / 0.8
    if name == "lrml":  # the published form: fine away from extreme margins
        mod = torch.sigmoid(z / 0.05)
        return (1 - mod) * -_lsig(z) + mod * torch.exp(-z)
    if name == "padll":
        return torch.where(rho < 0, 0.45, 0.9) * -_lsig(z)
    if name == "aqfl":
        q = s.std() * torch.sigmoid(-s).mean()
        q = q + 0.05 * (torch.sigmoid(s.mean()) - q)
        blend = torch.sigmoid(0.1 * torch.abs(s - q))
        return blend * -_lsig(z) + (1 - blend) * torch.clamp(1 - z, min=0)
    if name == "aql":
        mq = 0.5 + 0.01 * (torch.sigmoid(s.mean()) - 0.5)
        w = torch.sigmoid(mq - s)
        return w * -_lsig(z) + (1 - w) * torch.clamp(1 - z, min=0)
    if name == "dbaql":
        c = torch.sigmoid(s.var())
        return c * -_lsig(z / 0.9) + (1 - c) * torch.exp(-0.9 * z)
    if name == "cell":
        return 0.5 * torch.exp(-z) - 0.5 * _lsig(z)
    if name == "pfl":
        return torch.where(pc > pr, -_lsig(z) / 2, 2 * torch.clamp(1 - z, min=0))
    raise AssertionError(name)


def _call(name: str, beta: float, inputs: Inputs, eps: float = 0.0) -> torch.Tensor:
    loss = load_candidate(get_zoo_loss(name).code)
    return loss(LossContext(beta=beta, label_smoothing=eps), *inputs)


def test_registry_lists_every_loss_in_order() -> None:
    assert zoo_names() == NAMES
    assert [z.name for z in list_zoo()] == NAMES


def test_unknown_name_lists_the_valid_ones() -> None:
    with pytest.raises(KeyError) as info:
        get_zoo_loss("dpoo")
    assert isinstance(info.value, UnknownZooLoss)
    assert "'dpoo'" in str(info.value) and all(n in str(info.value) for n in NAMES)


def test_ipo_notes_say_log_probs_are_summed() -> None:
    assert "SUMMED" in get_zoo_loss("ipo").notes and "averages" in get_zoo_loss("ipo").notes
    assert "SUMMED" in get_zoo_loss("ipo").code


@pytest.mark.parametrize("name", NAMES)
def test_file_is_a_clean_candidate_with_a_citation(name: str) -> None:
    z = get_zoo_loss(name)
    first = z.code.splitlines()[0]
    assert first.startswith("# ") and z.citation == first[2:].strip()
    assert any(str(year) in first for year in (2023, 2024))
    assert check_loss_policy(z.code) == []
    assert "import" not in z.code  # torch and F come from the candidate's globals
    assert "# (B,)" in z.code


@pytest.mark.filterwarnings("ignore:.*degrees of freedom")  # aqfl, dbaql: std/var of one element
@pytest.mark.parametrize("batch", [1, 5])
@pytest.mark.parametrize("name", NAMES)
def test_shape_is_per_example(name: str, batch: int) -> None:
    assert _call(name, 0.1, _inputs(batch)).shape == (batch,)


@pytest.mark.parametrize("beta", [0.01, 0.1, 1.0, 5.0])
@pytest.mark.parametrize("name", NAMES)
def test_matches_its_formula(name: str, beta: float) -> None:
    inputs = _inputs(16, seed=int(beta * 100))
    torch.testing.assert_close(_call(name, beta, inputs), _ref(name, beta, *inputs), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.3])
def test_dpo_label_smoothing_is_optional(eps: float) -> None:
    inputs = _inputs(8, seed=3)
    torch.testing.assert_close(_call("dpo", 0.5, inputs, eps), _ref("dpo", 0.5, *inputs, eps=eps))


def test_kto_pair_and_the_quantile_losses_depend_on_the_batch() -> None:
    inputs = _inputs(8, seed=4)
    for name in ("kto_pair", "aqfl", "dbaql"):
        full = _call(name, 0.01, inputs)  # at large β dbaql's blend saturates at 1 and hides it
        halves = torch.cat(
            [_call(name, 0.01, tuple(t[:4] for t in inputs)), _call(name, 0.01, tuple(t[4:] for t in inputs))]
        )
        assert not torch.allclose(full, halves), name


def _margin(rho: float) -> Inputs:
    r = torch.full((4,), rho, dtype=torch.float32)
    pc = (-60 - torch.relu(-r)).requires_grad_(True)
    pr = (-60 - torch.relu(r)).requires_grad_(True)
    ref = torch.full((4,), -60.0)
    return pc, pr, ref, ref.clone()


@pytest.mark.parametrize("beta", [0.1, 0.5, 1.0, 2.5, 5.0])
@pytest.mark.parametrize("rho", [-1e4, -1e3, 1e3, 1e4])
def test_lrml_stays_finite_at_extreme_margins(rho: float, beta: float) -> None:
    """The published LRML is NaN here (inf·0); the zoo's log-space form is not, in loss or gradient."""
    pc, pr, rc, rr = _margin(rho)
    loss = load_candidate(get_zoo_loss("lrml").code)(LossContext(beta=beta), pc, pr, rc, rr)
    gc, gr = torch.autograd.grad(loss.sum(), [pc, pr])
    assert torch.isfinite(loss).all() and torch.isfinite(gc).all() and torch.isfinite(gr).all()
    z = beta * rho
    if z < 0:  # far on the wrong side it is the logistic loss: -logσ(z) ≈ -z, slope -β per pair
        torch.testing.assert_close(loss, torch.full((4,), -z), rtol=1e-4, atol=0.0)
        torch.testing.assert_close(gc, torch.full((4,), -beta), rtol=1e-4, atol=0.0)
    else:
        assert float(loss.detach().abs().max()) < 1e-30


def test_the_published_lrml_form_is_nan_where_the_zoo_is_finite() -> None:
    """Why the zoo rewrote the exp term: σ(z/τ)·exp(-z) at z = -100 in float32 is 0·inf."""
    z = torch.tensor([-100.0])
    assert torch.isnan(torch.sigmoid(z / 0.05) * torch.exp(-z)).all()
    assert math.isfinite(float(_call("lrml", 0.1, _margin(-1e3)).detach()[0]))
