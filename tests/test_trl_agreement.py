"""disco's candidate trainer reproduces TRL's built-in losses, through the trainers themselves.

For each loss TRL 1.16 has built in, the same batch goes through a stock `DPOTrainer(loss_type=...)` and
through `CandidateDPOTrainer` with the candidate's code; losses and gradients must agree to 1e-6. The
policy and reference are different random GPT-2s, so the margins ρ are far from 0 and every branch of a
loss is exercised. IPO is the documented exception: TRL averages log-probs over the completion length.
"""

from __future__ import annotations

import copy

import pytest
import torch
from helpers_tiny import preference_dataset, tiny_gpt2, tiny_tokenizer
from trl import DPOConfig, DPOTrainer

from targets.dpo.candidate import LossContext, load_candidate
from targets.dpo.refcache import prepare_preference_dataset
from targets.dpo.trainer import CandidateDPOTrainer, quiet_hf, quiet_trl
from targets.dpo.zoo import get_zoo_loss

BCO_PAIR = """
def bco_pair(
    self, policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps
):
    chosen = self.beta * (policy_chosen_logps - reference_chosen_logps)  # (B,)
    rejected = self.beta * (policy_rejected_logps - reference_rejected_logps)  # (B,)
    return -F.logsigmoid(chosen) - F.logsigmoid(-rejected)
"""

NCA_PAIR = """
def nca_pair(
    self, policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps
):
    chosen = self.beta * (policy_chosen_logps - reference_chosen_logps)  # (B,)
    rejected = self.beta * (policy_rejected_logps - reference_rejected_logps)  # (B,)
    return -F.logsigmoid(chosen) - 0.5 * F.logsigmoid(-chosen) - 0.5 * F.logsigmoid(-rejected)
"""

# Plain DPO that honours self.label_smoothing (cDPO): TRL's "sigmoid" with ε = 0 is plain DPO.
DPO = """
def dpo(self, policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps):
    z = self.beta * ((policy_chosen_logps - policy_rejected_logps)
                     - (reference_chosen_logps - reference_rejected_logps))  # (B,)
    return -F.logsigmoid(z)
"""

# (candidate source, TRL loss_type, extra DPOConfig fields); β and the seeds vary per case below.
CASES = {
    "sigmoid": (lambda: DPO, "sigmoid", {}),
    "hinge": (lambda: get_zoo_loss("slic").code, "hinge", {}),
    "robust": (lambda: get_zoo_loss("robust_dpo").code, "robust", {"label_smoothing": 0.1}),
    "discopop": (lambda: get_zoo_loss("lrml").code, "discopop", {"discopop_tau": 0.05}),
    "bco_pair": (lambda: BCO_PAIR, "bco_pair", {}),
    "nca_pair": (lambda: NCA_PAIR, "nca_pair", {}),
}
SETTINGS = [(0, 0.1), (1, 0.5), (2, 0.03)]  # (seed, β): ρ·β spans small and large margins
N_PAIRS = 8


@pytest.fixture(scope="module")
def tokenizer():
    quiet_hf()
    return tiny_tokenizer()


@pytest.fixture(scope="module")
def dataset():
    return preference_dataset(N_PAIRS, seed=3)


def dpo_args(tmp_path, beta: float, **extra) -> DPOConfig:
    return DPOConfig(
        output_dir=str(tmp_path),
        beta=beta,
        use_cpu=True,
        bf16=False,
        activation_checkpointing=False,
        report_to=[],
        disable_tqdm=True,
        per_device_train_batch_size=N_PAIRS,
        max_length=64,
        **extra,
    )


def loss_and_grads(trainer: DPOTrainer, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    trainer.model.zero_grad()
    loss = trainer.compute_loss(trainer.model, batch)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.grad is not None}
    return loss.detach(), grads


def summed_logps(model: torch.nn.Module, batch: dict) -> torch.Tensor:
    """(2B,) completion log-probs through TRL's fused head (the model must have been patched by a trainer)."""
    labels = batch["input_ids"].masked_fill(batch["completion_mask"] == 0, -100)
    kw = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    return model(**kw, labels=labels, fused_lm_head=True).log_probs.sum(1)


def assert_close(a: tuple, b: tuple, tol: float = 1e-6) -> None:
    (loss_a, grads_a), (loss_b, grads_b) = a, b
    assert abs(loss_a.item() - loss_b.item()) <= tol, (loss_a.item(), loss_b.item())
    assert grads_a.keys() == grads_b.keys() and grads_a
    worst = max((grads_a[n] - grads_b[n]).abs().max().item() for n in grads_a)
    assert worst <= tol, f"largest gradient difference {worst:.3g}"


def build_pair(tokenizer, dataset, tmp_path, code: str, loss_type: str, beta: float, seed: int, extra: dict):
    """A stock trainer and a candidate trainer on copies of the same policy and reference."""
    policy = tiny_gpt2(tokenizer, seed=seed, initializer_range=0.3)
    reference = tiny_gpt2(tokenizer, seed=seed + 100, initializer_range=0.3)
    with quiet_trl():
        stock = DPOTrainer(
            model=copy.deepcopy(policy),
            ref_model=copy.deepcopy(reference),
            args=dpo_args(tmp_path / "stock", beta, loss_type=loss_type, **extra),
            train_dataset=dataset,
            processing_class=tokenizer,
        )
        ours = CandidateDPOTrainer(
            model=copy.deepcopy(policy),
            ref_model=copy.deepcopy(reference),
            args=dpo_args(tmp_path / "ours", beta, **extra),
            train_dataset=dataset,
            processing_class=tokenizer,
            candidate=load_candidate(code),
        )
    batch = stock.data_collator([stock.train_dataset[i] for i in range(N_PAIRS)])
    return stock, ours, batch, policy, reference


@pytest.mark.parametrize(("seed", "beta"), SETTINGS)
@pytest.mark.parametrize("name", list(CASES))
def test_candidate_matches_trl_loss_and_gradients(tokenizer, dataset, tmp_path, name, seed, beta):
    code_fn, loss_type, extra = CASES[name]
    stock, ours, batch, _, _ = build_pair(
        tokenizer, dataset, tmp_path, code_fn(), loss_type, beta, seed, extra
    )
    # Same tokenization: our trainer ran TRL's own _prepare_dataset on the raw strings.
    assert ours.train_dataset["chosen_ids"] == stock.train_dataset["chosen_ids"]
    with quiet_trl():
        expected = loss_and_grads(stock, batch)
        got = loss_and_grads(ours, batch)
    assert_close(expected, got)
    # The test is only meaningful away from ρ = 0, where every loss collapses to a constant.
    with torch.no_grad():
        pc, pr = summed_logps(ours.model, batch).chunk(2)
        rc, rr = summed_logps(ours.ref_model, batch).chunk(2)
    assert (beta * ((pc - pr) - (rc - rr))).abs().mean() > 0.1


@pytest.mark.parametrize("name", ["sigmoid", "discopop"])
def test_precomputed_reference_path_matches_trl(tokenizer, dataset, tmp_path, name):
    """The path disco trains with: reference log-probs from the cache, no reference model in memory."""
    code_fn, loss_type, extra = CASES[name]
    seed, beta = 4, 0.2
    stock, _, batch, policy, reference = build_pair(
        tokenizer, dataset, tmp_path, code_fn(), loss_type, beta, seed, extra
    )
    prepared = prepare_preference_dataset(
        reference,
        tokenizer,
        dataset,
        cache_dir=tmp_path / "cache",
        max_length=64,
        batch_size=N_PAIRS,
        device="cpu",
    )
    with quiet_trl():
        ours = CandidateDPOTrainer(
            model=copy.deepcopy(policy),
            args=dpo_args(tmp_path / "pre", beta, precompute_ref_log_probs=True, **extra),
            train_dataset=prepared,
            processing_class=tokenizer,
            candidate=load_candidate(code_fn()),
        )
        assert ours.ref_model is None
        pre_batch = ours.data_collator([ours.train_dataset[i] for i in range(N_PAIRS)])
        assert torch.equal(pre_batch["input_ids"], batch["input_ids"])
        assert_close(loss_and_grads(stock, batch), loss_and_grads(ours, pre_batch))


def test_ipo_differs_from_trl_by_length_normalisation(tokenizer, dataset, tmp_path):
    """TRL's IPO divides each log-ratio by the completion length; a candidate sees summed log-probs.

    So the zoo's IPO is a different loss from TRL's — and TRL's value is exactly the candidate evaluated
    on length-averaged log-probs.
    """
    code = get_zoo_loss("ipo").code
    beta = 0.1
    stock, ours, batch, _, _ = build_pair(tokenizer, dataset, tmp_path, code, "ipo", beta, 5, {})
    with quiet_trl(), torch.no_grad():
        trl_loss = stock.compute_loss(stock.model, batch).item()
        summed = ours.compute_loss(ours.model, batch).item()
        # Rebuild the four (B,) inputs by hand, with the completion lengths TRL divides by.
        logps, ref_logps = summed_logps(ours.model, batch), summed_logps(ours.ref_model, batch)  # (2B,)
        lengths = batch["completion_mask"].sum(1).clamp(min=1).float()  # (2B,)
        pc, pr = (logps / lengths).chunk(2)
        rc, rr = (ref_logps / lengths).chunk(2)
        averaged = load_candidate(code)(LossContext(beta=beta), pc, pr, rc, rr).mean().item()
    assert lengths.min() < lengths.max(), "the data set must have completions of several lengths"
    assert abs(summed - trl_loss) > 1e-2, (summed, trl_loss)
    assert abs(averaged - trl_loss) <= 1e-6, (averaged, trl_loss)
