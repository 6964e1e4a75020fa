"""MemoryStore on a real Chroma directory with the real MiniLM embedder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_memory_helpers import DPO_RENAMED, DPO_TAU_CHANGED, HINGE_MARGIN_2, rec, shared_minilm

from memory.embeddings import MiniLMEmbedder
from memory.records import Fitness, VsBaseline
from memory.store import MemoryStore
from targets.dpo.fingerprint import loss_fingerprint
from targets.dpo.zoo import get_zoo_loss
from targets.results import CheckResult


@pytest.fixture(scope="session")
def minilm() -> MiniLMEmbedder:
    return shared_minilm()


class CountingEmbedder:
    """The real MiniLM, counting the texts it embeds (to prove that unchanged text is not re-embedded)."""

    def __init__(self, inner: MiniLMEmbedder) -> None:
        self.inner, self.texts = inner, 0
        self.key = inner.key

    def embed(self, texts: list[str]) -> np.ndarray:
        self.texts += len(texts)
        return self.inner.embed(texts)


@pytest.fixture
def store(tmp_path: Path, minilm: MiniLMEmbedder) -> MemoryStore:
    return MemoryStore(tmp_path / "memory", embedder=CountingEmbedder(minilm))


@pytest.fixture
def zoo_store(store: MemoryStore) -> MemoryStore:
    names = ["dpo", "slic", "ipo", "lrml", "robust_dpo"]
    recs = [
        rec(n, thought=f"{get_zoo_loss(n).title}", fitness=Fitness(value=v, ci_low=v - 1, ci_high=v + 1))
        for n, v in zip(names, [5.0, 3.0, 1.0, 9.0, 2.0], strict=True)
    ]
    store.record_many(recs, [loss_fingerprint(r.code) for r in recs])
    return store


def test_record_and_get_round_trip(store: MemoryStore) -> None:
    r = rec("dpo", thought="plain DPO", status="evaluated", metrics={"reward": 0.7}, repair_count=1)
    r.checks.append(CheckResult(name="finite_extreme", passed=True, message="ok", numbers={"rho": 1e3}))
    store.record(r)
    got = store.get(r.id)
    assert got == r
    assert store.get("missing") is None


def test_recording_twice_keeps_one_and_updates_without_reembedding(store: MemoryStore) -> None:
    first = store.record(rec("dpo", thought="t"))
    embedded = store.embedder.texts  # type: ignore[attr-defined]
    assert embedded == 2  # code + meaning
    later = rec("dpo", thought="t", status="evaluated", fitness=Fitness(value=1, ci_low=0, ci_high=2))
    store.record(later)
    store.record(later)
    assert store.count() == 1
    assert store.embedder.texts == embedded  # type: ignore[attr-defined]
    got = store.get(first.id)
    assert got is not None and got.status == "evaluated" and got.created_at == first.created_at
    assert store.stats().spaces == {"code.minilm-l6-v2.dpo": 1, "meaning.minilm-l6-v2.dpo": 1}


def test_changed_code_under_the_same_id_is_reembedded(store: MemoryStore) -> None:
    store.record(rec("dpo", id="x1"))
    store.record(rec("slic", id="x1"))
    assert store.embedder.texts == 4  # type: ignore[attr-defined]
    hits = store.search(get_zoo_loss("slic").code, k=1, space="code")
    assert hits[0].id == "x1" and hits[0].similarity > 0.99


def test_search_by_meaning_and_by_code(zoo_store: MemoryStore) -> None:
    by_meaning = zoo_store.search("hinge loss on the margin", k=2, space="meaning")
    assert by_meaning[0].record.name == "slic"
    by_code = zoo_store.search(get_zoo_loss("ipo").code, k=1, space="code", target="dpo")
    assert by_code[0].record.name == "ipo" and by_code[0].similarity > 0.99
    assert zoo_store.search("anything", target="agents") == []


def test_top_by_score_is_per_target_and_ordered(zoo_store: MemoryStore) -> None:
    zoo_store.record(rec("cell", target="agents", fitness=Fitness(value=99, ci_low=98, ci_high=100)))
    assert [r.name for r in zoo_store.top_by_score("dpo", k=3)] == ["lrml", "dpo", "slic"]
    assert [r.name for r in zoo_store.top_by_score("agents")] == ["cell"]


def test_the_fresh_difference_ranks_before_fitness_and_a_lucky_few_seeds_do_not_top_it(
    store: MemoryStore,
) -> None:
    """Issue 16.5: memory ranks by the shrunk fresh-seed difference to the baseline, never the in-sample
    fitness; a record without one (no baseline, or from before) comes after."""
    high = Fitness(value=9.0, ci_low=8.0, ci_high=10.0)  # in-sample: the highest
    store.record(rec("dpo", fitness=high))
    ranked = {
        "ipo": VsBaseline(diff=0.03, ci_low=0.02, ci_high=0.04, n_seeds=32),
        "slic": VsBaseline(diff=0.08, ci_low=-0.30, ci_high=0.46, n_seeds=2),  # larger, from 2 seeds
        "lrml": VsBaseline(diff=-0.05, ci_low=-0.06, ci_high=-0.04, n_seeds=32),
    }
    for name, vs in ranked.items():
        store.record(rec(name, fitness=Fitness(value=0.1, ci_low=0.0, ci_high=0.2), vs_baseline=vs))
    assert [r.name for r in store.top_by_score("dpo", k=4)] == ["ipo", "slic", "lrml", "dpo"]
    assert store.get(store.top_by_score("dpo", k=1)[0].id).vs_baseline == ranked["ipo"]


def test_recent_failures_come_with_their_errors_and_fixes(store: MemoryStore) -> None:
    broken = rec(
        "broken", code="def f(x):\n    return x\n", status="check_failed", error="signature: wrong parameters"
    )
    unfixed = rec("nan", code=HINGE_MARGIN_2, status="failed", error="finite_extreme: NaN at rho=-1000")
    fix = rec(
        "dpo", status="evaluated", parent_ids=[broken.id], fitness=Fitness(value=1, ci_low=0, ci_high=2)
    )
    store.record_many([broken, unfixed, fix])
    lessons = {lesson.candidate.id: lesson for lesson in store.recent_failures("dpo")}
    assert set(lessons) == {broken.id, unfixed.id}
    assert lessons[broken.id].error == "signature: wrong parameters"
    assert lessons[broken.id].fixed_by is not None and lessons[broken.id].fixed_by.id == fix.id
    assert lessons[unfixed.id].fixed_by is None


def test_novelty_exact_copy_is_a_duplicate_by_hash(zoo_store: MemoryStore) -> None:
    code = get_zoo_loss("slic").code + "\n\n"
    verdict = zoo_store.novelty(code, target="dpo")
    assert not verdict.novel and verdict.by == "code_hash" and verdict.similarity == 1.0
    assert verdict.nearest == rec("slic").id


def test_novelty_fingerprint_catches_a_rewrite_and_passes_a_new_constant(zoo_store: MemoryStore) -> None:
    dup = zoo_store.novelty(DPO_RENAMED, target="dpo", fingerprint=loss_fingerprint(DPO_RENAMED))
    assert not dup.novel and dup.by == "fingerprint" and dup.nearest == rec("dpo").id
    assert dup.similarity > 0.999
    new = zoo_store.novelty(DPO_TAU_CHANGED, target="dpo", fingerprint=loss_fingerprint(DPO_TAU_CHANGED))
    assert new.novel and new.by == "fingerprint" and new.similarity < 0.99
    assert new.text_similarity is not None and new.text_similarity > 0.97  # text alone would call it a copy


def test_novelty_on_an_empty_memory_and_other_targets(store: MemoryStore) -> None:
    assert store.novelty("def f(): pass", target="dpo").summary() == {
        "novel": True,
        "nearest": None,
        "similarity": 0,
    }
    store.record(rec("dpo"))
    verdict = store.novelty(get_zoo_loss("dpo").code, target="agents")
    assert verdict.novel and verdict.nearest is None


def test_novelty_ignores_the_candidate_itself(zoo_store: MemoryStore) -> None:
    own = rec("slic")
    verdict = zoo_store.novelty(
        own.code, target="dpo", fingerprint=loss_fingerprint(own.code), exclude_id=own.id
    )
    assert verdict.nearest != own.id


def test_stats_show_and_export_do_not_load_a_text_model(tmp_path: Path, zoo_store: MemoryStore) -> None:
    plain = MemoryStore(zoo_store.path)  # no embedder given: one would be made on first embed
    st = plain.stats()
    assert st.total == 5 and st.by_status == {"proposed": 5} and st.spaces["fp.dpo"] == 5
    assert plain.get(rec("dpo").id) is not None
    assert plain.export_jsonl(tmp_path / "out.jsonl") == 5
    assert plain._embedder is None


def test_a_refresh_by_one_store_leaves_others_in_the_process_working(
    tmp_path: Path, minilm: MiniLMEmbedder
) -> None:
    a = MemoryStore(tmp_path / "a", embedder=minilm)
    b = MemoryStore(tmp_path / "b", embedder=minilm)
    a.record(rec("dpo"))
    b.record(rec("slic"))
    a.refresh()  # clears Chroma's per-process cache, which b's client lived in
    assert b.search("hinge", k=1, target="dpo")[0].record.name == "slic"
    assert a.search("sigmoid", k=1, target="dpo")[0].record.name == "dpo"


def test_novelty_can_leave_out_a_whole_run(store: MemoryStore) -> None:
    """A replay's recorded run (issue 19.4): its candidates and their attempts do not count, by hash, text
    or fingerprint; any other run's still do."""
    slic = get_zoo_loss("slic").code
    recorded = [rec("slic", id="recorded-0001", run_id="recorded"), rec("dpo", id="recorded-0001-a0")]
    store.record_many(recorded, [loss_fingerprint(r.code) for r in recorded])
    fp = loss_fingerprint(DPO_RENAMED)
    assert not store.novelty(slic, target="dpo").novel
    assert not store.novelty(DPO_RENAMED, target="dpo", fingerprint=fp).novel
    assert store.novelty(slic, target="dpo", ignore_runs=("recorded",)).novel
    assert store.novelty(DPO_RENAMED, target="dpo", fingerprint=fp, ignore_runs=("recorded",)).novel
    store.record(rec("slic", id="other-0003", run_id="other"), loss_fingerprint(slic))
    verdict = store.novelty(slic, target="dpo", ignore_runs=("recorded",))
    assert not verdict.novel and verdict.nearest == "other-0003"
