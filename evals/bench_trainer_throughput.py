"""Training throughput: stock TRL DPOTrainer vs disco's CandidateDPOTrainer, same model, data and config.

Three variants, interleaved over several repeats (the order rotates, so drifting machine load hits all
of them alike), medians reported:

- `stock_ref_in_memory`: `DPOTrainer(loss_type="sigmoid")` with the reference model in memory (one
  reference forward per step);
- `stock_precomputed`: the same with `precompute_ref_log_probs=True` (reference log-probs computed when
  the trainer is built; not timed);
- `disco_cached`: `CandidateDPOTrainer` with the plain-DPO candidate on a data set from
  `prepare_preference_dataset` (the one-time prepare and a cache reload are timed separately).

Steps per second are measured between the end of the warm-up steps and the end of the last step, so the
fixed cost of `Trainer.train()` (optimizer creation, a `gc.collect`) is reported apart, as `train_call_s`.

    .venv/bin/python evals/bench_trainer_throughput.py [--repeats 5] [--steps 30]

Writes evals/results/trainer_throughput.json and .md.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]  # tiny fixtures live beside the tests

import torch  # noqa: E402
from helpers_tiny import preference_dataset, tiny_gpt2, tiny_tokenizer  # noqa: E402
from transformers import TrainerCallback  # noqa: E402
from transformers.trainer_callback import PrinterCallback  # noqa: E402
from trl import DPOTrainer  # noqa: E402

from targets.dpo.candidate import load_candidate  # noqa: E402
from targets.dpo.refcache import prepare_preference_dataset  # noqa: E402
from targets.dpo.trainer import CandidateDPOTrainer, DPOTrainConfig, quiet_hf, quiet_trl  # noqa: E402

RESULTS = ROOT / "evals" / "results"
DPO = """
def dpo(self, policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps):
    pi_logratios = policy_chosen_logps - policy_rejected_logps
    ref_logratios = reference_chosen_logps - reference_rejected_logps
    return -F.logsigmoid(self.beta * (pi_logratios - ref_logratios))
"""


class StepClock(TrainerCallback):
    """Wall-clock time at the end of every optimiser step."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def on_step_end(self, args, state, control, **kwargs):  # type: ignore[no-untyped-def]
        self.times.append(time.perf_counter())


def timed_train(trainer: DPOTrainer, clock: StepClock, warmup: int) -> dict[str, float]:
    t0 = time.perf_counter()
    with quiet_trl():
        trainer.train()
    wall = time.perf_counter() - t0
    t = clock.times
    steady = (len(t) - 1 - warmup) / (t[-1] - t[warmup])
    return {"steps_per_second": steady, "train_call_s": wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=30, help="timed steps per run (after warm-up)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--pairs", type=int, default=512)
    parser.add_argument("--batch", type=int, default=32, help="preference pairs per step")
    parser.add_argument("--out", type=Path, default=RESULTS / "trainer_throughput")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (1: immune to oversubscription on a shared CPU)"
    )
    args = parser.parse_args()
    quiet_hf()
    torch.set_num_threads(args.threads)

    tokenizer = tiny_tokenizer()
    reference = tiny_gpt2(tokenizer, seed=0, n_embd=64, n_layer=2)
    raw = preference_dataset(args.pairs, seed=0, prompt_words=(6, 12), completion_words=(6, 16))
    steps = args.steps + args.warmup + 1
    config = DPOTrainConfig(
        beta=0.1, per_device_train_batch_size=args.batch, max_steps=steps, max_length=64, device="cpu"
    )
    tmp = Path(tempfile.mkdtemp(prefix="disco-bench-"))

    t0 = time.perf_counter()
    prepared = prepare_preference_dataset(
        reference, tokenizer, raw, cache_dir=tmp / "cache", max_length=64, batch_size=args.batch, device="cpu"
    )
    prepare_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    prepared = prepare_preference_dataset(
        reference, tokenizer, raw, cache_dir=tmp / "cache", max_length=64, batch_size=args.batch, device="cpu"
    )
    reload_s = time.perf_counter() - t0

    base_args = config.to_dpo_config(str(tmp / "out"))
    # Stock TRL as a user would configure it for a CPU: same hyperparameters, TRL's own loss and metrics.
    stock_args = dataclasses.replace(base_args, loss_type=["sigmoid"], logging_nan_inf_filter=True)

    def stock(precompute: bool) -> Callable[[StepClock], DPOTrainer]:
        def build(clock: StepClock) -> DPOTrainer:
            return DPOTrainer(
                model=copy.deepcopy(reference),
                ref_model=None if precompute else copy.deepcopy(reference),
                args=dataclasses.replace(stock_args, precompute_ref_log_probs=precompute),
                train_dataset=raw,
                processing_class=tokenizer,
                callbacks=[clock],
            )

        return build

    def disco(clock: StepClock) -> DPOTrainer:
        return CandidateDPOTrainer(
            model=copy.deepcopy(reference),
            args=base_args,
            train_dataset=prepared,
            processing_class=tokenizer,
            candidate=load_candidate(DPO),
            callbacks=[clock],
        )

    variants = {"stock_ref_in_memory": stock(False), "stock_precomputed": stock(True), "disco_cached": disco}
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in variants}
    load_before = os.getloadavg()
    for r in range(args.repeats):
        names = list(variants)
        names = names[r % len(names) :] + names[: r % len(names)]
        for name in names:
            clock = StepClock()
            t0 = time.perf_counter()
            with quiet_trl():
                trainer = variants[name](clock)
            trainer.remove_callback(PrinterCallback)  # stock prints every log dict; printing is not training
            build_s = time.perf_counter() - t0
            runs[name].append({**timed_train(trainer, clock, args.warmup), "build_s": build_s})
            print(f"repeat {r} {name:22s} {runs[name][-1]['steps_per_second']:7.2f} steps/s", flush=True)

    def med(name: str, key: str) -> float:
        return statistics.median(run[key] for run in runs[name])

    summary = {
        name: {
            "median_steps_per_second": med(name, "steps_per_second"),
            "min_steps_per_second": min(run["steps_per_second"] for run in runs[name]),
            "max_steps_per_second": max(run["steps_per_second"] for run in runs[name]),
            "median_build_s": med(name, "build_s"),
            "median_train_call_s": med(name, "train_call_s"),
        }
        for name in runs
    }
    disco_sps = summary["disco_cached"]["median_steps_per_second"]
    ratios = {
        "disco_vs_stock_ref_in_memory": disco_sps / summary["stock_ref_in_memory"]["median_steps_per_second"],
        "disco_vs_stock_precomputed": disco_sps / summary["stock_precomputed"]["median_steps_per_second"],
    }
    result = {
        "setup": {
            "model": "GPT-2, 2 layers, 64 dims, word-level vocabulary of " + str(len(tokenizer)),
            "pairs": args.pairs,
            "batch_pairs": args.batch,
            "timed_steps": args.steps,
            "warmup_steps": args.warmup,
            "repeats": args.repeats,
            "mean_tokens_per_sequence": sum(
                len(p) + (len(c) + len(r)) / 2
                for p, c, r in zip(
                    prepared["prompt_ids"], prepared["chosen_ids"], prepared["rejected_ids"], strict=True
                )
            )
            / len(prepared),
            "torch_threads": torch.get_num_threads(),
            "cpu": platform.processor() or platform.machine(),
            "loadavg_before_after": [load_before, os.getloadavg()],
        },
        "one_time_prepare_s": prepare_s,
        "cache_reload_s": reload_s,
        "summary": summary,
        "ratios": ratios,
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2))
    args.out.with_suffix(".md").write_text(render_markdown(result))
    print(render_markdown(result))
    shutil.rmtree(tmp, ignore_errors=True)


def render_markdown(result: dict) -> str:
    s = result["setup"]
    lines = [
        "# Trainer throughput: stock TRL DPO vs disco",
        "",
        f"{s['model']}; {s['pairs']} pairs, {s['batch_pairs']} pairs per step, "
        f"~{s['mean_tokens_per_sequence']:.0f} tokens per sequence; CPU, {s['torch_threads']} torch threads; "
        f"median of {s['repeats']} interleaved repeats of {s['timed_steps']} timed steps "
        f"(load average before/after: {s['loadavg_before_after'][0][0]:.1f} / "
        f"{s['loadavg_before_after'][1][0]:.1f}).",
        "",
        "| variant | steps/s (median) | min | max | build s | train() s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, row in result["summary"].items():
        lines.append(
            f"| {name} | {row['median_steps_per_second']:.2f} | {row['min_steps_per_second']:.2f} | "
            f"{row['max_steps_per_second']:.2f} | {row['median_build_s']:.2f} | "
            f"{row['median_train_call_s']:.2f} |"
        )
    r = result["ratios"]
    lines += [
        "",
        f"- disco / stock (reference in memory): **{r['disco_vs_stock_ref_in_memory']:.2f}×**",
        f"- disco / stock (precomputed reference): **{r['disco_vs_stock_precomputed']:.2f}×**",
        f"- one-time prepare (tokenize + reference log-probs, stored): {result['one_time_prepare_s']:.2f} s; "
        f"reload from the cache: {result['cache_reload_s']:.3f} s",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
