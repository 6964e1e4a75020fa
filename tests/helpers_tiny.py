"""Tiny offline fixtures: a word-level tokenizer, a 2-layer GPT-2 and a small preference data set.

Everything is built from code (no hub access), deterministically from a seed, and small enough that a
DPO step takes milliseconds on one CPU core.
"""

from __future__ import annotations

import os
import random

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch
from datasets import Dataset
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

# Tiny models gain nothing from intra-op threads, and on a shared 2-core machine two spinning OpenMP
# threads per process make a 1 ms step take 300 ms: one thread keeps test times stable.
torch.set_num_threads(1)

SPECIALS = ["<pad>", "<eos>", "<unk>"]
CHAT_WORDS = ["user", "assistant", "system", ":"]
POSITIVE = ["good", "great", "fine", "nice", "lovely", "superb"]
NEGATIVE = ["bad", "awful", "poor", "dull", "grim", "weak"]
NEUTRAL = ["the", "a", "film", "movie", "plot", "cast", "was", "is", "very", "quite", "and", "story", "it"]
WORDS = POSITIVE + NEGATIVE + NEUTRAL

# A chat template whose rendered prompt is a token prefix of prompt+answer, as TRL requires.
CHAT_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] }} : {{ m['content'] }}"
    "{% if m['role'] == 'assistant' %} <eos>{% endif %} {% endfor %}"
    "{% if add_generation_prompt %}assistant :{% endif %}"
)


def tiny_tokenizer(chat_template: bool = False) -> PreTrainedTokenizerFast:
    """A whitespace word-level tokenizer; `<eos>` is a special token because TRL appends its string."""
    vocab = {tok: i for i, tok in enumerate(SPECIALS + CHAT_WORDS + WORDS)}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>"
    )
    if chat_template:
        tok.chat_template = CHAT_TEMPLATE
    return tok


def tiny_gpt2(
    tokenizer: PreTrainedTokenizerFast,
    seed: int = 0,
    n_embd: int = 32,
    n_layer: int = 2,
    initializer_range: float = 0.02,
) -> GPT2LMHeadModel:
    """A randomly initialised GPT-2 with dropout off, so that forwards are deterministic.

    GPT-2's default init (0.02) gives near-uniform next-token distributions, so two random models have
    nearly equal log-probs; a larger `initializer_range` makes them differ.
    """
    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=64,
        n_embd=n_embd,
        n_layer=n_layer,
        n_head=2,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        initializer_range=initializer_range,
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return GPT2LMHeadModel(config).eval()


def _sentence(rng: random.Random, pool: list[str], n: int) -> str:
    return " ".join(rng.choice(pool) for _ in range(n))


def preference_rows(
    n: int, seed: int = 0, prompt_words: tuple[int, int] = (2, 5), completion_words: tuple[int, int] = (1, 6)
) -> list[dict[str, str]]:
    """Pairs whose chosen completion is positive and rejected negative, of varying lengths (in words).

    Completions start with a space, as TRL expects (it concatenates prompt and completion strings).
    """
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        prompt = _sentence(rng, NEUTRAL, rng.randint(*prompt_words))
        chosen = " " + _sentence(rng, POSITIVE + NEUTRAL[:4], rng.randint(*completion_words))
        rejected = " " + _sentence(rng, NEGATIVE + NEUTRAL[:4], rng.randint(*completion_words))
        rows.append({"prompt": prompt, "chosen": chosen, "rejected": rejected})
    return rows


def preference_dataset(n: int = 32, seed: int = 0, **lengths: tuple[int, int]) -> Dataset:
    """String-column preference data set (prompt / chosen / rejected); see `preference_rows`."""
    return Dataset.from_list(preference_rows(n, seed, **lengths))


def chat_rows(n: int, seed: int = 0, with_prompt: bool = True) -> list[dict]:
    """The same pairs as chat messages; without `prompt`, chosen/rejected carry the user turn too."""
    rows = []
    for r in preference_rows(n, seed):
        user = [{"role": "user", "content": r["prompt"]}]
        chosen = [{"role": "assistant", "content": r["chosen"].strip()}]
        rejected = [{"role": "assistant", "content": r["rejected"].strip()}]
        if with_prompt:
            rows.append({"prompt": user, "chosen": chosen, "rejected": rejected})
        else:
            rows.append({"chosen": user + chosen, "rejected": user + rejected})
    return rows
