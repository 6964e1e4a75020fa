"""Build once, cache and load the toy DPO task: tokenizer, SFT (reference) model, pairs, eval prompts.

Cache layout under `cache_dir/toy/`:

    sft-<config.sft_key()>/   tokenizer + GPT-2 SFT model (save_pretrained), manifest.json
    <config.key()>/           pairs.jsonl, eval_prompts.json, manifest.json (config, stats, SFT dir)

The SFT model has its own key so that sweeps over the pair knobs (n_train_pairs, bt_temperature,
label_flip_rate) reuse one SFT model. Each directory is built in a temporary sibling and renamed into
place (atomic on one file system), under an flock so that a second process waits instead of building
the same thing twice; a directory without manifest.json is never read.
"""

from __future__ import annotations

import json
import math
import os
import random
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from targets.cache_dirs import build_dir_once
from targets.dpo.toy import language as lang
from targets.dpo.toy.config import ToyTaskConfig

if TYPE_CHECKING:
    from datasets import Dataset
    from transformers import GPT2LMHeadModel, PreTrainedTokenizerFast

MANIFEST = "manifest.json"


class SftStats(BaseModel):
    """How well the SFT model learned the language: the numbers to calibrate the task by."""

    loss_first: float
    """Mean next-token loss of the first 20 steps (≈ ln(vocab) for a random model)."""
    loss_final: float
    """Mean next-token loss of the last 50 steps."""
    grammatical_frac: float
    """Fraction of the SFT model's samples (held-out prompts, temperature 1) that parse."""
    mean_reward: float
    std_reward: float
    grammatical_mean_reward: float
    """Mean reward of the grammatical samples only: near the corpus's when SFT learned the sentiment mix."""
    corpus_grammatical_frac: float
    """The same for the grammar's own samples on the held-out prompts (1.0 by construction)."""
    corpus_mean_reward: float
    corpus_std_reward: float
    n_samples: int
    seconds: float


class SftManifest(BaseModel):
    config: ToyTaskConfig
    sft_key: str
    built_at: float
    builder_pid: int
    stats: SftStats


class PairStats(BaseModel):
    n_pairs: int
    n_identical_skipped: int
    agree_frac: float
    """Fraction of pairs whose chosen completion has the strictly higher exact reward."""
    tie_frac: float
    """Fraction of pairs with equal rewards (labelled by a coin flip)."""
    flipped_frac: float
    mean_chosen_reward: float
    mean_rejected_reward: float
    seconds: float


class TaskManifest(BaseModel):
    config: ToyTaskConfig
    key: str
    sft_dir: str
    built_at: float
    builder_pid: int
    n_eval_prompts_available: int
    pairs: PairStats


@dataclass
class ToyTask:
    """A loaded toy task. Cheap to load; the SFT model is read from disk only on request."""

    config: ToyTaskConfig
    tokenizer: PreTrainedTokenizerFast
    sft_model_dir: Path
    task_dir: Path
    train_pairs: Dataset
    """String columns prompt / chosen / rejected (completions start with a space, no `<eos>`: TRL
    appends it), plus chosen_reward, rejected_reward (float) and label_flipped (bool)."""
    eval_prompts: list[str]
    """Held-out prompts, `config.n_eval_prompts` of them at most, in a fixed shuffled order."""
    manifest: TaskManifest
    sft_manifest: SftManifest
    built_now: bool = False
    """True when this call built (part of) the cache, False when everything came from disk."""
    _weights: dict[str, Any] | None = field(default=None, repr=False)
    _model_config: Any = field(default=None, repr=False)

    def load_sft_model(self) -> GPT2LMHeadModel:
        """A fresh copy of the SFT model in eval mode (callers may train it).

        The weights are read from disk once per task and copied after that (~2 ms, no progress bar),
        because a sweep asks for two models per training run."""
        import torch
        from transformers import GPT2Config, GPT2LMHeadModel

        weights = self.sft_weights()
        if self._model_config is None:  # read once: a jailed training child sees no cache files
            self._model_config = GPT2Config.from_pretrained(self.sft_model_dir)
        with torch.random.fork_rng():  # the init is overwritten; keep the caller's RNG stream intact
            model = GPT2LMHeadModel(self._model_config)
        missing, unexpected = model.load_state_dict(weights, strict=False)
        if unexpected or set(missing) - {"lm_head.weight"}:  # lm_head.weight is tied to wte
            raise RuntimeError(f"{self.sft_model_dir}: missing {missing}, unexpected {unexpected}")
        return model.eval()

    def sft_weights(self) -> dict[str, Any]:
        """The SFT model's tensors by name, read from disk once (callers must not modify them)."""
        from safetensors.torch import load_file

        if self._weights is None:
            self._weights = load_file(self.sft_model_dir / "model.safetensors")
        return self._weights

    def reward(self, text: str) -> float:
        """Exact reward of a completion; see `language.reward`."""
        return lang.reward(text, self.config.max_sentences)


def load_toy_task(config: ToyTaskConfig, cache_dir: Path) -> ToyTask:
    """Load the task from `cache_dir/toy/`, building what is missing (≈ 20-30 s on 2 cores)."""
    from datasets import Dataset
    from transformers import PreTrainedTokenizerFast

    root = Path(cache_dir) / "toy"
    sft_dir = root / f"sft-{config.sft_key()}"
    task_dir = root / config.key()
    built_sft = build_dir_once(sft_dir, lambda tmp: _build_sft(config, tmp), MANIFEST)
    built_task = build_dir_once(task_dir, lambda tmp: _build_pairs(config, sft_dir, tmp), MANIFEST)

    tokenizer = PreTrainedTokenizerFast.from_pretrained(sft_dir)
    rows = [json.loads(line) for line in (task_dir / "pairs.jsonl").read_text().splitlines()]
    prompts = json.loads((task_dir / "eval_prompts.json").read_text())
    return ToyTask(
        config=config,
        tokenizer=tokenizer,
        sft_model_dir=sft_dir,
        task_dir=task_dir,
        train_pairs=Dataset.from_list(rows),
        eval_prompts=prompts[: config.n_eval_prompts],
        manifest=TaskManifest.model_validate_json((task_dir / MANIFEST).read_text()),
        sft_manifest=SftManifest.model_validate_json((sft_dir / MANIFEST).read_text()),
        built_now=built_sft or built_task,
    )


# ----------------------------------------------------------------------------------------------
# atomic, once-only builds


# ----------------------------------------------------------------------------------------------
# SFT


def _build_sft(config: ToyTaskConfig, out: Path) -> None:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from targets.dpo.toy.sampling import draw_uniforms, sample
    from targets.dpo.toy.tokenizer import build_tokenizer, eos_and_pad_ids

    t0 = time.time()
    tok = build_tokenizer()
    eos, pad = eos_and_pad_ids(tok)
    train_prompts, held_prompts = lang.split_prompts(config.data_seed)
    rng = random.Random(f"sft-corpus-{config.data_seed}")
    corpus = []  # (prompt ids, completion ids + eos)
    for _ in range(config.sft_corpus_size):
        prompt = rng.choice(train_prompts)
        completion = lang.sample_completion(rng, prompt, config.max_sentences)
        corpus.append((tok(prompt).input_ids, [*tok(completion).input_ids, eos]))

    gpt_config = GPT2Config(
        vocab_size=len(tok),
        n_positions=config.n_positions,
        n_embd=config.n_embd,
        n_layer=config.n_layer,
        n_head=config.n_head,
        # no dropout: the corpus is large for this model, and DPO then trains without dropout noise
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=eos,
        eos_token_id=eos,
        pad_token_id=pad,
    )
    with torch.random.fork_rng():
        torch.manual_seed(config.data_seed)
        model = GPT2LMHeadModel(gpt_config)
    opt = torch.optim.AdamW(model.parameters(), lr=config.sft_lr, weight_decay=0.01, betas=(0.9, 0.98))
    warmup = max(1, config.sft_steps // 20)

    def lr_at(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, config.sft_steps - warmup)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    gen = torch.Generator().manual_seed(config.data_seed)
    losses = []
    model.train()
    for _step in range(config.sft_steps):
        idx = torch.randint(len(corpus), (config.sft_batch_size,), generator=gen).tolist()
        batch = [corpus[i] for i in idx]
        width = max(len(p) + len(c) for p, c in batch)
        ids = torch.full((len(batch), width), pad)  # (B, L)
        labels = torch.full((len(batch), width), -100)  # (B, L): loss on completion tokens only
        attn = torch.zeros((len(batch), width), dtype=torch.long)
        for r, (p, c) in enumerate(batch):
            n = len(p) + len(c)
            ids[r, :n] = torch.tensor(p + c)
            labels[r, len(p) : n] = torch.tensor(c)
            attn[r, :n] = 1
        logits = model(input_ids=ids, attention_mask=attn).logits  # (B, L, V)
        loss = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
    model.eval()

    # how good is the reference? two samples per held-out prompt, against the grammar's own samples
    prompts = held_prompts * 2
    ids = [tok(p).input_ids for p in prompts]
    steps = config.eval_max_new_tokens
    completions, done = sample(model, ids, draw_uniforms(config.data_seed + 1, len(ids), steps), eos)
    texts = [" " + " ".join(tok.convert_ids_to_tokens(c)) for c in completions]
    gram = [d and lang.is_grammatical(t, config.max_sentences) for t, d in zip(texts, done, strict=True)]
    rewards = [
        lang.reward(t, config.max_sentences) if g else lang.FLOOR for t, g in zip(texts, gram, strict=True)
    ]
    ref_rng = random.Random(f"sft-reference-{config.data_seed}")
    ref_texts = [lang.sample_completion(ref_rng, p, config.max_sentences) for p in prompts]
    ref_rewards = [lang.reward(t, config.max_sentences) for t in ref_texts]
    stats = SftStats(
        loss_first=statistics.mean(losses[:20]),
        loss_final=statistics.mean(losses[-50:]),
        grammatical_frac=sum(gram) / len(gram),
        mean_reward=statistics.mean(rewards),
        std_reward=statistics.pstdev(rewards),
        grammatical_mean_reward=statistics.fmean(
            [r for r, g in zip(rewards, gram, strict=True) if g] or [0.0]
        ),
        corpus_grammatical_frac=statistics.fmean(
            lang.is_grammatical(t, config.max_sentences) for t in ref_texts
        ),
        corpus_mean_reward=statistics.mean(ref_rewards),
        corpus_std_reward=statistics.pstdev(ref_rewards),
        n_samples=len(prompts),
        seconds=time.time() - t0,
    )
    model.save_pretrained(out)
    tok.save_pretrained(out)
    manifest = SftManifest(
        config=config, sft_key=config.sft_key(), built_at=time.time(), builder_pid=os.getpid(), stats=stats
    )
    (out / MANIFEST).write_text(manifest.model_dump_json(indent=2))  # last: marks the build complete


# ----------------------------------------------------------------------------------------------
# preference pairs


def _build_pairs(config: ToyTaskConfig, sft_dir: Path, out: Path) -> None:
    from transformers import GPT2LMHeadModel, PreTrainedTokenizerFast

    from targets.dpo.toy.sampling import draw_uniforms, sample

    t0 = time.time()
    tok = PreTrainedTokenizerFast.from_pretrained(sft_dir)
    model = GPT2LMHeadModel.from_pretrained(sft_dir).eval()
    train_prompts, held_prompts = lang.split_prompts(config.data_seed)
    rng = random.Random(f"pairs-{config.data_seed}")
    order = train_prompts[:]
    rng.shuffle(order)

    def score(ids: list[int], done: bool) -> tuple[str, float]:
        body = [i for i in ids if i != tok.eos_token_id]
        text = " " + " ".join(tok.convert_ids_to_tokens(body))
        return text, (lang.reward(text, config.max_sentences) if done else lang.FLOOR)

    rows: list[dict[str, Any]] = []
    skipped = ties = agree = 0
    round_ = 0
    while len(rows) < config.n_train_pairs:
        # each round draws a fresh pair for every missing row; identical completions are skipped
        need = config.n_train_pairs - len(rows)
        prompts = [order[(len(rows) + k + round_ * 7919) % len(order)] for k in range(need)]
        ids = [tok(p).input_ids for p in prompts] * 2
        unif = draw_uniforms(config.data_seed * 1000 + round_ + 17, len(ids), config.pair_max_new_tokens)
        completions, done = sample(model, ids, unif, tok.eos_token_id)
        for k, prompt in enumerate(prompts):
            (t1, r1), (t2, r2) = score(completions[k], done[k]), score(completions[k + need], done[k + need])
            if t1 == t2:
                skipped += 1
                continue
            # Bradley–Terry draw on the exact rewards, then symmetric label noise
            p1 = 1.0 / (1.0 + math.exp(-(r1 - r2) / config.bt_temperature))
            first = rng.random() < p1
            flipped = rng.random() < config.label_flip_rate
            first ^= flipped
            (chosen, rc), (rejected, rr) = ((t1, r1), (t2, r2)) if first else ((t2, r2), (t1, r1))
            ties += r1 == r2
            agree += rc > rr
            rows.append(
                dict(
                    prompt=prompt,
                    chosen=chosen,
                    rejected=rejected,
                    chosen_reward=rc,
                    rejected_reward=rr,
                    label_flipped=flipped,
                )
            )
        round_ += 1
        if round_ > 50:
            raise RuntimeError("the SFT model keeps sampling identical completions: it has collapsed")

    held = held_prompts[:]
    random.Random(f"eval-order-{config.data_seed}").shuffle(held)
    with open(out / "pairs.jsonl", "w") as fh:
        for row in rows:
            fh.write(json.dumps(row) + "\n")
    (out / "eval_prompts.json").write_text(json.dumps(held, indent=0))
    stats = PairStats(
        n_pairs=len(rows),
        n_identical_skipped=skipped,
        agree_frac=agree / len(rows),
        tie_frac=ties / len(rows),
        flipped_frac=sum(r["label_flipped"] for r in rows) / len(rows),
        mean_chosen_reward=statistics.mean(r["chosen_reward"] for r in rows),
        mean_rejected_reward=statistics.mean(r["rejected_reward"] for r in rows),
        seconds=time.time() - t0,
    )
    manifest = TaskManifest(
        config=config,
        key=config.key(),
        sft_dir=str(sft_dir),
        built_at=time.time(),
        builder_pid=os.getpid(),
        n_eval_prompts_available=len(held),
        pairs=stats,
    )
    (out / MANIFEST).write_text(manifest.model_dump_json(indent=2))
