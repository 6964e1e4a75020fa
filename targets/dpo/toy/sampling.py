"""Batched sampling and sequence log-probs for the toy task's tiny causal LMs.

Sampling is by inverse CDF from uniforms fixed per (prompt, step): row i of `uniforms` drives prompt i
whatever the batching, and two policies that put similar probabilities on a token draw the same token.
That is common random numbers across losses — the lead's paired comparisons see less noise than with
independent draws — and the same seed on the same model gives the same samples.

Prompts are grouped by token length and each group is generated without padding, so the KV cache and
position ids need no padding logic at all (the language has only a handful of prompt lengths).
"""

from __future__ import annotations

from collections import defaultdict

import torch
from torch import nn


def draw_uniforms(seed: int, n: int, steps: int) -> torch.Tensor:
    """(n, steps) float64 uniforms; row i depends only on (seed, i, steps), not on n."""
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(n, steps, generator=gen, dtype=torch.float64)


@torch.inference_mode()
def sample(
    model: nn.Module,
    prompt_ids: list[list[int]],
    uniforms: torch.Tensor,
    eos_id: int,
    temperature: float = 1.0,
    batch_size: int = 512,
) -> tuple[list[list[int]], list[bool]]:
    """Sample one completion per prompt.

    Returns the generated token ids (ending with `eos_id` when the model stopped) and whether each
    stopped within `uniforms.shape[1]` steps.
    """
    device = next(model.parameters()).device
    n, max_new = uniforms.shape
    out: list[list[int]] = [[] for _ in range(n)]
    done = [False] * n
    by_len: dict[int, list[int]] = defaultdict(list)
    for i, ids in enumerate(prompt_ids):
        by_len[len(ids)].append(i)
    for prompt_len, rows_all in by_len.items():
        for start in range(0, len(rows_all), batch_size):
            rows = rows_all[start : start + batch_size]
            x = torch.tensor([prompt_ids[i] for i in rows], device=device)  # (B, P)
            u = uniforms[rows].to(device)  # (B, max_new)
            finished = torch.zeros(len(rows), dtype=torch.bool, device=device)
            generated = []
            past = None
            for t in range(max_new):
                attn = torch.ones((len(rows), prompt_len + t), dtype=torch.long, device=device)  # no padding
                res = model(input_ids=x, attention_mask=attn, past_key_values=past, use_cache=True)
                past = res.past_key_values
                logits = res.logits[:, -1, :].double() / temperature  # (B, V)
                cdf = torch.softmax(logits, dim=-1).cumsum(dim=-1)  # (B, V)
                # inverse CDF; scaling by the last entry guards against cdf[-1] < 1 by rounding
                nxt = torch.searchsorted(cdf, (u[:, t] * cdf[:, -1]).unsqueeze(1)).squeeze(1)
                nxt = nxt.clamp_max(logits.shape[-1] - 1)
                nxt = torch.where(finished, torch.full_like(nxt, eos_id), nxt)  # (B,)
                generated.append(nxt)
                finished |= nxt == eos_id
                if bool(finished.all()):
                    break
                x = nxt.unsqueeze(1)  # (B, 1): the cache holds the rest
            gen = torch.stack(generated, dim=1).tolist()  # (B, steps)
            for r, i in enumerate(rows):
                seq = gen[r]
                if eos_id in seq:
                    seq = seq[: seq.index(eos_id) + 1]
                    done[i] = True
                out[i] = seq
    return out, done


@torch.inference_mode()
def sequence_logps(
    model: nn.Module,
    prompt_ids: list[list[int]],
    completion_ids: list[list[int]],
    pad_id: int,
    batch_size: int = 512,
) -> torch.Tensor:
    """(N,) float64 sum of log p(completion token | prefix) over each completion's tokens.

    Rows are right-padded, so every real token keeps its natural position and the causal mask keeps
    the padding out of its context; padded positions are masked out of the sum.
    """
    device = next(model.parameters()).device
    totals = []
    for start in range(0, len(prompt_ids), batch_size):
        ps = prompt_ids[start : start + batch_size]
        cs = completion_ids[start : start + batch_size]
        seqs = [p + c for p, c in zip(ps, cs, strict=True)]
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)  # (B, L)
        attn = torch.zeros_like(ids)
        target_mask = torch.zeros_like(ids, dtype=torch.bool)  # True where ids[:, j] is a completion token
        for r, (p, s) in enumerate(zip(ps, seqs, strict=True)):
            ids[r, : len(s)] = torch.tensor(s)
            attn[r, : len(s)] = 1
            target_mask[r, len(p) : len(s)] = True
        ids, attn, target_mask = ids.to(device), attn.to(device), target_mask.to(device)
        logits = model(input_ids=ids, attention_mask=attn).logits.double()  # (B, L, V)
        logp = torch.log_softmax(logits[:, :-1], dim=-1)  # (B, L-1, V): predicts ids[:, 1:]
        tok = logp.gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)  # (B, L-1)
        tok = torch.where(target_mask[:, 1:], tok, torch.zeros_like(tok))
        totals.append(tok.sum(dim=1).cpu())
    return torch.cat(totals) if totals else torch.zeros(0, dtype=torch.float64)
