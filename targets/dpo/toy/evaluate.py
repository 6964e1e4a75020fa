"""Score a trained policy on the toy task: exact reward and a KL(π‖π_ref) estimate per held-out prompt.

One completion per prompt, sampled at the evaluation temperature from uniforms fixed by `seed` (see
`sampling`): the same seed and model give the same samples, and two similar policies mostly draw the
same completion, so per-prompt differences between losses carry little sampling noise.
"""

from __future__ import annotations

import math
import statistics
import time

import torch
from pydantic import BaseModel
from torch import nn

from targets.dpo.toy import language as lang
from targets.dpo.toy.sampling import draw_uniforms, sample, sequence_logps
from targets.dpo.toy.task import ToyTask
from targets.dpo.toy.tokenizer import eos_and_pad_ids

UNGRAMMATICAL_LIMIT = 0.5


class PolicyEval(BaseModel):
    """Per-prompt numbers (in `task.eval_prompts` order, paired across losses) and their summaries."""

    rewards: list[float]
    """Exact reward of each prompt's sample (the mean over its samples when the task draws several); the
    floor (-1) for an ungrammatical or unfinished one."""
    kls: list[float]
    """log π(y|x) − log π_ref(y|x) of each prompt's sample (mean over its samples), summed over completion
    tokens including `<eos>`. Its mean is an unbiased estimate of KL(π‖π_ref) (at temperature 1); single
    values can be < 0."""
    mean_reward: float
    mean_kl: float
    grammatical_frac: float
    """Fraction of samples that parse and end with `<eos>`."""
    distinct_frac: float
    """Distinct completions / samples: mode collapse shows here first."""
    mean_length: float
    """Mean completion length in tokens, `<eos>` included."""
    degenerate: bool
    degenerate_reason: str | None = None
    seconds: float


def evaluate_policy(
    policy: nn.Module,
    reference: nn.Module,
    task: ToyTask,
    *,
    seed: int,
    n_prompts: int | None = None,
) -> PolicyEval:
    """Sample one completion per eval prompt from `policy` and score it against `reference`.

    Both models are put in eval mode for the call and restored afterwards. Never raises on a broken
    policy: NaN log-probs, collapse or gibberish come back as `degenerate` with a reason.
    """
    t0 = time.time()
    prompts = task.eval_prompts[:n_prompts] if n_prompts is not None else task.eval_prompts
    n, k = len(prompts), task.config.eval_samples_per_prompt
    # Sample j of prompt i is row j·n + i of the uniforms: the first sample of each prompt is the one a
    # one-sample evaluation draws, whatever k.
    prompts = prompts * k
    tok = task.tokenizer
    eos, pad = eos_and_pad_ids(tok)
    max_new = task.config.eval_max_new_tokens
    modes = (policy.training, reference.training)
    policy.eval()
    reference.eval()
    try:
        prompt_ids = [tok(p).input_ids for p in prompts]
        completions, done = sample(
            policy, prompt_ids, draw_uniforms(seed, len(prompts), max_new), eos, task.config.eval_temperature
        )
        pol = sequence_logps(policy, prompt_ids, completions, pad)  # (N,)
        ref = sequence_logps(reference, prompt_ids, completions, pad)  # (N,)
    finally:
        policy.train(modes[0])
        reference.train(modes[1])

    texts = [" " + " ".join(tok.convert_ids_to_tokens([i for i in c if i != eos])) for c in completions]
    grammatical = [
        d and lang.is_grammatical(t, task.config.max_sentences) for t, d in zip(texts, done, strict=True)
    ]
    rewards = [task.reward(t) if g else lang.FLOOR for t, g in zip(texts, grammatical, strict=True)]
    kls = (pol - ref).tolist()
    stats = dict(
        mean_reward=statistics.fmean(rewards),
        mean_kl=statistics.fmean(kls),
        grammatical_frac=sum(grammatical) / len(texts),
        distinct_frac=len(set(texts)) / len(texts),
        mean_length=statistics.fmean(len(c) for c in completions),
    )
    reason = _degenerate_reason(pol, ref, texts, stats["grammatical_frac"])
    return PolicyEval(
        rewards=_per_prompt(rewards, n),
        kls=_per_prompt([x if math.isfinite(x) else float("nan") for x in kls], n),
        degenerate=reason is not None,
        degenerate_reason=reason,
        seconds=time.time() - t0,
        **stats,
    )


def _per_prompt(values: list[float], n: int) -> list[float]:
    """The mean over a prompt's samples (rows i, n + i, 2n + i, …), in prompt order."""
    k = len(values) // n
    if k == 1:
        return values
    return [statistics.fmean(values[i + j * n] for j in range(k)) for i in range(n)]


def _degenerate_reason(pol: torch.Tensor, ref: torch.Tensor, texts: list[str], gram: float) -> str | None:
    if not bool(torch.isfinite(pol).all()):
        return f"non-finite policy log-probs on {int((~torch.isfinite(pol)).sum())} of {len(texts)} samples"
    if not bool(torch.isfinite(ref).all()):
        return "the reference gives -inf log-prob to policy samples (KL is infinite)"
    if all(t.strip() == "" for t in texts):
        return "every completion is empty (the policy emits <eos> at once)"
    if gram < UNGRAMMATICAL_LIMIT:
        return f"only {gram:.0%} of completions are grammatical"
    if len(texts) > 1 and len(set(texts)) == 1:
        return f"every completion is the same: {texts[0].strip()!r}"
    return None
