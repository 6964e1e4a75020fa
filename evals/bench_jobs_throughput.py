"""Training throughput of a disco DPO job vs stock TRL `DPOTrainer`, same model, data, batch and length.

The model is built from a config with random weights (throughput does not depend on what it knows), saved
as a model directory; the data are synthetic pairs of random vocabulary words with fixed lengths. Two
variants, interleaved over several repeats, medians reported:

- `stock_trl`: `DPOTrainer(loss_type="sigmoid")` as a user runs it — the reference model in memory, one
  reference forward per step — in this process;
- `disco_job`: the same training submitted to `tools.jobs.JobQueue` (local backend): a confined worker
  process trains with `CandidateDPOTrainer` on reference log-probs from the shared cache (computed by the
  first job, reused by the others) and streams its metrics.

Tokens/s count non-padding tokens (prompt+chosen and prompt+rejected) per second of steady training:
between the end of the warm-up steps and the last step (stock: a step clock; job: the timestamps of its
streamed log steps). MFU = tokens/s × (6·N + 12·L·d·T) / peak FLOP/s, with N the weights of the matmuls
(LM head included), L layers, d width and T the mean sequence length (Chinchilla/PaLM accounting;
the reference forward is overhead, not model FLOPs). Peak: 989 TFLOP/s for H100/H200 bf16 dense, else
`--peak-tflops`; on a CPU, a measured float32 matmul rate on the same threads.

    .venv/bin/python evals/bench_jobs_throughput.py                              # tiny, CPU (~2 min)
    .venv/bin/python evals/bench_jobs_throughput.py --device cuda --size 0.5b    # Qwen2.5-0.5B shape

Writes evals/results/jobs/throughput_<size>_<device>.json and .md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
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
for _var in (
    "HF_HUB_OFFLINE",
    "HF_DATASETS_OFFLINE",
    "HF_HUB_DISABLE_TELEMETRY",
    "HF_HUB_DISABLE_PROGRESS_BARS",
):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
from bench_trainer_throughput import DPO, StepClock  # noqa: E402
from datasets import Dataset  # noqa: E402
from tokenizers import pre_tokenizers  # noqa: E402
from transformers import AutoModelForCausalLM, Qwen2Config, Qwen2Tokenizer  # noqa: E402
from transformers.trainer_callback import PrinterCallback  # noqa: E402
from trl import DPOTrainer  # noqa: E402

from targets.dpo.real import RealDPOSpec  # noqa: E402
from targets.dpo.trainer import DPOTrainConfig, quiet_hf, quiet_trl  # noqa: E402
from tools.jobs import JobQueue, JobSpec, Resources  # noqa: E402

RESULTS = ROOT / "evals" / "results" / "jobs"


def _shape(
    d: int, layers: int, heads: int, kv: int, ff: int, vocab: int, prompt: int, max_length: int
) -> dict:
    config = dict(
        hidden_size=d,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv,
        intermediate_size=ff,
        vocab_size=vocab,
    )
    return {"config": config, "prompt": prompt, "completion": prompt, "max_length": max_length}


SIZES: dict[str, dict[str, Any]] = {
    # A Qwen2 config, prompt / completion lengths (characters = tokens) and max_length.
    "tiny": _shape(128, 4, 4, 2, 512, 4096, prompt=48, max_length=128),
    "0.5b": _shape(896, 24, 14, 2, 4864, 151936, prompt=384, max_length=1024),  # Qwen2.5-0.5B
    "1b": _shape(2048, 16, 32, 8, 8192, 128256, prompt=384, max_length=1024),  # Llama-3.2-1B widths
}
PEAK_TFLOPS = {"H200": 989.4, "H100": 989.4, "A100": 312.0, "L40S": 362.0}
"""Dense bf16 tensor-core peaks (SXM parts) from the vendors' data sheets."""


def build_model_dir(size: str, folder: Path) -> Path:
    """A Qwen2-shaped model with random weights and Qwen2's byte-level tokenizer without merges (one token
    per character: sequence lengths are exact), saved as a model directory."""
    shape = SIZES[size]["config"]
    vocab = {c: i for i, c in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    vocab |= {"<|endoftext|>": len(vocab), "<pad>": len(vocab) + 1}
    tokenizer = Qwen2Tokenizer(
        vocab=vocab, merges=[], unk_token=None, eos_token="<|endoftext|>", pad_token="<pad>"
    )
    config = Qwen2Config(
        **shape, max_position_embeddings=4096, tie_word_embeddings=True, pad_token_id=vocab["<pad>"],
        eos_token_id=vocab["<|endoftext|>"], bos_token_id=vocab["<|endoftext|>"], attention_dropout=0.0,
    )  # fmt: skip
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    path = folder / f"qwen2-{size}-random"
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def write_pairs(path: Path, n: int, prompt: int, completion: int) -> Path:
    """Random lowercase text: `prompt` and `completion` characters, i.e. tokens, per field."""
    rng = random.Random(0)

    def text(k: int) -> str:
        return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz    ") for _ in range(k))

    rows = [
        {"prompt": text(prompt), "chosen": " " + text(completion - 1), "rejected": " " + text(completion - 1)}
        for _ in range(n)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def count_pair_tokens(tokenizer: Any, raw: Dataset, max_length: int) -> float:
    """Mean tokens per pair as the trainer sees them: prompt+chosen+EOS and prompt+rejected+EOS, each cut
    at max_length (as `targets.dpo.real.tokens_per_pair`, without running a reference model first)."""

    def n(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    total = 0
    for row in raw:
        prompt = n(row["prompt"])
        total += min(prompt + n(row["chosen"]) + 1, max_length) + min(
            prompt + n(row["rejected"]) + 1, max_length
        )
    return total / len(raw)


def matmul_flops_per_token(model: torch.nn.Module, mean_seq: float) -> float:
    """6·N for the matmul weights (every nn.Linear, the tied LM head included) + 12·L·d·T attention."""
    n = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    cfg = model.config
    return 6 * n + 12 * cfg.num_hidden_layers * cfg.hidden_size * mean_seq


def peak_flops(device: str, given: float | None, threads: int) -> tuple[float, str]:
    if given:
        return given * 1e12, "given (--peak-tflops)"
    if device == "cuda":
        name = torch.cuda.get_device_name()
        for key, tflops in PEAK_TFLOPS.items():
            if key in name:
                return tflops * 1e12, f"{name} bf16 dense data-sheet peak"
        raise SystemExit(f"unknown GPU {name!r}: give --peak-tflops")
    torch.set_num_threads(threads)
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    a @ b
    t0, reps = time.perf_counter(), 20
    for _ in range(reps):
        a @ b
    rate = reps * 2 * 1024**3 / (time.perf_counter() - t0)
    return rate, f"measured float32 1024² matmul on {threads} thread(s)"


def run_stock(spec: RealDPOSpec, raw: Dataset, warmup: int) -> dict[str, float]:
    """Stock TRL, reference model in memory, timed by a step clock."""
    from targets.dpo.real import load_model_and_tokenizer

    device = spec.train.device
    model, tokenizer = load_model_and_tokenizer(spec, device)
    ref, _ = load_model_and_tokenizer(spec, device)
    clock = StepClock()
    args = spec.train.to_dpo_config(tempfile.mkdtemp(prefix="disco-stock-"))
    args = dataclasses.replace(
        args, loss_type=["sigmoid"], logging_nan_inf_filter=True, precompute_ref_log_probs=False
    )
    with quiet_trl():
        trainer = DPOTrainer(
            model=model,
            ref_model=ref,
            args=args,
            train_dataset=raw,
            processing_class=tokenizer,
            callbacks=[clock],
        )
    trainer.remove_callback(PrinterCallback)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    with quiet_trl():
        trainer.train()
    t = clock.times
    out = {
        "steps_per_second": (len(t) - 1 - warmup) / (t[-1] - t[warmup]),
        "train_call_s": time.perf_counter() - t0,
    }
    if device == "cuda":
        out["peak_gpu_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
    del trainer, model, ref
    if device == "cuda":
        torch.cuda.empty_cache()
    return out


def run_job(queue: JobQueue, spec: JobSpec, warmup: int) -> dict[str, float]:
    """Submit, wait, and take the steady rate from the job's streamed log-step timestamps."""
    t0 = time.perf_counter()
    job = queue.wait(queue.submit(spec).id)
    if job.state != "succeeded":
        raise SystemExit(f"the disco job {job.id} ended {job.state}: {job.reason}\n{job.traceback or ''}")
    steps = [m for m in queue.metrics(job.id)[0] if m["kind"] == "train"]
    first = next(m for m in steps if m["step"] >= warmup)
    last = steps[-1]
    return {
        "steps_per_second": (last["step"] - first["step"]) / (last["time"] - first["time"]),
        "job_wall_s": time.perf_counter() - t0,
        "job_seconds_in_worker": job.metrics["job_seconds"],
        "load_s": job.metrics["load_seconds"],
        "prepare_s": job.metrics["prepare_seconds"],
        **(
            {"peak_gpu_memory_gib": job.metrics["peak_gpu_memory_gib"]}
            if job.metrics.get("peak_gpu_memory_gib")
            else {}
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=list(SIZES), default="tiny")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--batch", type=int, default=8, help="preference pairs per step")
    parser.add_argument("--steps", type=int, default=40, help="training steps per run (warm-up included)")
    parser.add_argument(
        "--warmup", type=int, default=5, help="steps excluded from the timing (= logging steps)"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--pairs", type=int, default=512)
    parser.add_argument("--threads", type=int, default=1, help="CPU: torch threads of both variants")
    parser.add_argument("--peak-tflops", type=float, default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    quiet_hf()
    torch.set_num_threads(args.threads)
    shape = SIZES[args.size]
    tmp = Path(tempfile.mkdtemp(prefix="disco-bench-jobs-"))
    model_dir = build_model_dir(args.size, tmp)
    data = write_pairs(tmp / "pairs.jsonl", args.pairs, shape["prompt"], shape["completion"])

    train = DPOTrainConfig(
        device=args.device,
        learning_rate=5e-7,
        per_device_train_batch_size=args.batch,
        max_steps=args.steps,
        max_length=shape["max_length"],
        logging_steps=args.warmup,
        lr_scheduler_type="constant",
    )
    real = RealDPOSpec(
        model=str(model_dir), dataset=str(data), eval_fraction=0.02, max_eval_pairs=8, train=train
    )
    from targets.dpo.real import check_columns, load_model_and_tokenizer, load_preference_data

    model, tokenizer = load_model_and_tokenizer(real, "cpu")
    raw = check_columns(load_preference_data(str(data)), tokenizer)
    pair_tokens = count_pair_tokens(tokenizer, raw, shape["max_length"])
    flops_per_token = matmul_flops_per_token(model, pair_tokens / 2)
    n_params = sum(p.numel() for p in model.parameters())
    del model
    peak, peak_source = peak_flops(args.device, args.peak_tflops, args.threads)

    resources = Resources(gpus=1) if args.device == "cuda" else Resources(cpus=args.threads)
    queue = JobQueue(tmp / "jobs", cpu_slots=max(1, args.threads), cache_dir=str(tmp / "cache"))
    runs: dict[str, list[dict[str, float]]] = {"stock_trl": [], "disco_job": []}
    load_before = os.getloadavg()
    for r in range(args.repeats):
        order = ["stock_trl", "disco_job"] if r % 2 == 0 else ["disco_job", "stock_trl"]
        for name in order:
            if name == "stock_trl":
                run = run_stock(real, raw, args.warmup)
            else:  # another name per repeat: a new job (the same spec would be the same, finished, job)
                spec = JobSpec(
                    candidate_name=f"dpo-{r}",
                    candidate_code=DPO,
                    train=real.model_dump(mode="json"),
                    resources=resources,
                    time_limit_s=3600,
                )
                run = run_job(queue, spec, args.warmup)
            run["tokens_per_second"] = run["steps_per_second"] * args.batch * pair_tokens
            run["mfu"] = run["tokens_per_second"] * flops_per_token / peak
            runs[name].append(run)
            print(
                f"repeat {r} {name:10s} {run['tokens_per_second']:10.0f} tokens/s  MFU {run['mfu']:.1%}",
                flush=True,
            )

    summary = {
        name: {k: statistics.median(run[k] for run in rs if k in run) for k in rs[0]}
        for name, rs in runs.items()
    }
    ratio = summary["disco_job"]["tokens_per_second"] / summary["stock_trl"]["tokens_per_second"]
    device_name = (
        torch.cuda.get_device_name()
        if args.device == "cuda"
        else (platform.processor() or platform.machine())
    )
    result = {
        "setup": {
            "size": args.size,
            "model": f"Qwen2 shape {shape['config']}, random weights, tied embeddings",
            "parameters": n_params,
            "device": device_name,
            "threads": args.threads if args.device == "cpu" else None,
            "precision": "bf16 autocast, float32 weights" if args.device == "cuda" else "float32",
            "batch_pairs": args.batch,
            "max_length": shape["max_length"],
            "tokens_per_pair": pair_tokens,
            "steps": args.steps,
            "warmup_steps": args.warmup,
            "repeats": args.repeats,
            "flops_per_token": flops_per_token,
            "peak_flops": peak,
            "peak_source": peak_source,
            "loadavg_before_after": [load_before, os.getloadavg()],
        },
        "summary_median": summary,
        "disco_vs_stock_tokens_per_second": ratio,
        "goal_h200": {"ratio_at_least": 1.5, "mfu_at_least": 0.40},
        "runs": runs,
    }
    out = args.out or RESULTS / f"throughput_{args.size}_{args.device}"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2))
    out.with_suffix(".md").write_text(report(result))
    print(report(result))
    queue.close()
    shutil.rmtree(tmp, ignore_errors=True)


def report(result: dict[str, Any]) -> str:
    s, m = result["setup"], result["summary_median"]
    lines = [
        f"# DPO job throughput vs stock TRL ({s['size']}, {s['device']})",
        "",
        f"{s['model']}; {s['parameters'] / 1e6:.1f} M parameters; {s['precision']}; "
        f"{s['batch_pairs']} pairs per step, max_length {s['max_length']}, {s['tokens_per_pair']:.0f} tokens "
        f"per pair; {s['steps']} steps of which {s['warmup_steps']} warm-up; median of {s['repeats']} "
        "interleaved repeats. Peak: "
        f"{s['peak_flops'] / 1e12:.3g} TFLOP/s ({s['peak_source']}); load average before/after: "
        f"{s['loadavg_before_after'][0][0]:.1f} / {s['loadavg_before_after'][1][0]:.1f}.",
        "",
        "| variant | tokens/s | steps/s | MFU |",
        "|---|---:|---:|---:|",
    ]
    for name, row in m.items():
        lines.append(
            f"| {name} | {row['tokens_per_second']:.0f} | {row['steps_per_second']:.2f} | {row['mfu']:.2%} |"
        )
    job = m["disco_job"]
    lines += [
        "",
        f"- disco job / stock TRL (tokens/s): **{result['disco_vs_stock_tokens_per_second']:.2f}×**",
        f"- job overheads (median): {job['job_wall_s']:.1f} s from submit to result (process start, imports, "
        f"confinement, training, held-out scoring), of which model load {job['load_s']:.2f} s and reference "
        f"log-probs {job['prepare_s']:.2f} s: read from the shared cache, which the first job filled in "
        f"{result['runs']['disco_job'][0]['prepare_s']:.2f} s",
        f"- goal on an H200 in bf16: ≥ {result['goal_h200']['ratio_at_least']}× stock and ≥ "
        f"{result['goal_h200']['mfu_at_least']:.0%} MFU",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
