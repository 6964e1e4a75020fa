"""The expensive evaluator's training half: a candidate loss on a real model and a real preference data set.

Same trainer as the cheap evaluator (`train_candidate`), on CUDA with bf16 autocast and SDPA attention,
optional activation checkpointing and LoRA. The reference is the model as loaded: its log-probs are
computed once (`prepare_preference_dataset`, cached on disk), then the same model object is trained, so
only one copy of the weights is ever in memory.

Errors a person can cause — a missing model path, a data set without the needed columns, no GPU when one
is requested, LoRA without `peft` — raise `RealDPOError` with one sentence.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Literal

import torch
from datasets import Dataset, DatasetDict, load_dataset, load_from_disk
from pydantic import BaseModel, Field
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerBase, TrainerCallback

from targets.dpo.candidate import CandidateLoss
from targets.dpo.refcache import prepare_preference_dataset
from targets.dpo.trainer import DPOTrainConfig, TrainOutcome, quiet_hf, train_candidate

FILE_FORMATS = {".json": "json", ".jsonl": "json", ".parquet": "parquet", ".csv": "csv"}


class RealDPOError(Exception):
    """A problem with the spec or the machine, told in one sentence."""


class LoRASpec(BaseModel):
    """LoRA adapters (needs the `gpu` extra: `pip install -e '.[gpu]'`)."""

    r: int = 16
    alpha: int = 32
    dropout: float = 0.0
    target_modules: list[str] | str = "all-linear"
    """Never include the LM head: TRL computes log-probs from `lm_head.weight` directly."""


def _default_train() -> DPOTrainConfig:
    return DPOTrainConfig(
        device="cuda", learning_rate=5e-7, per_device_train_batch_size=8, max_length=512, logging_steps=10
    )


class RealDPOSpec(BaseModel):
    """One real training run: which model, which data, how to train."""

    model: str
    """Local directory (save_pretrained layout) or hub id (offline: it must already be in the HF cache)."""
    dataset: str
    """Local .json/.jsonl/.parquet/.csv file, a save_to_disk directory, or a hub id."""
    split: str = "train"
    eval_fraction: float = 0.05
    """Held-out share of the pairs, scored after training (reward margins and accuracy)."""
    max_train_pairs: int | None = None
    max_eval_pairs: int | None = 512
    train: DPOTrainConfig = Field(default_factory=_default_train)
    """Hyperparameters; the default learning rate (5e-7) is the DPO paper's for full fine-tuning."""
    weights_dtype: Literal["auto", "float32", "bfloat16"] = "auto"
    """`auto`: float32 master weights for full fine-tuning (bf16 weights cannot take a 5e-7 step: the
    update is far below one bf16 ulp), bfloat16 for a frozen LoRA base. Compute runs in bf16 autocast."""
    attn_implementation: str = "sdpa"
    lora: LoRASpec | None = None
    ref_batch_size: int = 16
    cache_dir: Path | None = None
    """Where reference log-probs are cached; None computes them every run."""


class RealDPOResult(BaseModel):
    """Throughput and quality figures of one run; `outcome` holds the status and loss history."""

    outcome: TrainOutcome
    device: str
    train_pairs: int
    eval_pairs: int
    steps_per_second: float
    tokens_per_second: float
    """Non-padding tokens (prompt+chosen and prompt+rejected, after truncation) per second of training."""
    peak_gpu_memory_gib: float | None = None
    final_loss: float | None = None
    eval_reward_margin: float | None = None
    """Mean β·[(log π_c − log π_ref,c) − (log π_r − log π_ref,r)] over the held-out pairs."""
    eval_reward_accuracy: float | None = None
    load_seconds: float
    prepare_seconds: float


def load_preference_data(source: str, split: str = "train") -> Dataset:
    """A local file, a save_to_disk directory or a hub id, as one Dataset."""
    path = Path(source).expanduser()
    try:
        if path.suffix.lower() in FILE_FORMATS:
            if not path.is_file():
                raise RealDPOError(f"the data set file {source} does not exist.")
            return load_dataset(FILE_FORMATS[path.suffix.lower()], data_files=str(path), split="train")
        if path.is_dir() and any((path / f).exists() for f in ("state.json", "dataset_dict.json")):
            loaded = load_from_disk(str(path))
            return loaded[split] if isinstance(loaded, DatasetDict) else loaded
        return load_dataset(source, split=split)
    except RealDPOError:
        raise
    except (FileNotFoundError, ValueError, ConnectionError, OSError) as exc:
        raise RealDPOError(
            f"could not load the data set {source!r} ({type(exc).__name__}): give a .json/.jsonl/.parquet/"
            ".csv file, a save_to_disk directory, or a hub id that is in the local cache."
        ) from exc


def check_columns(dataset: Dataset, tokenizer: PreTrainedTokenizerBase) -> Dataset:
    """Keep prompt/chosen/rejected; one-sentence error unless they are in a format TRL reads."""
    columns = set(dataset.column_names)
    if not {"chosen", "rejected"} <= columns:
        raise RealDPOError(
            f"the data set has columns {sorted(columns)}; it needs 'chosen' and 'rejected' (plus 'prompt' "
            "for plain strings)."
        )
    chat = isinstance(dataset[0]["chosen"], list)
    if not chat and "prompt" not in columns:
        raise RealDPOError("the data set has string 'chosen'/'rejected' columns but no 'prompt' column.")
    if chat and not tokenizer.chat_template:
        raise RealDPOError("the data set is in chat format but the tokenizer has no chat template.")
    keep = [c for c in ("prompt", "chosen", "rejected") if c in columns]
    return dataset.select_columns(keep)


def load_model_and_tokenizer(spec: RealDPOSpec, device: str) -> tuple[Any, PreTrainedTokenizerBase]:
    path = Path(spec.model).expanduser()
    looks_local = spec.model.startswith((".", "/", "~")) or path.exists()
    if looks_local and not (path / "config.json").exists():
        raise RealDPOError(f"the model path {spec.model} does not exist or has no config.json.")
    dtype = spec.weights_dtype
    if dtype == "auto":
        dtype = "bfloat16" if spec.lora is not None and device == "cuda" else "float32"
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path) if looks_local else spec.model)
        model = AutoModelForCausalLM.from_pretrained(
            str(path) if looks_local else spec.model,
            dtype=getattr(torch, dtype),
            attn_implementation=spec.attn_implementation,
        )
    except OSError as exc:
        raise RealDPOError(
            f"could not load the model {spec.model!r}: it is neither a local directory nor in the local "
            "Hugging Face cache."
        ) from exc
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model.to(device), tokenizer


def require_peft() -> Any:
    """The peft module, or a one-sentence error naming the extra that provides it."""
    try:
        import peft
    except ImportError as exc:
        raise RealDPOError(
            "LoRA needs the `peft` package: install the gpu extra, pip install -e '.[gpu]'."
        ) from exc
    return peft


def apply_lora(model: Any, lora: LoRASpec) -> Any:
    """Wrap the model with fresh LoRA adapters; TRL then uses the adapter-disabled base as reference."""
    peft = require_peft()
    config = peft.LoraConfig(
        r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=lora.target_modules
    )
    return peft.get_peft_model(model, config)


def tokens_per_pair(prepared: Dataset, max_length: int | None) -> float:
    """Mean non-padding tokens the trainer sees per pair (both sequences, after truncation)."""
    cap = max_length or 10**9
    total = sum(
        min(len(p) + len(c), cap) + min(len(p) + len(r), cap)
        for p, c, r in zip(
            prepared["prompt_ids"], prepared["chosen_ids"], prepared["rejected_ids"], strict=True
        )
    )
    return total / max(len(prepared), 1)


def run_real_dpo(
    spec: RealDPOSpec, candidate: CandidateLoss, callbacks: list[TrainerCallback] | None = None
) -> RealDPOResult:
    """Load, prepare (cached), train with the candidate, score the held-out pairs.

    `callbacks` are handed to the trainer (a job streams its metrics and stops hopeless runs through them).
    """
    quiet_hf()
    try:
        device = spec.train.resolved_device()
    except RuntimeError as exc:
        raise RealDPOError(str(exc)) from exc
    if spec.lora is not None:
        require_peft()  # fail before minutes of loading and scoring
    t0 = time.perf_counter()
    model, tokenizer = load_model_and_tokenizer(spec, device)
    data = check_columns(load_preference_data(spec.dataset, spec.split), tokenizer)
    load_seconds = time.perf_counter() - t0

    split = data.train_test_split(test_size=spec.eval_fraction, seed=spec.train.seed)
    train_raw, eval_raw = split["train"], split["test"]
    if spec.max_train_pairs is not None:
        train_raw = train_raw.select(range(min(spec.max_train_pairs, len(train_raw))))
    if spec.max_eval_pairs is not None:
        eval_raw = eval_raw.select(range(min(spec.max_eval_pairs, len(eval_raw))))

    t0 = time.perf_counter()
    bf16 = spec.train.bf16 if spec.train.bf16 is not None else device == "cuda"
    prepare = dict(
        cache_dir=spec.cache_dir,
        max_length=spec.train.max_length,
        batch_size=spec.ref_batch_size,
        device=device,
        bf16=bf16,
    )
    # The model as loaded is the reference: score the pairs with it before it is trained.
    train_prepared = prepare_preference_dataset(model, tokenizer, train_raw, **prepare)
    eval_prepared = prepare_preference_dataset(model, tokenizer, eval_raw, **prepare)
    prepare_seconds = time.perf_counter() - t0

    if spec.lora is not None:
        model = apply_lora(model, spec.lora)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    outcome = train_candidate(
        candidate,
        model,
        tokenizer,
        train_prepared,
        spec.train,
        eval_dataset=eval_prepared,
        callbacks=callbacks,
    )
    peak = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None

    pairs_per_step = spec.train.per_device_train_batch_size * spec.train.gradient_accumulation_steps
    tokens = outcome.steps * pairs_per_step * tokens_per_pair(train_prepared, spec.train.max_length)
    return RealDPOResult(
        outcome=outcome,
        device=device,
        train_pairs=len(train_prepared),
        eval_pairs=len(eval_prepared),
        steps_per_second=outcome.steps_per_second,
        tokens_per_second=tokens / outcome.seconds if outcome.seconds > 0 else 0.0,
        peak_gpu_memory_gib=peak,
        final_loss=outcome.final_loss,
        eval_reward_margin=outcome.eval_metrics.get("eval_rewards/margins"),
        eval_reward_accuracy=outcome.eval_metrics.get("eval_rewards/accuracies"),
        load_seconds=load_seconds,
        prepare_seconds=prepare_seconds,
    )
