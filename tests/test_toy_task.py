"""The toy task end to end: the cached build, the SFT model, the pairs and the evaluator.

One small task is built per session (≈ 10 s) into a shared temp directory; both fixtures point at
it, so the second load exercises the cache.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from targets.dpo.toy import language as lang
from targets.dpo.toy.config import ToyTaskConfig
from targets.dpo.toy.evaluate import evaluate_policy
from targets.dpo.toy.task import ToyTask, load_toy_task

# the toy modules import HF libraries lazily, so this still precedes their first import
for _var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HF_HUB_DISABLE_TELEMETRY"):
    os.environ.setdefault(_var, "1")

REPO = Path(__file__).resolve().parents[1]
SMALL = ToyTaskConfig(
    sft_corpus_size=3000, sft_steps=250, sft_batch_size=32, n_train_pairs=300, n_eval_prompts=128
)


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("toy-cache")


@pytest.fixture(scope="session")
def task(cache_dir: Path) -> ToyTask:
    return load_toy_task(SMALL, cache_dir)


def test_config_keys_track_what_is_cached() -> None:
    assert SMALL.key() == ToyTaskConfig(**SMALL.model_dump()).key()
    eval_only = SMALL.model_copy(update={"n_eval_prompts": 7, "eval_max_new_tokens": 39})
    assert eval_only.key() == SMALL.key()
    pairs_only = SMALL.model_copy(update={"label_flip_rate": 0.2})
    assert pairs_only.key() != SMALL.key() and pairs_only.sft_key() == SMALL.sft_key()
    assert SMALL.model_copy(update={"sft_steps": 251}).sft_key() != SMALL.sft_key()
    with pytest.raises(ValueError, match="n_head"):
        ToyTaskConfig(n_head=3)
    with pytest.raises(ValueError, match="n_positions"):
        ToyTaskConfig(n_positions=32)


def test_second_load_reuses_the_cache(task: ToyTask, cache_dir: Path) -> None:
    weights = task.sft_model_dir / "model.safetensors"
    mtime = weights.stat().st_mtime_ns
    t0 = time.perf_counter()
    again = load_toy_task(SMALL, cache_dir)
    assert time.perf_counter() - t0 < 5  # generous: the point is that nothing was trained
    assert not again.built_now
    assert weights.stat().st_mtime_ns == mtime
    assert again.manifest.built_at == task.manifest.built_at
    assert again.train_pairs.to_list() == task.train_pairs.to_list()
    assert not [p for p in (cache_dir / "toy").iterdir() if ".tmp-" in p.name]


def test_load_sft_model_matches_from_pretrained(task: ToyTask) -> None:
    from transformers import GPT2LMHeadModel

    ids = torch.tensor([task.tokenizer(task.eval_prompts[0] + " it was good .").input_ids])
    a = task.load_sft_model()(input_ids=ids).logits
    b = GPT2LMHeadModel.from_pretrained(task.sft_model_dir).eval()(input_ids=ids).logits
    assert torch.equal(a, b)


def test_sft_model_speaks_the_language(task: ToyTask) -> None:
    stats = task.sft_manifest.stats
    assert stats.loss_final < stats.loss_first - 1.5
    assert stats.grammatical_frac >= 0.75
    assert abs(stats.grammatical_mean_reward - stats.corpus_mean_reward) < 0.15
    assert stats.std_reward > 0.3  # mixed sentiment: pairs will have reward gaps to learn from


def test_pairs_follow_the_reward(task: ToyTask) -> None:
    pairs = task.train_pairs
    assert len(pairs) == SMALL.n_train_pairs
    assert {"prompt", "chosen", "rejected", "chosen_reward", "rejected_reward", "label_flipped"} <= set(
        pairs.column_names
    )
    train_prompts, held_prompts = lang.split_prompts(SMALL.data_seed)
    assert set(pairs["prompt"]) <= set(train_prompts)
    assert set(task.eval_prompts) <= set(held_prompts) and len(task.eval_prompts) == SMALL.n_eval_prompts
    for row in pairs.select(range(50)):
        assert row["chosen"] != row["rejected"]
        assert row["chosen"].startswith(" ") and lang.EOS not in row["chosen"]
        assert (
            math.isclose(row["chosen_reward"], task.reward(row["chosen"]))
            or row["chosen_reward"] == lang.FLOOR
        )
    decided = [
        (c, r) for c, r in zip(pairs["chosen_reward"], pairs["rejected_reward"], strict=True) if c != r
    ]
    agree = sum(c > r for c, r in decided) / len(decided)
    assert agree > 0.8  # bt_temperature=0.1 makes labels near-deterministic
    assert not any(pairs["label_flipped"])


def test_label_flip_rate_flips_that_fraction(task: ToyTask, cache_dir: Path) -> None:
    noisy_cfg = SMALL.model_copy(update={"label_flip_rate": 0.3})
    noisy = load_toy_task(noisy_cfg, cache_dir)
    assert noisy.sft_model_dir == task.sft_model_dir  # pair knobs reuse the SFT model
    flipped = noisy.train_pairs["label_flipped"]
    n = len(flipped)
    assert abs(sum(flipped) / n - 0.3) < 3 * math.sqrt(0.3 * 0.7 / n)
    rows = noisy.train_pairs.to_list()
    agree_clean = [r["chosen_reward"] > r["rejected_reward"] for r in rows if not r["label_flipped"]]
    agree_flipped = [r["chosen_reward"] > r["rejected_reward"] for r in rows if r["label_flipped"]]
    assert sum(agree_clean) / len(agree_clean) > 0.8 > 0.2 > sum(agree_flipped) / len(agree_flipped)


def test_evaluation_is_deterministic_and_kl_of_reference_is_zero(task: ToyTask) -> None:
    policy, reference = task.load_sft_model(), task.load_sft_model()
    a = evaluate_policy(policy, reference, task, seed=3)
    b = evaluate_policy(policy, reference, task, seed=3)
    c = evaluate_policy(policy, reference, task, seed=4)
    assert a.rewards == b.rewards and a.kls == b.kls
    assert a.rewards != c.rewards
    assert len(a.rewards) == len(a.kls) == len(task.eval_prompts)
    assert max(abs(k) for k in a.kls) < 1e-9
    assert not a.degenerate, a.degenerate_reason
    assert a.grammatical_frac >= 0.75 and a.distinct_frac > 0.5
    assert math.isclose(a.mean_reward, sum(a.rewards) / len(a.rewards))
    assert evaluate_policy(policy, reference, task, seed=3, n_prompts=10).rewards == a.rewards[:10]


def test_several_samples_per_prompt_average_and_keep_the_first_draw(task: ToyTask, cache_dir: Path) -> None:
    policy, reference = task.load_sft_model(), task.load_sft_model()
    with torch.no_grad():  # a policy away from the reference, so that KLs differ between samples
        policy.transformer.ln_f.weight.mul_(1.5)
    n, k = 24, 4
    one = evaluate_policy(policy, reference, task, seed=5, n_prompts=n)
    multi = load_toy_task(SMALL.model_copy(update={"eval_samples_per_prompt": k}), cache_dir)
    assert multi.config.key() == SMALL.key()  # an evaluation setting: nothing cached is rebuilt
    many = evaluate_policy(policy, reference, multi, seed=5, n_prompts=n)
    assert len(many.rewards) == len(many.kls) == n  # still one item per prompt, paired across losses
    # the same k draws, one sample each: the prompt list repeated k times in a one-sample evaluation
    repeated = dataclasses.replace(task, eval_prompts=task.eval_prompts[:n] * k)
    draws = evaluate_policy(policy, reference, repeated, seed=5)
    assert draws.rewards[:n] == one.rewards  # the first sample of each prompt is the one-sample draw
    for i in range(n):
        rows = [i + j * n for j in range(k)]
        assert math.isclose(many.rewards[i], statistics.fmean(draws.rewards[r] for r in rows))
        assert math.isclose(many.kls[i], statistics.fmean(draws.kls[r] for r in rows), abs_tol=1e-9)
    assert many.rewards != one.rewards  # k draws differ from one
    assert math.isclose(many.mean_reward, draws.mean_reward)


def test_a_perturbed_policy_has_positive_kl(task: ToyTask) -> None:
    reference = task.load_sft_model()
    policy = task.load_sft_model()
    with torch.no_grad():  # ln_f feeds only the LM head: this is the reference at temperature 1/1.5
        policy.transformer.ln_f.weight.mul_(1.5)
        policy.transformer.ln_f.bias.mul_(1.5)
    base = evaluate_policy(reference, reference, task, seed=0)
    moved = evaluate_policy(policy, reference, task, seed=0)
    assert moved.mean_kl > 0.05
    assert moved.kls != base.kls
    # common random numbers: most prompts still draw the same completion as the reference
    same = sum(r1 == r2 for r1, r2 in zip(moved.rewards, base.rewards, strict=True))
    assert same > len(base.rewards) // 3


def test_a_broken_policy_is_reported_degenerate(task: ToyTask) -> None:
    reference = task.load_sft_model()
    policy = task.load_sft_model()
    with torch.no_grad():
        policy.transformer.h[0].mlp.c_fc.weight.mul_(float("nan"))
    result = evaluate_policy(policy, reference, task, seed=0, n_prompts=16)
    assert result.degenerate and result.degenerate_reason


def test_concurrent_builds_leave_one_valid_cache(tmp_path: Path) -> None:
    cfg = ToyTaskConfig(
        sft_corpus_size=300, sft_steps=20, sft_batch_size=16, n_train_pairs=40, n_eval_prompts=8
    )
    script = (
        "import json, sys; from pathlib import Path\n"
        "from targets.dpo.toy.config import ToyTaskConfig\n"
        "from targets.dpo.toy.task import load_toy_task\n"
        "t = load_toy_task(ToyTaskConfig.model_validate_json(sys.argv[1]), Path(sys.argv[2]))\n"
        "print(json.dumps({'built': t.built_now, 'at': t.manifest.built_at, 'n': len(t.train_pairs),\n"
        "                  'sft_at': t.sft_manifest.built_at}))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "TRANSFORMERS_VERBOSITY": "error"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, cfg.model_dump_json(), str(tmp_path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=REPO,
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err[-2000:] for _, err in outs]
    results = [json.loads(out.strip().splitlines()[-1]) for out, _ in outs]
    # each of the two directories (SFT, pairs) was built by one process and read by the other
    assert any(r["built"] for r in results)
    assert results[0]["sft_at"] == results[1]["sft_at"] and results[0]["at"] == results[1]["at"]
    assert results[0]["n"] == results[1]["n"] == 40
    entries = sorted(p.name for p in (tmp_path / "toy").iterdir() if not p.name.endswith(".lock"))
    assert entries == sorted([cfg.key(), f"sft-{cfg.sft_key()}"])
    assert load_toy_task(cfg, tmp_path).built_now is False


def test_the_samples_setting_keys_run_caches_only_when_set() -> None:
    from targets.dpo.sweep import spec_key, sweep_spec

    spec = sweep_spec("default")
    assert spec_key(spec) == "3d671e8b6975"  # the key before the setting existed: built caches stay valid
    tasks = [spec.task.model_copy(update={"eval_samples_per_prompt": k}) for k in (1, 2, 4)]
    keys = {spec_key(spec.model_copy(update={"task": task})) for task in tasks}
    assert len(keys) == 3  # runs scored with other sample counts never share a cache entry
