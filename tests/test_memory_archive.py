"""Archives: DiscoPOP and ADAS JSON, disco's JSONL, and the errors a person can fix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_memory_helpers import rec, shared_minilm

from memory.archive import ArchiveError, detect_format, parse_fitness, read_archive
from memory.embeddings import MiniLMEmbedder
from memory.records import Fitness
from memory.store import MemoryStore
from targets.dpo.fingerprint import loss_fingerprint
from targets.dpo.zoo import get_zoo_loss

ADAS_FORWARD = "def forward(self, taskInfo):\n    return self.answer(taskInfo)\n"


@pytest.fixture(scope="session")
def minilm() -> MiniLMEmbedder:
    return shared_minilm()


def write(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (3.5, Fitness(value=3.5, ci_low=3.5, ci_high=3.5)),
        (
            "95% Bootstrap Confidence Interval: (12.5%, 20.1%), Median: 16.3%",
            Fitness(value=16.3, ci_low=12.5, ci_high=20.1),
        ),
        ({"value": 1, "ci_low": 0, "ci_high": 2}, Fitness(value=1, ci_low=0, ci_high=2)),
        (None, None),
        ("7", Fitness(value=7, ci_low=7, ci_high=7)),
    ],
)
def test_parse_fitness(raw: object, expected: Fitness | None) -> None:
    assert parse_fitness(raw) == expected


def test_discopop_archive(tmp_path: Path) -> None:
    items = [
        {"code": get_zoo_loss("dpo").code, "fitness": 7.9},
        {"code": get_zoo_loss("lrml").code, "fitness": None},
    ]
    got = read_archive(write(tmp_path / "a.json", items))
    assert [i.record.name for i in got] == ["dpo_loss", "log_ratio_modulated_loss"]
    assert [i.record.status for i in got] == ["evaluated", "proposed"]
    assert {i.record.target for i in got} == {"dpo"} and got[0].record.source == "discopop"


def test_adas_archive(tmp_path: Path) -> None:
    ci = "95% Bootstrap Confidence Interval: (10.0%, 14.0%), Median: 12.0%"
    items = [
        {
            "thought": "Chain of thought",
            "name": "COT",
            "code": ADAS_FORWARD,
            "fitness": ci,
            "generation": "initial",
        },
        {
            "thought": "Debate",
            "name": "Debate",
            "code": ADAS_FORWARD + "# v2\n",
            "fitness": 20.0,
            "generation": 3,
        },
    ]
    text = json.dumps(items)
    assert detect_format(text) == "adas"
    got = read_archive(write(tmp_path / "adas.json", items))
    assert got[0].record.target == "agents" and got[0].record.thought == "Chain of thought"
    assert got[0].record.fitness == Fitness(value=12.0, ci_low=10.0, ci_high=14.0)
    assert got[0].record.generation is None and got[1].record.generation == 3


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[{]", "not valid JSON"),
        ('{"a": 1}\nnot json\n', "line 1 is not a disco candidate"),
        ('[{"fitness": 1}]', "item 0 of the discopop archive has no `code`"),
        ('[{"code": "x", "fitness": true}]', "boolean"),
        ("[1, 2]", "list of objects"),
    ],
)
def test_bad_archives_say_what_is_wrong(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ArchiveError, match=message):
        read_archive(path)
    with pytest.raises(ArchiveError, match="no such file"):
        read_archive(tmp_path / "absent.json")


def test_export_then_import_round_trips_records_and_fingerprints(
    tmp_path: Path, minilm: MiniLMEmbedder
) -> None:
    src = MemoryStore(tmp_path / "src", embedder=minilm)
    recs = [rec("dpo", thought="t", status="evaluated"), rec("ipo", parent_ids=["x"])]
    src.record_many(recs, [loss_fingerprint(recs[0].code), None])
    assert src.export_jsonl(tmp_path / "out.jsonl") == 2
    items = read_archive(tmp_path / "out.jsonl")
    assert [i.record for i in items] == sorted(recs, key=lambda r: (r.created_at, r.id))
    assert [i.fingerprint is not None for i in items] == [
        r.id == recs[0].id for r in [i.record for i in items]
    ]
    dst = MemoryStore(tmp_path / "dst", embedder=minilm)
    dst.record_many([i.record for i in items], [i.fingerprint for i in items])
    dst.record_many([i.record for i in items], [i.fingerprint for i in items])
    assert dst.count() == 2 and dst.get(recs[1].id) == recs[1]
    assert dst.fingerprint_of(recs[0].id, "dpo") == pytest.approx(loss_fingerprint(recs[0].code), rel=1e-6)
