"""Real-model throughput: stock TRL DPOTrainer vs disco's CandidateDPOTrainer, steps/s and tokens/s.

The comparison of bench_trainer_throughput.py on a real model (a save_pretrained directory) on a GPU:
bf16 autocast over float32 weights, SDPA attention, optional activation checkpointing; peak GPU memory
per variant. Works on a CPU with a tiny saved model for a smoke run:

    .venv/bin/python evals/bench_real_dpo.py --model /models/Qwen2.5-0.5B [--dataset pairs.jsonl]
    .venv/bin/python evals/bench_real_dpo.py --model /tmp/tiny --device cpu --steps 5 --repeats 1

Without --dataset, synthetic string pairs are used (throughput does not depend on what the words say).
Writes evals/results/real_dpo_throughput.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "evals")]

import torch  # noqa: E402
from bench_trainer_throughput import DPO, StepClock, timed_train  # noqa: E402
from datasets import Dataset  # noqa: E402
from transformers.trainer_callback import PrinterCallback  # noqa: E402
from trl import DPOTrainer  # noqa: E402

from targets.dpo.candidate import load_candidate  # noqa: E402
from targets.dpo.real import (  # noqa: E402
    RealDPOSpec,
    check_columns,
    load_model_and_tokenizer,
    load_preference_data,
    tokens_per_pair,
)
from targets.dpo.refcache import prepare_preference_dataset  # noqa: E402
from targets.dpo.trainer import CandidateDPOTrainer, DPOTrainConfig, quiet_hf, quiet_trl  # noqa: E402

WORDS = ["the", "a", "film", "movie", "plot", "cast", "story", "was", "is", "very", "quite", "good", "bad"]


def synthetic_pairs(n: int, prompt_words: int, completion_words: int, seed: int = 0) -> Dataset:
    rng = random.Random(seed)
    sentence = lambda k: " ".join(rng.choice(WORDS) for _ in range(k))  # noqa: E731
    rows = [
        {
            "prompt": sentence(prompt_words),
            "chosen": " " + sentence(completion_words),
            "rejected": " " + sentence(completion_words),
        }
        for _ in range(n)
    ]
    return Dataset.from_list(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="save_pretrained directory (or cached hub id)")
    parser.add_argument("--dataset", default=None, help="local .jsonl/.json/.parquet/.csv; default synthetic")
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--batch", type=int, default=8, help="preference pairs per step")
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--pairs", type=int, default=512)
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--out", type=Path, default=ROOT / "evals" / "results" / "real_dpo_throughput.json")
    args = parser.parse_args()
    quiet_hf()

    train = DPOTrainConfig(
        device=args.device,
        learning_rate=5e-7,
        per_device_train_batch_size=args.batch,
        max_steps=args.steps + args.warmup + 1,
        max_length=args.max_length,
        gradient_checkpointing=args.gradient_checkpointing,
    )
    spec = RealDPOSpec(model=args.model, dataset=args.dataset or "synthetic", train=train)
    model, tokenizer = load_model_and_tokenizer(spec, args.device)
    if args.dataset:
        raw = check_columns(load_preference_data(args.dataset), tokenizer)
        raw = raw.select(range(min(args.pairs, len(raw))))
    else:
        words = max(args.max_length // 6, 4)  # prompt + completion ≈ max_length/2 tokens for most tokenizers
        raw = synthetic_pairs(args.pairs, prompt_words=words, completion_words=words)

    tmp = Path(tempfile.mkdtemp(prefix="disco-bench-real-"))
    t0 = time.perf_counter()
    prepared = prepare_preference_dataset(
        model,
        tokenizer,
        raw,
        cache_dir=tmp / "cache",
        max_length=args.max_length,
        batch_size=args.batch,
        device=args.device,
    )
    prepare_s = time.perf_counter() - t0
    pair_tokens = tokens_per_pair(prepared, args.max_length)
    del model  # scoring does not change the weights: every run reloads the same initial model

    def fresh_model() -> Any:
        return load_model_and_tokenizer(spec, args.device)[0]

    base_args = train.to_dpo_config(str(tmp / "out"))
    stock_args = dataclasses.replace(base_args, loss_type=["sigmoid"], logging_nan_inf_filter=True)

    def build(name: str, clock: StepClock) -> DPOTrainer:
        if name == "disco_cached":
            return CandidateDPOTrainer(
                model=fresh_model(),
                args=base_args,
                train_dataset=prepared,
                processing_class=tokenizer,
                candidate=load_candidate(DPO),
                callbacks=[clock],
            )
        precompute = name == "stock_precomputed"
        return DPOTrainer(
            model=fresh_model(),
            ref_model=None if precompute else fresh_model(),
            args=dataclasses.replace(stock_args, precompute_ref_log_probs=precompute),
            train_dataset=raw,
            processing_class=tokenizer,
            callbacks=[clock],
        )

    names = ["stock_ref_in_memory", "stock_precomputed", "disco_cached"]
    runs: dict[str, list[dict[str, float]]] = {n: [] for n in names}
    for r in range(args.repeats):
        for name in names[r % 3 :] + names[: r % 3]:
            clock = StepClock()
            t0 = time.perf_counter()
            with quiet_trl():
                trainer = build(name, clock)
            trainer.remove_callback(PrinterCallback)
            build_s = time.perf_counter() - t0
            if args.device == "cuda":
                torch.cuda.reset_peak_memory_stats()
            run = {**timed_train(trainer, clock, args.warmup), "build_s": build_s}
            run["tokens_per_second"] = run["steps_per_second"] * args.batch * pair_tokens
            if args.device == "cuda":
                run["peak_gpu_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
            runs[name].append(run)
            print(f"repeat {r} {name:22s} {run['steps_per_second']:7.3f} steps/s", flush=True)
            del trainer
            if args.device == "cuda":
                torch.cuda.empty_cache()

    summary = {
        name: {key: statistics.median(run[key] for run in rs) for key in rs[0]} for name, rs in runs.items()
    }
    disco = summary["disco_cached"]["steps_per_second"]
    result = {
        "setup": {
            "model": args.model,
            "dataset": args.dataset or f"synthetic, {args.pairs} pairs",
            "device": torch.cuda.get_device_name() if args.device == "cuda" else "cpu",
            "batch_pairs": args.batch,
            "max_length": args.max_length,
            "tokens_per_pair": pair_tokens,
            "gradient_checkpointing": args.gradient_checkpointing,
            "timed_steps": args.steps,
            "repeats": args.repeats,
        },
        "one_time_prepare_s": prepare_s,
        "summary_median": summary,
        "ratios": {
            "disco_vs_stock_ref_in_memory": disco / summary["stock_ref_in_memory"]["steps_per_second"],
            "disco_vs_stock_precomputed": disco / summary["stock_precomputed"]["steps_per_second"],
        },
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps({"summary_median": summary, "ratios": result["ratios"]}, indent=2))
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
