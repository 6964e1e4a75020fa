"""Settings of the toy DPO task: the synthetic language, the SFT model, the preference pairs, the evaluation.

Fields split into three groups by what they invalidate: `sft_key()` covers what the cached SFT model
depends on, `key()` adds what the cached preference pairs depend on, and the evaluation fields change
nothing on disk (they are read each time `evaluate_policy` runs).
"""

from __future__ import annotations

import hashlib
import json

from pydantic import BaseModel, ConfigDict, Field, model_validator

_SFT_FIELDS = (
    "n_layer",
    "n_embd",
    "n_head",
    "n_positions",
    "sft_corpus_size",
    "sft_steps",
    "sft_lr",
    "sft_batch_size",
    "max_sentences",
    "data_seed",
)
CACHE_VERSION = 1
"""Bump when the language, the reward, the SFT loop or the cache layout changes: old caches then miss."""
_PAIR_FIELDS = ("n_train_pairs", "bt_temperature", "label_flip_rate", "pair_max_new_tokens")


class ToyTaskConfig(BaseModel):
    """One toy task: the cheap, exact stand-in for the DiscoPOP paper's GPT-2 / IMDb study."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # --- the SFT (reference) model: a GPT-2 built from a config, never downloaded ---
    n_layer: int = Field(default=2, ge=1)
    """Transformer blocks. Two are enough to learn the grammar and keep a DPO step at ~15 ms."""
    n_embd: int = Field(default=64, ge=8)
    """Width of the residual stream."""
    n_head: int = Field(default=4, ge=1)
    """Attention heads; must divide `n_embd`."""
    n_positions: int = Field(default=64, ge=16)
    """Context length; must hold the longest prompt plus `pair_max_new_tokens` / `eval_max_new_tokens`."""

    # --- SFT on text sampled from the grammar ---
    sft_corpus_size: int = Field(default=20_000, ge=100)
    """Reviews sampled from the grammar for SFT (prompt + completion); the model sees each ~2 times."""
    sft_steps: int = Field(default=600, ge=1)
    """AdamW steps of next-token training on completion tokens."""
    sft_lr: float = Field(default=3e-3, gt=0)
    """Peak learning rate (linear warm-up, cosine decay); a random tiny model needs ~1e-3 or more."""
    sft_batch_size: int = Field(default=64, ge=1)
    """Sequences per SFT step."""
    max_sentences: int = Field(default=4, ge=1, le=8)
    """Sentences a grammatical review may have. SFT text rarely uses the maximum, so a policy that
    learns "longer is better" from the pairs walks off a cliff: one sentence too many is ungrammatical
    and scores the reward floor. This is one of the ways the task can be over-optimised."""

    # --- preference pairs sampled from the SFT model and labelled by the exact reward ---
    n_train_pairs: int = Field(default=512, ge=1)
    """Pairs in the DPO training set. Few pairs trained for many epochs is the regime where DPO
    over-fits (margins grow without bound on near-deterministic labels) and IPO was proposed."""
    bt_temperature: float = Field(default=0.1, gt=0)
    """Label noise of the Bradley–Terry draw: chosen = y1 with p = σ((r1 − r2) / bt_temperature).
    Small values make preferences near-deterministic (the IPO paper's failure case for DPO)."""
    label_flip_rate: float = Field(default=0.0, ge=0, lt=0.5)
    """Fraction of pairs whose label is swapped after the Bradley–Terry draw: symmetric label noise,
    the setting that conservative DPO (cDPO) and robust DPO are designed for."""
    pair_max_new_tokens: int = Field(default=40, ge=1)
    """Generation limit when sampling pair completions; an unfinished one scores the reward floor."""

    # --- evaluation (nothing cached depends on these) ---
    n_eval_prompts: int = Field(default=512, ge=1)
    """Held-out prompts per evaluation (name × film combinations never seen in the pairs); capped
    by the number of held-out prompts the language has. More prompts, less noise in the fitness."""
    eval_max_new_tokens: int = Field(default=40, ge=1)
    """Generation limit at evaluation; the longest grammatical review is 37 tokens with `<eos>` at
    `max_sentences=4`, so 40 only cuts off text that is already ungrammatical."""
    eval_temperature: float = Field(default=1.0, gt=0)
    """Sampling temperature at evaluation. The KL estimate is unbiased for KL(π‖π_ref) only at 1."""
    eval_samples_per_prompt: int = Field(default=1, ge=1, le=16)
    """Completions sampled per held-out prompt; a prompt's item score is their mean. More samples cut the
    item-sampling share of the per-seed noise (not the training share) for more evaluation time; the first
    sample of each prompt is the one a single-sample evaluation draws (evals/bench_variance_levers.py
    measures what each setting buys)."""

    data_seed: int = 0
    """Seed of the grammar samples, the train / held-out prompt split, SFT and the pairs."""

    @model_validator(mode="after")
    def _check_dims(self) -> ToyTaskConfig:
        if self.n_embd % self.n_head:
            raise ValueError(f"n_head={self.n_head} must divide n_embd={self.n_embd}")
        # 10 prompt tokens at most (see language.PROMPT_TEMPLATES) + the generated completion
        longest = 10 + max(self.pair_max_new_tokens, self.eval_max_new_tokens)
        if longest > self.n_positions:
            raise ValueError(f"n_positions={self.n_positions} cannot hold prompt + completion ({longest})")
        return self

    def sft_key(self) -> str:
        """Short hash of the fields the cached tokenizer and SFT model depend on."""
        return _hash({k: getattr(self, k) for k in _SFT_FIELDS})

    def key(self) -> str:
        """Short hash of the fields any cached artefact depends on (SFT model and preference pairs)."""
        return _hash({k: getattr(self, k) for k in (*_SFT_FIELDS, *_PAIR_FIELDS)})


def _hash(fields: dict[str, object]) -> str:
    blob = json.dumps({**fields, "cache_version": CACHE_VERSION}, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:12]
