"""Tokenize a preference data set and compute its reference log-probs once, for every candidate.

The reference model never changes during a search, so its log-probs on the training pairs are a
function of (reference weights, tokenizer, data set, max_length, precision). They are computed through a
throwaway stock `DPOTrainer` — TRL's own `_prepare_dataset` and `_precompute_ref_logps`, so the token ids
and log-probs are exactly those TRL would use — and stored on disk under a hash of those inputs.
Later calls load the stored Arrow files (memory-mapped) instead of running the reference model.

Two processes preparing the same data at once each write a private temporary directory and rename it
into place; the loser of the race discards its copy. A reader never sees a half-written entry.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
from pathlib import Path
from typing import Literal

import torch
import trl
from datasets import Dataset
from transformers import PreTrainedModel, PreTrainedTokenizerBase
from trl.trainer.dpo_config import DPOConfig
from trl.trainer.dpo_trainer import DPOTrainer
from trl.trainer.utils import hash_module

from targets.cache_dirs import build_dir_once, verified_dir
from targets.dpo.trainer import (
    REFCACHE_INFO_KEY,
    preset_reference_hash,
    quiet_hf,
    quiet_trl,
    unpatch_fused_head,
)

CACHE_FORMAT = 1
"""Bump when the stored layout or the way log-probs are computed changes."""


def tokenizer_hash(tokenizer: PreTrainedTokenizerBase) -> str:
    """Hash of everything that decides token ids: vocabulary and merges, special tokens, chat template."""
    h = hashlib.sha256()
    backend = getattr(tokenizer, "backend_tokenizer", None)
    h.update(backend.to_str().encode() if backend is not None else json.dumps(tokenizer.get_vocab()).encode())
    h.update(json.dumps(tokenizer.special_tokens_map, sort_keys=True, default=str).encode())
    h.update((tokenizer.chat_template or "").encode() if isinstance(tokenizer.chat_template, str) else b"")
    return h.hexdigest()


def cache_key(
    model_key: str,
    tokenizer: PreTrainedTokenizerBase,
    dataset: Dataset,
    max_length: int | None,
    batch_size: int,
    bf16: bool,
) -> tuple[str, dict[str, object]]:
    """The cache entry's name and the inputs it was derived from (stored beside it for inspection).

    `batch_size` is part of the key because padding changes the shapes of the matmuls, and with them the
    last bits of the log-probs: a cached entry must equal a fresh computation exactly.
    """
    parts: dict[str, object] = {
        "format": CACHE_FORMAT,
        "trl": trl.__version__,
        "model": model_key,
        "tokenizer": tokenizer_hash(tokenizer),
        "data": dataset._fingerprint,
        "rows": len(dataset),
        "max_length": max_length,
        "batch_size": batch_size,
        "bf16": bf16,
    }
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()
    return digest[:24], parts


def compute_reference_logps(
    ref_model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    dataset: Dataset,
    *,
    max_length: int | None,
    batch_size: int,
    use_cpu: bool,
    bf16: bool,
    model_key: str | None = None,
) -> Dataset:
    """Tokenize and run the reference model over `dataset` with TRL's own code paths (no cache).

    Returns the data set with `prompt_ids`, `chosen_ids`, `rejected_ids`, `ref_chosen_logps` and
    `ref_rejected_logps` added. Pairs whose prompt alone fills `max_length` are dropped, as TRL does.
    """
    quiet_hf()
    with tempfile.TemporaryDirectory(prefix="disco-refcache-") as out:
        args = DPOConfig(
            output_dir=out,
            precompute_ref_log_probs=True,
            precompute_ref_batch_size=batch_size,
            per_device_train_batch_size=batch_size,
            max_length=max_length,
            use_cpu=use_cpu,
            bf16=bf16,
            activation_checkpointing=False,
            disable_tqdm=True,
            report_to=[],
            save_strategy="no",
            dataloader_num_workers=0,
            dataloader_pin_memory=not use_cpu,
        )
        # ref_model=None with precompute: TRL scores the data with `model`, which here is the reference.
        with preset_reference_hash(model_key), quiet_trl(), torch.no_grad():
            trainer = DPOTrainer(
                model=ref_model, args=args, train_dataset=dataset, processing_class=tokenizer
            )
        prepared = trainer.train_dataset
    unpatch_fused_head(ref_model)
    return prepared


def prepare_preference_dataset(
    ref_model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    dataset: Dataset,
    *,
    cache_dir: Path | None,
    max_length: int | None,
    batch_size: int = 16,
    device: Literal["auto", "cpu", "cuda"] = "auto",
    bf16: bool | None = None,
    model_key: str | None = None,
) -> Dataset:
    """The data set tokenized as TRL does, with reference log-probs, from the cache when possible.

    `dataset` has `prompt`/`chosen`/`rejected` as strings or chat messages (TRL's formats). `max_length`
    and `bf16` must match the training config. `model_key` identifies the reference weights when the caller
    already knows them (e.g. a hub revision); otherwise every parameter is hashed (≈1 s per GB).
    With `cache_dir=None` nothing is stored.
    """
    use_cpu = device == "cpu" or (device == "auto" and not torch.cuda.is_available())
    if not use_cpu and not torch.cuda.is_available():
        raise RuntimeError("device='cuda' was requested but no CUDA GPU is available on this machine.")
    bf16 = (not use_cpu) if bf16 is None else (bf16 and not use_cpu)
    model_key = model_key or hash_module(ref_model)
    key, parts = cache_key(model_key, tokenizer, dataset, max_length, batch_size, bf16)
    final = Path(cache_dir) / f"refcache-{key}" if cache_dir is not None else None
    if final is not None and verified_dir(final, "meta.json"):
        return Dataset.load_from_disk(str(final))

    t0 = time.perf_counter()
    prepared = compute_reference_logps(
        ref_model,
        tokenizer,
        dataset,
        max_length=max_length,
        batch_size=batch_size,
        use_cpu=use_cpu,
        bf16=bf16,
        model_key=model_key,
    )
    # Stored in the data set's info so that training can refuse a different max_length (see check_prepared).
    prepared.info.description = json.dumps({REFCACHE_INFO_KEY: {**parts, "key": key}})
    if final is None:
        return prepared
    meta = {**parts, "key": key, "seconds": time.perf_counter() - t0, "rows_kept": len(prepared)}
    return Dataset.load_from_disk(str(store_atomically(prepared, final, meta)))


def store_atomically(prepared: Dataset, final: Path, meta: dict[str, object]) -> Path:
    """Publish `prepared` at `final` with its meta.json (written last); the first writer wins."""

    def build(tmp: Path) -> None:
        prepared.save_to_disk(str(tmp))
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2, default=str))

    build_dir_once(final, build, "meta.json")
    return final
