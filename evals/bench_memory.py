"""Benchmark of disco's candidate memory: search latency at scale, and the novelty gate's accuracy.

Writes under evals/results/:
  memory_novelty.json|md          precision / recall of the novelty gate on a labelled set of rewritten
                                  duplicates and genuinely different losses (evals/memory_variants.py),
                                  text embeddings alone vs text + behavioural fingerprint, with a
                                  threshold sweep
  memory_search_latency.json|md   p50 / p95 of search at 1k, 10k and 100k stored candidates: Chroma's
                                  query alone, and end to end (query embedding + query + records)

What is synthetic: embedding 100k real texts with MiniLM would take hours on 2 cores, so the stored
vectors are embeddings of a few hundred real candidate texts (zoo losses, their rewrites and constant
variants) plus Gaussian noise (cosine ≈ 0.96 to their source), and every stored record carries real
code from that set. Queries are real: embeddings of real texts, computed at query time end to end.

Run: .venv/bin/python evals/bench_memory.py [--sizes 1000,10000,100000] [--queries 200]
It is a benchmark, not a test: about 5–10 minutes on 2 cores. Run one at a time.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

for _var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HF_HUB_DISABLE_TELEMETRY"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
from memory_variants import changed_constant, labelled_pairs  # noqa: E402  (this script's folder)

from memory.embeddings import MiniLMEmbedder  # noqa: E402
from memory.novelty import NoveltyConfig  # noqa: E402
from memory.records import CandidateRecord, Fitness  # noqa: E402
from memory.store import MemoryStore  # noqa: E402
from targets.dpo.fingerprint import loss_fingerprint  # noqa: E402
from targets.dpo.zoo import get_zoo_loss, zoo_names  # noqa: E402

OUT = Path(__file__).parent / "results"
TEXT_SWEEP = (0.80, 0.85, 0.90, 0.93, 0.95, 0.97, 0.98, 0.99, 0.995)
FP_SWEEP = (0.9, 0.95, 0.98, 0.99, 0.995, 0.999)
NOISE = 0.3


# Novelty -----------------------------------------------------------------------------------------
def zoo_record(name: str) -> CandidateRecord:
    z = get_zoo_loss(name)
    return CandidateRecord(
        id=f"zoo-{name}", run_id="zoo", target="dpo", name=name, thought=z.title, code=z.code
    )


def prf(pred: list[bool], gold: list[bool]) -> dict[str, float]:
    tp = sum(p and g for p, g in zip(pred, gold, strict=True))
    fp = sum(p and not g for p, g in zip(pred, gold, strict=True))
    fn = sum(g and not p for p, g in zip(pred, gold, strict=True))
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "tp": tp, "fp": fp, "fn": fn}


def novelty_eval(embedder: MiniLMEmbedder, workdir: Path) -> dict:
    store = MemoryStore(workdir / "novelty", embedder=embedder)
    zoo = [zoo_record(n) for n in zoo_names()]
    store.record_many(zoo, [loss_fingerprint(r.code) for r in zoo])
    pairs = labelled_pairs()
    config = NoveltyConfig()
    rows = []
    for p in pairs:
        exclude = f"zoo-{p.base}" if p.leave_out else None
        text = store.novelty(p.code, "dpo", config=config, exclude_id=exclude)
        both = store.novelty(
            p.code, "dpo", fingerprint=loss_fingerprint(p.code), config=config, exclude_id=exclude
        )
        rows.append({
            "kind": p.kind, "base": p.base, "duplicate": p.duplicate,
            "text": text.model_dump(), "text_fp": both.model_dump(),
        })  # fmt: skip
    gold = [r["duplicate"] for r in rows]
    headline = {
        "text": prf([not r["text"]["novel"] for r in rows], gold),
        "text_fp": prf([not r["text_fp"]["novel"] for r in rows], gold),
    }
    for mode in ("text", "text_fp"):  # a duplicate flagged against the wrong loss is still a wrong answer
        hits = [r for r in rows if r["duplicate"] and not r[mode]["novel"]]
        headline[mode]["nearest_correct"] = sum(r[mode]["nearest"] == f"zoo-{r['base']}" for r in hits)
    t_sims = [r["text"]["text_similarity"] or 0.0 for r in rows]
    f_sims = [r["text_fp"]["fingerprint_similarity"] or 0.0 for r in rows]
    sweep_text = {str(t): prf([s >= t for s in t_sims], gold) for t in TEXT_SWEEP}
    sweep_fp = {str(t): prf([s >= t for s in f_sims], gold) for t in FP_SWEEP}
    by_kind: dict[str, dict[str, int]] = {}
    for r in rows:
        k = by_kind.setdefault(r["kind"], {"n": 0, "text_correct": 0, "text_fp_correct": 0})
        k["n"] += 1
        k["text_correct"] += (not r["text"]["novel"]) == r["duplicate"]
        k["text_fp_correct"] += (not r["text_fp"]["novel"]) == r["duplicate"]
    return {
        "n_pairs": len(rows),
        "n_duplicates": sum(gold),
        "n_novel": len(gold) - sum(gold),
        "thresholds": config.model_dump(),
        "headline": headline,
        "by_kind": by_kind,
        "sweep_text": sweep_text,
        "sweep_fingerprint": sweep_fp,
        "memory": "the 13 zoo losses; leave-one-out queries are judged with their own loss excluded",
        "rows": rows,
    }


def novelty_md(res: dict) -> str:
    h = res["headline"]
    lines = [
        "# Novelty gate: text embeddings alone vs text + behavioural fingerprint",
        "",
        f"Labelled set: {res['n_pairs']} pairs ({res['n_duplicates']} rewritten duplicates, {res['n_novel']} "
        "genuinely different), built by `evals/memory_variants.py`; memory holds the 13 zoo losses. "
        "Positive = flagged as a duplicate.",
        "",
        f"Thresholds: text cosine ≥ {res['thresholds']['text_threshold']}, fingerprint similarity ≥ "
        f"{res['thresholds']['fingerprint_threshold']} (exp(-RMS) of asinh-scaled losses and gradients).",
        "",
        "| gate | precision | recall | F1 | TP | FP | FN | duplicate flagged against the right loss |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for mode, label in (("text", "text (MiniLM) alone"), ("text_fp", "text + fingerprint")):
        m = h[mode]
        lines.append(
            f"| {label} | {m['precision']:.2f} | {m['recall']:.2f} | {m['f1']:.2f} | {m['tp']} | {m['fp']} | "
            f"{m['fn']} | {m['nearest_correct']}/{m['tp'] + m['fp']} |"
        )
    lines += ["", "Correct verdicts by kind of pair:", "", "| kind | n | text alone | text + fingerprint |",
              "|---|---|---|---|"]  # fmt: skip
    for kind, k in res["by_kind"].items():
        lines.append(f"| {kind} | {k['n']} | {k['text_correct']} | {k['text_fp_correct']} |")
    lines += ["", "Text-only threshold sweep (cosine of code embeddings):", ""]
    lines += ["| threshold | precision | recall | F1 |", "|---|---|---|---|"]
    for t, m in res["sweep_text"].items():
        lines.append(f"| {t} | {m['precision']:.2f} | {m['recall']:.2f} | {m['f1']:.2f} |")
    lines += [
        "",
        "Fingerprint threshold sweep:",
        "",
        "| threshold | precision | recall | F1 |",
        "|---|---|---|---|",
    ]
    for t, m in res["sweep_fingerprint"].items():
        lines.append(f"| {t} | {m['precision']:.2f} | {m['recall']:.2f} | {m['f1']:.2f} |")
    return "\n".join(lines) + "\n"


# Latency -----------------------------------------------------------------------------------------
def base_texts() -> list[str]:
    """A few hundred real candidate texts: zoo losses, their rewrites, and constant variants."""
    texts = [get_zoo_loss(n).code for n in zoo_names()] + [p.code for p in labelled_pairs()]
    for name in zoo_names():  # constant sweeps: the kind of near-duplicate a long run produces
        code = get_zoo_loss(name).code
        for _ in range(12):
            code = changed_constant(code) or code
            texts.append(code)
    return sorted(set(texts))


def synthetic(base: np.ndarray, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    idx = rng.integers(0, len(base), n)
    v = base[idx] + NOISE * rng.standard_normal((n, base.shape[1])).astype(np.float32) / np.sqrt(
        base.shape[1]
    )
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32), idx


def pct(xs: list[float]) -> dict[str, float]:
    a = np.array(xs) * 1000
    return {"p50_ms": float(np.percentile(a, 50)), "p95_ms": float(np.percentile(a, 95)), "n": len(xs)}


def latency_eval(embedder: MiniLMEmbedder, workdir: Path, sizes: list[int], n_queries: int) -> dict:
    rng = np.random.default_rng(0)
    texts = base_texts()
    t0 = time.perf_counter()
    base = embedder.embed(texts)
    embed_s = time.perf_counter() - t0
    base_fp = np.array([loss_fingerprint(t) for t in texts], dtype=np.float32)
    print(f"embedded {len(texts)} real texts in {embed_s:.0f} s", flush=True)
    store = MemoryStore(workdir / "latency", embedder=embedder)
    code_space = store._space_name("code", "dpo")
    queries_nl = [
        "hinge loss on the margin",
        "log-ratio modulated loss",
        "label smoothing for noisy preferences",
        "squared regression of the margin",
        "exponential loss mixed with logistic",
    ]
    queries_code = [get_zoo_loss(n).code for n in zoo_names()]
    results: dict[str, dict] = {}
    stored = 0
    for size in sizes:
        t0 = time.perf_counter()
        while stored < size:
            n = min(5000, size - stored)
            code_v, idx = synthetic(base, n, rng)
            meaning_v, _ = synthetic(base, n, rng)
            recs = [
                CandidateRecord(
                    id=f"s{stored + i}",
                    run_id=f"run-{(stored + i) // 500}",
                    target="dpo",
                    name=f"cand{stored + i}",
                    code=texts[j],
                    status="evaluated",
                    fitness=Fitness(value=float(rng.normal()), ci_low=-1, ci_high=1),
                )
                for i, j in enumerate(idx)
            ]
            fps = base_fp[idx] + 0.01 * rng.standard_normal((n, base_fp.shape[1])).astype(np.float32)
            store.record_many(recs, fingerprints=list(fps), vectors={"code": code_v, "meaning": meaning_v})
            stored += n
        insert_s = time.perf_counter() - t0
        col = store._col(code_space)
        qv, _ = synthetic(base, n_queries, rng)
        alone = []
        for v in qv:
            t = time.perf_counter()
            col.query(query_embeddings=[v.tolist()], n_results=5, include=["distances"])
            alone.append(time.perf_counter() - t)
        e2e_nl, e2e_code, gate = [], [], []
        for i in range(max(n_queries // 4, 20)):
            t = time.perf_counter()
            store.search(queries_nl[i % len(queries_nl)], k=5, target="dpo", space="both")
            e2e_nl.append(time.perf_counter() - t)
            code = queries_code[i % len(queries_code)]
            t = time.perf_counter()
            store.search(code, k=5, target="dpo", space="code")
            e2e_code.append(time.perf_counter() - t)
            probe = f"{code}\n# probe {size}-{i}\n"  # a new code hash: the gate runs in full, not by hash
            fp = loss_fingerprint(probe)  # computed by the caller (the check step), not timed here
            t = time.perf_counter()
            store.novelty(probe, "dpo", fingerprint=fp)
            gate.append(time.perf_counter() - t)
        results[str(size)] = {
            "stored": store.count(),
            "insert_s": insert_s,
            "chroma_query_alone": pct(alone),
            "search_text_query_end_to_end": pct(e2e_nl),
            "search_code_query_end_to_end": pct(e2e_code),
            "novelty_gate_end_to_end": pct(gate),
        }
        print(f"{size}: {json.dumps(results[str(size)])}", flush=True)
    return {
        "synthetic": f"stored vectors are MiniLM embeddings of {len(texts)} real candidate texts plus "
        f"Gaussian noise (σ = {NOISE}/√d, cosine ≈ 0.96 to their source), for both the code and the "
        "meaning space; "
        "records carry real code from the same texts. Queries are real texts embedded at query time "
        "(end to end) or noisy embeddings (Chroma alone). Stored fingerprints are the real fingerprints of "
        "the same texts plus noise (σ = 0.01 per entry). The gate is timed on zoo losses with a new "
        "comment (a new code hash, so hash lookup + code embedding + text query + fingerprint query all "
        "run); computing the candidate's own fingerprint (~20 ms) is the caller's and not included.",
        "base_texts": len(texts),
        "base_embed_s": embed_s,
        "k": 5,
        "cpu_threads_for_embedding": 1,
        "cores": os.cpu_count(),
        "sizes": results,
    }


def latency_md(res: dict) -> str:
    lines = [
        "# Memory search latency",
        "",
        f"Synthetic data: {res['synthetic']}",
        "",
        f"k = {res['k']}, within one target (one collection per target); {res['cores']} cores shared with "
        "other benchmarks; MiniLM "
        "on 1 thread. Goal: p95 ≤ 50 ms at 10k.",
        "",
        "| stored | s to grow from the previous row | Chroma query p50 / p95 ms "
        "| search, text query p50 / p95 ms | search, code query p50 / p95 ms | novelty gate p50 / p95 ms |",
        "|---|---|---|---|---|---|",
    ]
    for size, r in res["sizes"].items():
        cells = [
            f"{r[k]['p50_ms']:.1f} / {r[k]['p95_ms']:.1f}"
            for k in (
                "chroma_query_alone",
                "search_text_query_end_to_end",
                "search_code_query_end_to_end",
                "novelty_gate_end_to_end",
            )
        ]
        lines.append(f"| {int(size):,} | {r['insert_s']:.0f} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "End to end includes embedding the query with MiniLM on one CPU thread: a short text costs",
        "~10–30 ms, a whole loss (truncated to 256 tokens) ~100 ms here; Chroma's part is the first column.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--skip-latency", action="store_true")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    embedder = MiniLMEmbedder()
    workdir = Path(tempfile.mkdtemp(prefix="disco-bench-memory-"))
    try:
        t0 = time.perf_counter()
        nov = novelty_eval(embedder, workdir)
        print(f"novelty: {json.dumps(nov['headline'])} ({time.perf_counter() - t0:.0f} s)", flush=True)
        (OUT / "memory_novelty.json").write_text(json.dumps(nov, indent=2, ensure_ascii=False))
        (OUT / "memory_novelty.md").write_text(novelty_md(nov))
        if not args.skip_latency:
            sizes = [int(s) for s in args.sizes.split(",")]
            lat = latency_eval(embedder, workdir, sizes, args.queries)
            (OUT / "memory_search_latency.json").write_text(json.dumps(lat, indent=2, ensure_ascii=False))
            (OUT / "memory_search_latency.md").write_text(latency_md(lat))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
