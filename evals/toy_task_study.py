"""Calibrate the toy DPO task: SFT stats, the reward distribution of SFT samples, and (with --losses) a
quick check that DPO, IPO, SLiC, cDPO and robust DPO land at different reward / KL points.

    python evals/toy_task_study.py [--cache .disco/cache] [--losses] [--betas 0.05 0.1 0.5]

The loss check is a plain PyTorch DPO loop (not the project's TRL trainer), only to see whether the
task's knobs separate the losses; its numbers are indicative, the trainer's are the reference.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import argparse
import statistics
import time
from collections import Counter
from pathlib import Path

import torch
import torch.nn.functional as F

from targets.dpo.toy.config import ToyTaskConfig
from targets.dpo.toy.evaluate import evaluate_policy
from targets.dpo.toy.task import ToyTask, load_toy_task

LOSSES = {
    # Eqn (7) of the DPO paper; IPO (Azar et al., unnormalised); SLiC hinge; cDPO / robust DPO (Chowdhury
    # et al.) with ε = 0.1 — ρ is the log-ratio margin, β the KL weight.
    "dpo": lambda rho, beta: -F.logsigmoid(beta * rho),
    "ipo": lambda rho, beta: (rho - 1 / (2 * beta)) ** 2,
    "slic": lambda rho, beta: torch.relu(1 - beta * rho),
    "cdpo": lambda rho, beta: -0.9 * F.logsigmoid(beta * rho) - 0.1 * F.logsigmoid(-beta * rho),
    "robust": lambda rho, beta: (-0.9 * F.logsigmoid(beta * rho) + 0.1 * F.logsigmoid(-beta * rho)) / 0.8,
}


def describe(task: ToyTask) -> None:
    s, p = task.sft_manifest.stats, task.manifest.pairs
    print(f"cache: {task.task_dir}")
    print(f"SFT: loss {s.loss_first:.2f} -> {s.loss_final:.2f}, built in {s.seconds:.1f}s")
    print(
        f"SFT samples (n={s.n_samples}): grammatical {s.grammatical_frac:.3f}, reward {s.mean_reward:+.3f} "
        f"± {s.std_reward:.3f} (grammatical only {s.grammatical_mean_reward:+.3f})"
    )
    print(f"grammar corpus: reward {s.corpus_mean_reward:+.3f} ± {s.corpus_std_reward:.3f}")
    print(
        f"pairs: {p.n_pairs}, chosen better {p.agree_frac:.3f}, ties {p.tie_frac:.3f}, flipped "
        f"{p.flipped_frac:.3f}, reward chosen {p.mean_chosen_reward:+.3f} / rejected "
        f"{p.mean_rejected_reward:+.3f}"
    )
    ref = task.load_sft_model()
    for seed in range(3):
        e = evaluate_policy(ref, ref, task, seed=seed)
        sem = statistics.stdev(e.rewards) / len(e.rewards) ** 0.5
        print(
            f"eval seed {seed}: reward {e.mean_reward:+.3f} (sem {sem:.3f}), grammatical "
            f"{e.grammatical_frac:.3f}, distinct {e.distinct_frac:.3f}, length {e.mean_length:.1f}, "
            f"{e.seconds:.2f}s"
        )
    hist = Counter(round(r * 4) / 4 for r in e.rewards)
    print("reward histogram (bins of 0.25):", " ".join(f"{k:+.2f}:{hist[k]}" for k in sorted(hist)))


def _batch(task: ToyTask) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(2N, L) ids, attention mask and completion mask: chosen rows first, right padding, as TRL does."""
    tok = task.tokenizer
    rows = []
    for col in ("chosen", "rejected"):
        for prompt, completion in zip(task.train_pairs["prompt"], task.train_pairs[col], strict=True):
            p = tok(prompt).input_ids
            rows.append((p, tok(completion + tok.eos_token).input_ids))
    width = max(len(p) + len(c) for p, c in rows)
    ids = torch.full((len(rows), width), tok.pad_token_id)
    attn, cmask = torch.zeros_like(ids), torch.zeros_like(ids, dtype=torch.bool)
    for r, (p, c) in enumerate(rows):
        ids[r, : len(p) + len(c)] = torch.tensor(p + c)
        attn[r, : len(p) + len(c)] = 1
        cmask[r, len(p) : len(p) + len(c)] = True
    return ids, attn, cmask


def _logps(
    model: torch.nn.Module, ids: torch.Tensor, attn: torch.Tensor, cmask: torch.Tensor
) -> torch.Tensor:
    logits = model(input_ids=ids, attention_mask=attn).logits[:, :-1]  # (B, L-1, V)
    tok = torch.log_softmax(logits, -1).gather(-1, ids[:, 1:, None]).squeeze(-1)  # (B, L-1)
    return (tok * cmask[:, 1:]).sum(-1)  # (B,)


def train(
    task: ToyTask, loss: str, beta: float, seed: int, steps: int, lr: float, batch: int
) -> torch.nn.Module:
    ids, attn, cmask = _batch(task)
    n = ids.shape[0] // 2
    ref = task.load_sft_model()
    with torch.no_grad():
        ref_lp = _logps(ref, ids, attn, cmask)  # (2N,) computed once, as the trainer does
    policy = task.load_sft_model().train()
    opt = torch.optim.AdamW(policy.parameters(), lr=lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(n, (batch,), generator=gen)
        rows = torch.cat([idx, idx + n])
        lp = _logps(policy, ids[rows], attn[rows], cmask[rows])
        rho = (lp[:batch] - ref_lp[idx]) - (lp[batch:] - ref_lp[idx + n])  # (B,) log-ratio margin
        out = LOSSES[loss](rho, beta).mean()
        opt.zero_grad()
        out.backward()
        opt.step()
    return policy.eval()


def compare_losses(task: ToyTask, betas: list[float], seeds: int, steps: int, lr: float, batch: int) -> None:
    ref = task.load_sft_model()
    print(
        f"\n{'loss':8} {'beta':>5} {'reward':>8} {'kl':>7} {'gram':>6} {'distinct':>8} {'len':>5}"
        f"  (mean of {seeds} seeds)"
    )
    for beta in betas:
        for loss in LOSSES:
            evals = []
            for seed in range(seeds):
                policy = train(task, loss, beta, seed, steps, lr, batch)
                evals.append(evaluate_policy(policy, ref, task, seed=1000 + seed))
            fields = ("mean_reward", "mean_kl", "grammatical_frac", "distinct_frac", "mean_length")
            m = {f: statistics.fmean(getattr(e, f) for e in evals) for f in fields}
            sd = statistics.pstdev(e.mean_reward for e in evals)
            print(
                f"{loss:8} {beta:5.2f} {m['mean_reward']:+8.3f}±{sd:.3f} {m['mean_kl']:7.2f} "
                f"{m['grammatical_frac']:6.3f} {m['distinct_frac']:8.3f} {m['mean_length']:5.1f}",
                flush=True,
            )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", type=Path, default=Path(".disco/cache"))
    ap.add_argument("--pairs", type=int, default=None, help="override n_train_pairs")
    ap.add_argument("--flip", type=float, default=None, help="override label_flip_rate")
    ap.add_argument("--losses", action="store_true", help="also train DPO/IPO/SLiC/cDPO/robust and compare")
    ap.add_argument("--betas", type=float, nargs="+", default=[0.1, 0.5])
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--batch", type=int, default=32)
    args = ap.parse_args()
    update = {
        k: v for k, v in (("n_train_pairs", args.pairs), ("label_flip_rate", args.flip)) if v is not None
    }
    config = ToyTaskConfig(**update)
    t0 = time.time()
    task = load_toy_task(config, args.cache)
    print(f"load_toy_task: {time.time() - t0:.2f}s ({'built' if task.built_now else 'from cache'})")
    describe(task)
    if args.losses:
        compare_losses(task, args.betas, args.seeds, args.steps, args.lr, args.batch)


if __name__ == "__main__":
    main()
