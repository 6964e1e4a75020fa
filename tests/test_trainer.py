"""Training with candidate losses: learning, divergence, candidate errors, determinism, reference cache."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from datasets import Dataset
from helpers_tiny import preference_dataset, tiny_gpt2, tiny_tokenizer

from targets.dpo.candidate import load_candidate
from targets.dpo.refcache import prepare_preference_dataset, store_atomically
from targets.dpo.trainer import CandidateDPOTrainer, DPOTrainConfig, quiet_trl, train_candidate

MAX_LENGTH = 48
SIGNATURE = (
    "self, policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps"
)


def candidate(body: str) -> str:
    """Candidate source with the standard signature; `pc, pr, rc, rr` and `z = βρ` are predefined."""
    lines = [
        f"def loss({SIGNATURE}):",
        "    pc, pr = policy_chosen_logps, policy_rejected_logps",
        "    rc, rr = reference_chosen_logps, reference_rejected_logps",
        "    z = self.beta * ((pc - pr) - (rc - rr))",
        *("    " + line for line in body.strip().splitlines()),
    ]
    return "\n".join(lines) + "\n"


DPO = candidate("return -F.logsigmoid(z)")


class ForwardCounter:
    """Counts forwards of a module through a hook (no mock: the real model runs)."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.calls = 0
        self.handle = module.register_forward_hook(self._hook)

    def _hook(self, module, args, output) -> None:  # type: ignore[no-untyped-def]
        self.calls += 1


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_tokenizer()


@pytest.fixture(scope="module")
def reference(tokenizer):
    return tiny_gpt2(tokenizer, seed=0)


@pytest.fixture(scope="module")
def raw() -> Dataset:
    return preference_dataset(48, seed=1)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("refcache")


@pytest.fixture(scope="module")
def prepared(reference, tokenizer, raw, cache_dir) -> Dataset:
    return prepare_preference_dataset(
        reference, tokenizer, raw, cache_dir=cache_dir, max_length=MAX_LENGTH, batch_size=16, device="cpu"
    )


def config(**overrides) -> DPOTrainConfig:
    base = {"beta": 0.5, "max_steps": 12, "max_length": MAX_LENGTH, "logging_steps": 4, "device": "cpu"}
    return DPOTrainConfig(**(base | overrides))


def train(code: str, reference, tokenizer, prepared, **overrides):
    policy = copy.deepcopy(reference)
    outcome = train_candidate(load_candidate(code), policy, tokenizer, prepared, config(**overrides))
    return outcome, policy


# --- training -------------------------------------------------------------------------------------


def test_dpo_raises_the_margin_on_the_training_pairs(reference, tokenizer, prepared):
    policy = copy.deepcopy(reference)
    outcome = train_candidate(
        load_candidate(DPO), policy, tokenizer, prepared, config(max_steps=18), eval_dataset=prepared
    )
    assert outcome.status == "ok", outcome.reason
    assert outcome.steps == 18 and outcome.steps_per_second > 0
    # The policy starts as the reference (margin 0, loss log 2); DPO must separate chosen from rejected.
    assert outcome.loss_history[0] < 0.6931 + 1e-3
    assert outcome.final_loss < outcome.loss_history[0] - 0.05
    assert outcome.margin_history[-1] > outcome.margin_history[0] > 0
    assert outcome.eval_metrics["eval_rewards/margins"] > 0.3
    assert outcome.eval_metrics["eval_rewards/accuracies"] > 0.8
    # The caller gets its model back with the plain forward (TRL's instance-level patch removed).
    assert "forward" not in policy.__dict__ and not policy.training


def test_same_seed_same_run_other_seed_other_run(reference, tokenizer, prepared):
    a, model_a = train(DPO, reference, tokenizer, prepared, seed=3, max_steps=8)
    b, model_b = train(DPO, reference, tokenizer, prepared, seed=3, max_steps=8)
    c, _ = train(DPO, reference, tokenizer, prepared, seed=4, max_steps=8)
    assert a.loss_history == b.loss_history
    assert all(torch.equal(p, q) for p, q in zip(model_a.parameters(), model_b.parameters(), strict=True))
    assert a.loss_history != c.loss_history  # another data order


def test_prepared_data_is_neither_retokenized_nor_rescored(reference, tokenizer, prepared, raw, cache_dir):
    counter = ForwardCounter(reference)
    again = prepare_preference_dataset(
        reference, tokenizer, raw, cache_dir=cache_dir, max_length=MAX_LENGTH, batch_size=16, device="cpu"
    )
    assert counter.calls == 0  # served from the cache
    with quiet_trl():
        trainer = CandidateDPOTrainer(
            model=copy.deepcopy(reference),
            args=config().to_dpo_config(str(cache_dir / "out")),
            train_dataset=again,
            processing_class=tokenizer,
            candidate=load_candidate(DPO),
        )
    assert trainer.train_dataset is again  # no map, no filter, no concatenation
    assert trainer.ref_model is None  # nothing to run a reference forward with
    with quiet_trl():
        trainer.train()
    assert counter.calls == 0
    counter.handle.remove()


# --- failures become outcomes -------------------------------------------------------------------

# The loss turns NaN once the policy has moved (log of a negative number), after a few finite steps;
# the extra term is detached, so the gradients of the finite steps are clean.
NAN_LATER = candidate("""
return -F.logsigmoid(z) + torch.log(0.3 - z.detach().mean())
""")

# A classic candidate bug: the loss is finite, but the gradient of torch.where's unselected branch is
# 0 · nan = nan, so the weights would turn NaN at the first optimiser step.
NAN_GRADIENT = candidate("""
losses = -F.logsigmoid(z)
return torch.where(z > 1e6, losses * float("nan"), losses)
""")


def test_nan_after_a_few_steps_is_diverged_with_the_step(reference, tokenizer, prepared):
    outcome, policy = train(NAN_LATER, reference, tokenizer, prepared, max_steps=40, logging_steps=1)
    assert outcome.status == "diverged"
    assert outcome.failed_step is not None and outcome.failed_step > 2
    assert outcome.steps == outcome.failed_step - 1
    assert f"at step {outcome.failed_step}: 8 of 8 per-example losses were nan" in outcome.reason
    # Stopped before the optimiser step: the weights are still finite.
    assert all(torch.isfinite(p).all() for p in policy.parameters())
    assert len(outcome.loss_history) == outcome.steps and outcome.final_loss is None


def test_nan_gradient_under_a_finite_loss_is_diverged_before_the_weights_break(
    reference, tokenizer, prepared
):
    outcome, policy = train(NAN_GRADIENT, reference, tokenizer, prepared)
    assert outcome.status == "diverged" and outcome.failed_step == 1
    assert "gradient became non-finite at step 1" in outcome.reason
    assert all(torch.equal(p, q) for p, q in zip(policy.parameters(), reference.parameters(), strict=True))


@pytest.mark.filterwarnings("ignore:Converting a tensor with requires_grad")
@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("return (-F.logsigmoid(z)).unsqueeze(1)", "shape (8, 1); expected (8,)"),
        ("return (-F.logsigmoid(z)).mean()", "shape (); expected (8,)"),
        ("return [float(v) for v in z]", "returned list"),
        ("return (z > 0).long()", "dtype torch.int64"),
        ("return torch.ones_like(z)", "do not depend on the policy"),
    ],
)
def test_wrong_return_is_an_error_naming_the_problem(reference, tokenizer, prepared, body, expected):
    outcome, _ = train(candidate(body), reference, tokenizer, prepared)
    assert outcome.status == "error"
    assert expected in outcome.reason
    assert outcome.failed_step == 1 and outcome.steps == 0


def test_candidate_exception_is_an_error_with_its_traceback(reference, tokenizer, prepared):
    code = candidate("""
scale = {"a": 1.0}
return -F.logsigmoid(z) * scale["b"]
""")
    outcome, _ = train(code, reference, tokenizer, prepared)
    assert outcome.status == "error"
    assert outcome.reason == "the candidate raised KeyError: 'b'"
    # The trimmed traceback points at the candidate's own line, with its source.
    assert 'line 6, in loss\n    return -F.logsigmoid(z) * scale["b"]' in outcome.traceback
    assert outcome.traceback.endswith("KeyError: 'b'")
    assert "site-packages" not in outcome.traceback


def test_unprepared_data_and_mismatched_max_length_are_one_sentence_errors(
    reference, tokenizer, prepared, raw
):
    with pytest.raises(ValueError, match="prepare_preference_dataset"):
        train(DPO, reference, tokenizer, raw)
    with pytest.raises(ValueError, match="max_length=48, but training uses max_length=32"):
        train(DPO, reference, tokenizer, prepared, max_length=32)


# --- the reference cache ------------------------------------------------------------------------


def test_cached_result_equals_a_fresh_computation(reference, tokenizer, raw, prepared):
    fresh = prepare_preference_dataset(
        reference, tokenizer, raw, cache_dir=None, max_length=MAX_LENGTH, batch_size=16, device="cpu"
    )
    assert prepared.column_names == fresh.column_names
    for column in prepared.column_names:
        assert prepared[column] == fresh[column], column
    assert len(prepared) == len(raw)
    # Rows are TRL's: EOS appended to completions, prompt ids a prefix of prompt+completion.
    assert prepared[0]["chosen"].endswith(tokenizer.eos_token)
    assert prepared[0]["chosen_ids"][-1] == tokenizer.eos_token_id


def test_cache_key_follows_weights_and_max_length(reference, tokenizer, raw, cache_dir):
    entries = lambda: sorted(p.name for p in cache_dir.glob("refcache-*"))  # noqa: E731
    before = entries()
    other = tiny_gpt2(tokenizer, seed=9)
    counter = ForwardCounter(other)
    prepare_preference_dataset(
        other, tokenizer, raw, cache_dir=cache_dir, max_length=MAX_LENGTH, device="cpu"
    )
    assert counter.calls > 0 and len(entries()) == len(before) + 1
    prepare_preference_dataset(reference, tokenizer, raw, cache_dir=cache_dir, max_length=32, device="cpu")
    assert len(entries()) == len(before) + 2
    meta = json.loads((cache_dir / entries()[0] / "meta.json").read_text())
    assert {"model", "tokenizer", "data", "max_length", "seconds"} <= meta.keys()


def test_a_lost_race_keeps_the_first_entry_and_leaves_no_temp_dirs(tmp_path):
    final = tmp_path / "refcache-x"
    first = Dataset.from_dict({"a": [1, 2]})
    store_atomically(first, final, {"writer": 1})
    store_atomically(Dataset.from_dict({"a": [3, 4]}), final, {"writer": 2})
    assert Dataset.load_from_disk(str(final))["a"] == [1, 2]
    assert json.loads((final / "meta.json").read_text()) == {"writer": 1}
    # Nothing but the entry and its lock file (kept on purpose: deleting a flock file races).
    assert sorted(p.name for p in tmp_path.iterdir()) == [".refcache-x.lock", "refcache-x"]
