"""Prompt templates and the bounded design context, on a real Chroma directory with the real MiniLM.

What is asserted: templates fail loudly (missing variable, None to print), the design prompt shows the
target's texts and the bounded sections (top-k, similar, failures with fixes, hints) and never a vetoed
candidate or anything beyond k, its size does not grow with the archive, and the repair prompt carries
the check results and traceback and never `None` or a literal `{e}` where an error should be.
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
from pydantic import BaseModel
from test_memory_helpers import rec, shared_minilm

from agent.context import ContextLimits, DesignContext, build_context, clip
from agent.prompting import PromptError, design_messages, reflect_messages, render, repair_messages
from agent.schemas import Draft, RepairRequest
from memory.embeddings import MiniLMEmbedder
from memory.records import CandidateRecord, Fitness, VsBaseline, normalise_code
from memory.store import MemoryStore
from targets.dpo.checks import check_candidate
from targets.dpo.zoo import get_zoo_loss, zoo_names
from targets.results import CheckResult

SIG = "self, policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps"
RULES = [
    "Define exactly one top-level function with the parameters of the interface.",
    "Return one loss per pair: a tensor of shape (B,), never its mean.",
    "Import nothing but torch, math and typing; torch, F and math are already available.",
]


class StubTarget(BaseModel):
    """The prompt material of a target (the real DPO target's texts are the target's business)."""

    name: str = "dpo"
    description: str = "Discover a preference-optimization loss in the DPO family (DESCRIPTION-MARK)."
    interface: str = f"```python\n{get_zoo_loss('dpo').code}```\nINTERFACE-MARK"
    rules: list[str] = RULES
    fitness_meaning: str = "Reward minus 0.05·KL on held-out prompts; higher is better (FITNESS-MARK)."


TARGET = StubTarget()


def repairing(
    ctx: DesignContext,
    draft: Draft,
    failures: list[CheckResult],
    traceback: str | None,
    attempt: int,
    max_attempts: int,
) -> list[dict[str, str]]:
    """The repair prompt, its request spelled out positionally as the tests read best."""
    request = RepairRequest(
        draft=draft, failures=failures, traceback=traceback, attempt=attempt, max_attempts=max_attempts
    )
    return repair_messages(ctx, request)


class RefusingEmbedder:
    """Proves that a code path embeds nothing (an empty memory must not load MiniLM)."""

    key = "minilm-l6-v2"

    def embed(self, texts: list[str]) -> np.ndarray:
        raise AssertionError(f"nothing should be embedded, got {len(texts)} texts")


@pytest.fixture(scope="session")
def minilm() -> MiniLMEmbedder:
    return shared_minilm()


def fit(v: float) -> Fitness:
    return Fitness(value=v, ci_low=v - 0.05, ci_high=v + 0.05)


@pytest.fixture
def store(tmp_path: Path, minilm: MiniLMEmbedder) -> MemoryStore:
    """Eight evaluated zoo losses (fitness 1..8), two failures (one fixed later), one proposal."""
    names = ["dpo", "slic", "ipo", "lrml", "robust_dpo", "aql", "padll", "pfl"]
    recs = [
        rec(n, id=f"e-{n}", status="evaluated", thought=f"thought-{n}", fitness=fit(float(i + 1)))
        for i, n in enumerate(names)
    ]
    recs += [
        rec("cell", id="f-cell", status="check_failed", thought="thought-cell-bad",
            error="finite_extreme: the loss is inf at rho=-1000 (CELL-ERROR)"),
        rec("cell_stable", code=get_zoo_loss("lrml").code.replace("tau = 0.05", "tau = 0.3"),
            id="e-cell-fix", status="evaluated", parent_ids=["f-cell"], thought="thought-cell-fix"),
        rec("dbaql", id="f-dbaql", status="failed", thought="thought-dbaql", error="diverged at beta=5"),
        rec("kto_pair", id="p-kto", status="proposed", thought="thought-kto"),
    ]  # fmt: skip
    memory = MemoryStore(tmp_path / "memory", embedder=minilm)
    memory.record_many(recs)
    return memory


def user(messages: list[dict[str, str]]) -> str:
    assert [m["role"] for m in messages] == ["system", "user"]
    return messages[1]["content"]


def section(text: str, heading: str) -> str:
    """The text of one `## heading` section of a prompt (empty when absent)."""
    match = re.search(rf"^## {re.escape(heading)}.*?(?=^## |\Z)", text, flags=re.M | re.S)
    return match.group(0) if match else ""


# Rendering ---------------------------------------------------------------------------------------
def test_templates_are_package_data() -> None:
    names = {p.name for p in resources.files("agent.prompts").iterdir()}
    assert {"system.j2", "design.j2", "reflect_1.j2", "reflect_2.j2", "repair.j2"} <= names


@pytest.mark.parametrize(
    ("template", "variables", "says"),
    [
        ("system", {}, "'target' is undefined"),
        ("design", {"fields": [], "example": "{}"}, "'ctx' is undefined"),
        ("system", {"target": None}, "printed None"),
        ("no_such_template", {}, "no prompt template"),
    ],
)
def test_rendering_fails_loudly(template: str, variables: dict, says: str) -> None:
    with pytest.raises(PromptError, match=says):
        render(template, **variables)


def test_every_message_ends_by_asking_for_the_schema_fields(store: MemoryStore) -> None:
    ctx = build_context(store, TARGET, query=TARGET.description, candidate_index=3)
    draft = Draft(thought="t", name="n", code=get_zoo_loss("dpo").code)
    check = CheckResult(name="output_shape", passed=False, message="shape () not (B,)")
    draft_shape = 'Shape: {"thought": "…", "name": "…", "code": "…"}'
    reflection_shape = 'Shape: {"reflection": "…", "thought": "…", "name": "…", "code": "…"}'
    assert user(design_messages(ctx)).rstrip().endswith(draft_shape)
    assert user(repairing(ctx, draft, [check], None, 1, 3)).rstrip().endswith(draft_shape)
    for round in (1, 2):
        assert user(reflect_messages(ctx, draft, round)).rstrip().endswith(reflection_shape)
    with pytest.raises(ValueError, match="round"):
        reflect_messages(ctx, draft, 3)


# The design context and prompt --------------------------------------------------------------------
def test_design_prompt_shows_the_bounded_sections(store: MemoryStore) -> None:
    limits = ContextLimits(k_best=3, k_similar=2, k_failures=2, max_hints=2)
    hints = ["hint-one", "  ", "hint-two", "hint-three"]
    ctx = build_context(
        store, TARGET, query=get_zoo_loss("ipo").code, hints=hints, candidate_index=12, limits=limits
    )
    text = user(design_messages(ctx))
    for mark in ("DESCRIPTION-MARK", "INTERFACE-MARK", "FITNESS-MARK", *RULES, "candidate 12"):
        assert mark in text
    best = section(text, "Best so far")
    assert [a.name for a in ctx.best] == ["pfl", "padll", "aql"]  # fitness 8, 7, 6
    assert best.index("`pfl`") < best.index("`padll`") < best.index("`aql`")
    assert "fitness 8 (95% CI 7.95 to 8.05)" in best
    failures = section(text, "Recent failures")
    assert "CELL-ERROR" in failures and "Fixed later by `cell_stable`" in failures
    assert "diverged at beta=5" in failures
    similar = section(text, "Similar past attempts")
    assert ctx.similar[0].name == "ipo" and "`ipo`" in similar and "similarity 1.00" in similar
    # Nothing beyond k: every shown attempt is in one of the three sections, each within its k.
    assert len(ctx.best) == 3 and len(ctx.similar) == 2 and len(ctx.failures) == 2
    shown = {a.id for a in [*ctx.best, *ctx.similar, *ctx.failures]}
    assert len(shown) == 7  # each once
    assert text.count("### `") == 7
    for r in store.iter_records():
        if r.id not in shown:
            assert f"thought-{r.name}" not in text, r.name
    hints_text = section(text, "Hints from the researcher")
    assert "hint-one" not in text and "hint-two" in hints_text and "hint-three" in hints_text


def test_best_so_far_is_the_fresh_difference_to_the_baseline(store: MemoryStore) -> None:
    """Issue 16.5: a candidate with a fresh-seed difference to the baseline heads "best so far" (above
    higher in-sample fitness), and the prompt shows the difference with its interval and n."""
    dpo = store.get("e-dpo")
    assert dpo is not None
    vs = VsBaseline(diff=0.0213, ci_low=0.004, ci_high=0.0386, n_seeds=16)
    store.record(dpo.model_copy(update={"vs_baseline": vs}))
    ctx = build_context(store, TARGET, query="x", limits=ContextLimits(k_best=2))
    assert [a.name for a in ctx.best] == ["dpo", "pfl"]
    text = user(design_messages(ctx))
    line = (
        "`dpo` — evaluated, vs the baseline +0.0213 (95% CI +0.0040 to +0.0386 on 16 fresh seeds), fitness 1"
    )
    assert line in section(text, "Best so far")
    assert "the best so far, `dpo` (+0.0213 vs the baseline)" in text


def test_vetoed_candidates_never_appear(store: MemoryStore) -> None:
    vetoed = ["e-pfl", "ipo"]  # by id and by name
    ctx = build_context(
        store, TARGET, query=get_zoo_loss("ipo").code, vetoed_ids=vetoed, pinned_ids=["e-pfl"]
    )
    text = user(design_messages(ctx))
    assert "thought-pfl" not in text and "thought-ipo" not in text
    assert get_zoo_loss("pfl").code.strip() not in text and get_zoo_loss("ipo").code.strip() not in text
    assert [a.name for a in ctx.best][:2] == ["padll", "aql"]  # the best shift up, k still filled
    assert len(ctx.best) == 5 and not ctx.pinned
    assert "Do not propose these again, nor close variants of them: `pfl`, `ipo`." in text


def test_a_candidate_appears_once_in_its_most_informative_section(store: MemoryStore) -> None:
    ctx = build_context(store, TARGET, query=get_zoo_loss("pfl").code, pinned_ids=["e-dpo"])
    assert [a.name for a in ctx.pinned] == ["dpo"]
    assert "e-dpo" not in {a.id for a in [*ctx.best, *ctx.similar, *ctx.failures]}
    top = ctx.best[0]
    assert top.name == "pfl" and top.similarity is not None and top.similarity > 0.99
    assert "e-pfl" not in {a.id for a in ctx.similar}
    text = user(design_messages(ctx))
    assert text.count("thought-pfl") == 1 and text.count("thought-dpo") == 1
    assert "## Pinned by the researcher" in text
    # The novelty reflection lists the nearest attempts whatever section holds them, nearest first.
    reflect = user(reflect_messages(ctx, Draft(thought="x", name="x", code=get_zoo_loss("pfl").code), 1))
    closest = section(reflect, "The closest attempts in memory")
    assert closest.index("`pfl`") < closest.index(f"`{ctx.similar[0].name}`")


def test_empty_memory_embeds_nothing_and_says_so(tmp_path: Path) -> None:
    memory = MemoryStore(tmp_path / "empty", embedder=RefusingEmbedder())
    ctx = build_context(memory, TARGET, query="anything", hints=["go"], vetoed_ids=["x"], pinned_ids=["y"])
    assert (ctx.best, ctx.similar, ctx.failures, ctx.pinned, ctx.archive_size) == ([], [], [], [], 0)
    text = user(design_messages(ctx))
    assert "Memory is empty" in text and "## Best so far" not in text and "- go" in text
    draft = Draft(thought="t", name="n", code="def f(): pass")
    assert "no attempt close to this draft (memory is empty)" in user(reflect_messages(ctx, draft, 1))


def test_long_code_and_errors_are_clipped_with_a_visible_marker(
    tmp_path: Path, minilm: MiniLMEmbedder
) -> None:
    body = "".join(f"    x{i} = policy_chosen_logps * {i}  # padding line {i}\n" for i in range(300))
    code = f"def long_loss({SIG}):\n{body}    return F.softplus(-x1)  # TAIL-MARK\n"
    error = "HEAD-OF-TRACEBACK\n" + "  frame\n" * 800 + "ValueError: the real cause (ERROR-TAIL)"
    memory = MemoryStore(tmp_path / "m", embedder=minilm)
    memory.record(rec("long_loss", code=code, id="f-long", status="check_failed", error=error))
    limits = ContextLimits()
    ctx = build_context(memory, TARGET, query="long loss", limits=limits)
    (shown,) = ctx.failures
    assert "truncated:" in shown.code and "TAIL-MARK" in shown.code and shown.code.startswith("def long_loss")
    assert len(shown.code) <= limits.max_code_chars + 60
    assert "ERROR-TAIL" in shown.error and "truncated:" in shown.error  # type: ignore[operator]
    assert len(shown.error) <= limits.max_error_chars + 60  # type: ignore[arg-type]
    assert clip("short", 10) == "short"


def synthetic_archive(n: int, minilm: MiniLMEmbedder, seed: int = 0) -> tuple[list[CandidateRecord], dict]:
    """n variants of zoo losses with a mix of statuses, fitness, long errors and long code.

    Embedding hundreds of loss sources with MiniLM takes minutes on two cores, so the vectors are the
    zoo sources' real embeddings plus noise (as evals/bench_memory.py does); search queries are real.
    """
    rng = np.random.default_rng(seed)
    bases = [get_zoo_loss(z) for z in zoo_names()]
    code_vecs = minilm.embed([normalise_code(b.code) for b in bases])
    meaning_vecs = minilm.embed([f"{b.name}\n{b.title}" for b in bases])
    recs, code_rows, meaning_rows = [], [], []
    for i in range(n):
        j = i % len(bases)
        base, kind = bases[j], i % 10
        code = base.code.rstrip() + f"\n# variant {i}\n"
        if i % 23 == 0:  # an occasional very long candidate
            code += "".join(f"# note {k}: {'x' * 60}\n" for k in range(80))
        fields: dict = {"status": "evaluated", "fitness": fit(float(rng.normal()))}
        if kind in (6, 7):
            tb = "".join(f'  File "<candidate>", line {k}, in f\n' for k in range(60))
            fields = {"status": "check_failed", "error": f"finite_extreme failed\n{tb}ValueError: NaN {i}"}
        elif kind == 8:
            fields = {"status": "rejected", "error": f"too similar to {base.name} (0.98)"}
        elif kind == 9:
            fields = {"status": "failed", "error": f"diverged at beta=5 in variant {i}"}
        recs.append(
            CandidateRecord(id=f"s-{i:04d}", target="dpo", run_id="synthetic", name=f"{base.name}_v{i}",
                            thought=f"{base.title}, variant {i}. " * 6, code=code, **fields)
        )  # fmt: skip
        code_rows.append(code_vecs[j] + rng.normal(0, 0.3 / np.sqrt(code_vecs.shape[1]), code_vecs.shape[1]))
        meaning_rows.append(meaning_vecs[j])
    vectors = {"code": np.asarray(code_rows), "meaning": np.asarray(meaning_rows)}
    for key, v in vectors.items():
        vectors[key] = v / np.linalg.norm(v, axis=1, keepdims=True)
    return recs, vectors


def test_design_prompt_size_is_bounded_at_a_few_hundred_records(
    tmp_path: Path, minilm: MiniLMEmbedder
) -> None:
    recs, vectors = synthetic_archive(400, minilm)
    memory = MemoryStore(tmp_path / "big", embedder=minilm)
    sizes = {}
    for n in (40, 400):
        memory.record_many(recs[:n], vectors={k: v[:n] for k, v in vectors.items()})
        ctx = build_context(memory, TARGET, query=recs[5].thought + "\n" + recs[5].code, hints=["h"])
        text = user(design_messages(ctx))
        sizes[n] = len(text)
        fittest = sorted((r for r in recs[:n] if r.fitness), key=lambda r: -r.fitness.value)[:5]  # type: ignore[union-attr]
        assert [a.id for a in ctx.best] == [r.id for r in fittest]
        best = section(text, "Best so far")
        assert all(f"`{r.name}`" in best for r in fittest)
        assert ctx.archive_size == n
        assert len(ctx.similar) + len(ctx.failures) + ctx.omitted == 4 + 3  # long ones may not fit
        limits = ContextLimits()
        shown = [*ctx.best, *ctx.similar, *ctx.failures]
        assert (
            sum(len(a.code) + len(a.thought) + len(a.error or "") for a in shown) <= limits.max_attempt_chars
        )
    # Bounded: ten times the archive, about the same prompt, far below 8k tokens' worth of characters.
    assert max(sizes.values()) <= 26_000, sizes
    assert sizes[400] <= 1.5 * sizes[40], sizes


def test_attempt_budget_drops_similar_first_and_keeps_one_best(
    tmp_path: Path, minilm: MiniLMEmbedder
) -> None:
    recs, vectors = synthetic_archive(60, minilm, seed=1)
    memory = MemoryStore(tmp_path / "budget", embedder=minilm)
    memory.record_many(recs, vectors=vectors)
    ctx = build_context(memory, TARGET, query=recs[0].code, limits=ContextLimits(max_attempt_chars=1))
    assert len(ctx.best) == 1 and ctx.similar == [] and ctx.failures == []
    assert ctx.omitted == 4 + 4 + 3  # the other best, the similar and the failures that were selected


# Repair and reflection -----------------------------------------------------------------------------
BROKEN = f"""def broken_temp({SIG}):
    rho = (policy_chosen_logps - policy_rejected_logps) - (reference_chosen_logps - reference_rejected_logps)
    scale = self.temperature * rho
    return F.softplus(-scale)
"""


def test_repair_prompt_carries_checks_and_traceback_and_never_none(store: MemoryStore) -> None:
    ctx = build_context(store, TARGET, query=BROKEN)
    real = check_candidate(BROKEN).failures()  # AttributeError at line 3, with its traceback
    assert real and real[0].line == 3 and real[0].traceback
    bare = CheckResult(name="finite_extreme", passed=False, message="", numbers={"rho": -1000.0, "beta": 5.0})
    run_tb = 'Traceback (most recent call last):\n  File "train.py", line 9\nRuntimeError: CUDA said no'
    draft = Draft(thought="temperature-scaled DPO", name="broken_temp", code=BROKEN)
    text = user(repairing(ctx, draft, [*real, bare], run_tb, attempt=2, max_attempts=3))
    assert "Repair 2 of 3" in text and "last repair" not in text
    assert real[0].message in text and "AttributeError" in text
    assert "At line 3: `scale = self.temperature * rho`" in text
    assert "\n3 |     scale = self.temperature * rho" in text  # the numbered code
    assert "Numbers: rho = -1000, beta = 5" in text
    assert "the check `finite_extreme` failed without a message" in text
    assert "RuntimeError: CUDA said no" in text
    assert "None" not in text and "{e}" not in text and "{" + "traceback" not in text
    last = user(repairing(ctx, draft, [], "Traceback: boom", attempt=3, max_attempts=3))
    assert "last repair" in last and "boom" in last and "None" not in last


@pytest.mark.parametrize(
    ("failures", "traceback", "attempt"),
    [([], None, 1), ([], "   ", 1), ([CheckResult(name="x", passed=False, message="m")], None, 4)],
)
def test_repair_prompt_refuses_to_render_without_a_reason(
    store: MemoryStore, failures: list[CheckResult], traceback: str | None, attempt: int
) -> None:
    ctx = DesignContext(target="dpo", description="d", interface="i", rules=[], fitness_meaning="f")
    with pytest.raises(ValueError):
        repairing(ctx, Draft(thought="t", name="n", code="c"), failures, traceback, attempt, 3)


def test_a_long_traceback_keeps_its_tail() -> None:
    ctx = DesignContext(target="dpo", description="d", interface="i", rules=[], fitness_meaning="f")
    tb = "Traceback (most recent call last):\n" + "  frame line\n" * 2000 + "ZeroDivisionError: TB-TAIL"
    text = user(repairing(ctx, Draft(thought="t", name="n", code="c"), [], tb, 1, 3))
    assert "TB-TAIL" in text and "truncated:" in text and len(text) < 6000


def test_reflection_round_1_lists_similar_and_round_2_the_rules(store: MemoryStore) -> None:
    draft = Draft(thought="a hinge on the margin", name="hinge_again", code=get_zoo_loss("slic").code)
    ctx = build_context(store, TARGET, query=f"{draft.thought}\n{draft.code}")
    first = user(reflect_messages(ctx, draft, 1))
    assert "is it really new?" in first
    closest = section(first, "The closest attempts in memory")
    near = [a for a in (*ctx.best, *ctx.similar, *ctx.failures) if a.similarity is not None]
    assert near and all(f"`{a.name}`" in closest for a in near)
    first_heading = closest.split("### ")[1].splitlines()[0]
    assert first_heading.startswith("`slic` — evaluated, fitness 2 (95% CI 1.95 to 2.05), similarity 0.")
    second = user(reflect_messages(ctx, draft, 2))
    assert all(rule in second for rule in RULES) and "INTERFACE-MARK" in second
    assert "Numerical stability" in second and "thought-slic" not in second
