"""The real-model path on a CPU: a tiny saved model, tiny JSONL files in string and chat formats.

The candidate trains in a jailed child forked from the test process; the weights it hands back are
checked and scored here (see targets/dpo/real.py)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch
from helpers_tiny import chat_rows, preference_rows, tiny_gpt2, tiny_tokenizer
from safetensors.torch import save

from targets.dpo.real import (
    ChildFailed,
    LoRASpec,
    RealDPOError,
    RealDPOSpec,
    load_trained_policy,
    prepare,
    run_real_dpo,
)
from targets.dpo.trainer import DPOTrainConfig

DPO = (
    "def dpo(self, policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, "
    "reference_rejected_logps):\n"
    "    z = self.beta * ((policy_chosen_logps - policy_rejected_logps)"
    " - (reference_chosen_logps - reference_rejected_logps))\n"
    "    return -F.logsigmoid(z)\n"
)


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """A tiny GPT-2 and its tokenizer (with a chat template) saved as a real model directory."""
    path = tmp_path_factory.mktemp("tiny-model")
    tokenizer = tiny_tokenizer(chat_template=True)
    tiny_gpt2(tokenizer, seed=0).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def spec(model_dir: Path, data: Path, tmp_path: Path, **overrides) -> RealDPOSpec:
    train = DPOTrainConfig(
        device="cpu", beta=0.5, learning_rate=5e-4, max_steps=6, per_device_train_batch_size=4, max_length=48
    )
    fields = {"model": str(model_dir), "dataset": str(data), "eval_fraction": 0.25, "train": train}
    return RealDPOSpec(**(fields | {"cache_dir": tmp_path / "cache"} | overrides))


@pytest.mark.parametrize(
    "rows",
    [
        pytest.param(preference_rows(32, seed=2), id="strings"),
        pytest.param(chat_rows(32, seed=2, with_prompt=True), id="chat-with-prompt"),
        pytest.param(chat_rows(32, seed=2, with_prompt=False), id="chat-without-prompt"),
    ],
)
def test_trains_a_saved_model_on_a_local_jsonl(model_dir, tmp_path, rows):
    data = write_jsonl(tmp_path / "pairs.jsonl", rows)
    result = run_real_dpo(spec(model_dir, data, tmp_path), DPO, tmp_path / "work")
    assert result.outcome.status == "ok", result.outcome.reason
    assert result.device == "cpu" and result.peak_gpu_memory_gib is None
    assert (result.train_pairs, result.eval_pairs) == (24, 8)
    assert result.outcome.steps == 6 and result.steps_per_second > 0
    assert result.tokens_per_second > result.steps_per_second * 4 * 2  # ≥ 1 token per sequence
    assert result.final_loss is not None and result.final_loss < 0.6932
    assert result.eval_reward_margin is not None and result.eval_reward_accuracy is not None
    assert result.eval_reward_margin > 0  # trained on positive-vs-negative pairs, scored on held-out ones


def test_chat_and_string_formats_see_the_same_completions(model_dir, tmp_path):
    """The chat template adds role tokens around the same words: completions have the same content."""
    strings = run_real_dpo(
        spec(model_dir, write_jsonl(tmp_path / "s.jsonl", preference_rows(16)), tmp_path), DPO, tmp_path / "s"
    )
    chat = run_real_dpo(
        spec(model_dir, write_jsonl(tmp_path / "c.jsonl", chat_rows(16)), tmp_path), DPO, tmp_path / "c"
    )
    assert strings.outcome.status == chat.outcome.status == "ok"
    assert strings.train_pairs == chat.train_pairs


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing-model", "the model path"),
        ("missing-data", "does not exist"),
        ("missing-columns", "it needs 'chosen' and 'rejected'"),
        ("no-prompt", "no 'prompt' column"),
    ],
)
def test_one_sentence_errors(model_dir, tmp_path, case, message):
    data = write_jsonl(tmp_path / "pairs.jsonl", preference_rows(8))
    if case == "missing-model":
        s = spec(tmp_path / "nowhere", data, tmp_path)
    elif case == "missing-data":
        s = spec(model_dir, tmp_path / "nowhere.jsonl", tmp_path)
    elif case == "missing-columns":
        rows = [
            {"prompt": r["prompt"], "good": r["chosen"], "rejected": r["rejected"]}
            for r in preference_rows(8)
        ]
        s = spec(model_dir, write_jsonl(tmp_path / "bad.jsonl", rows), tmp_path)
    else:
        rows = [{"chosen": r["chosen"], "rejected": r["rejected"]} for r in preference_rows(8)]
        s = spec(model_dir, write_jsonl(tmp_path / "bad.jsonl", rows), tmp_path)
    with pytest.raises(RealDPOError, match=message) as info:
        run_real_dpo(s, DPO, tmp_path / "work")
    assert str(info.value).count(". ") == 0  # one sentence


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised on a machine without a GPU")
def test_cuda_requested_without_a_gpu(model_dir, tmp_path):
    s = spec(model_dir, write_jsonl(tmp_path / "p.jsonl", preference_rows(8)), tmp_path)
    s.train.device = "cuda"
    with pytest.raises(RealDPOError, match="no CUDA GPU"):
        run_real_dpo(s, DPO, tmp_path / "work")


def test_lora_without_peft_names_the_gpu_extra(model_dir, tmp_path):
    try:
        import peft  # noqa: F401
    except ImportError:
        s = spec(model_dir, write_jsonl(tmp_path / "p.jsonl", preference_rows(8)), tmp_path, lora=LoRASpec())
        with pytest.raises(RealDPOError, match=r"\.\[gpu\]"):
            run_real_dpo(s, DPO, tmp_path / "work")
    else:
        s = spec(
            model_dir, write_jsonl(tmp_path / "p.jsonl", preference_rows(16)), tmp_path, lora=LoRASpec(r=4)
        )
        assert run_real_dpo(s, DPO, tmp_path / "work").outcome.status == "ok"


# ------------------------------------------------------------ what the trusted side accepts from the child

HANG = DPO.replace("    return", "    while True:\n        z = z + 0\n    return")


def test_a_candidate_that_does_not_load_is_reported_not_raised(model_dir, tmp_path):
    s = spec(model_dir, write_jsonl(tmp_path / "p.jsonl", preference_rows(8)), tmp_path)
    result = run_real_dpo(s, "def broken(self:\n", tmp_path / "work")
    assert result.outcome.status == "error" and "does not load" in result.outcome.reason
    assert result.eval_reward_margin is None


def test_a_child_past_its_time_limit_is_killed(model_dir, tmp_path):
    s = spec(model_dir, write_jsonl(tmp_path / "p.jsonl", preference_rows(8)), tmp_path)
    t0 = time.monotonic()
    with pytest.raises(ChildFailed) as info:
        run_real_dpo(s, HANG, tmp_path / "work", timeout_s=3.0)
    assert info.value.kind == "timeout" and "time limit" in info.value.message
    assert time.monotonic() - t0 < 60


@pytest.fixture(scope="module")
def prepared_run(model_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("prepared")
    s = spec(model_dir, write_jsonl(tmp / "p.jsonl", preference_rows(16)), tmp)
    return s, prepare(s, tmp / "work")


def _moved(weights):
    return {k: v + 0.01 for k, v in weights.items()}


def _first(weights, fn):
    name = sorted(weights)[0]
    return weights | {name: fn(weights[name])}


WEIGHT_ROWS = [
    ("non-finite", lambda w: _first(_moved(w), lambda t: t * float("nan")), "holds non-finite values"),
    ("unmoved", lambda w: w, "training moved nothing"),
    ("dtype", lambda w: _first(_moved(w), lambda t: t.double()), "torch.float64, expected"),
    ("shape", lambda w: _first(_moved(w), lambda t: t.flatten()[:3].clone()), r", expected \("),
    ("missing", lambda w: dict(list(_moved(w).items())[1:]), "unexpected or missing tensors"),
    ("extra", lambda w: _moved(w) | {"lm_head.extra": torch.ones(2)}, "unexpected or missing tensors"),
    ("not-safetensors", lambda w: b"\x00" * 64, "not a readable safetensors file"),
    ("a-link", lambda w: Path("/etc/hostname"), "not a readable safetensors file"),
]


@pytest.mark.parametrize(("forge", "message"), [r[1:] for r in WEIGHT_ROWS], ids=[r[0] for r in WEIGHT_ROWS])
def test_weights_the_trusted_side_rejects(prepared_run, tmp_path, forge, message):
    s, prepared = prepared_run
    initial = {k: v.detach().clone() for k, v in prepared.model.named_parameters()}
    forged = forge(initial)
    path = tmp_path / "weights.safetensors"
    if isinstance(forged, Path):
        path.symlink_to(forged)
    else:
        path.write_bytes(forged if isinstance(forged, bytes) else save(forged))
    with pytest.raises(ChildFailed, match=message) as info:
        load_trained_policy(s, prepared, path)
    assert info.value.kind == "rejected"
    after = dict(prepared.model.named_parameters())
    assert all(torch.equal(after[k], v) for k, v in initial.items())  # the reference was not touched
