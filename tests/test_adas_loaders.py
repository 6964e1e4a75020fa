"""The agent-system target's benchmark loaders on their real file formats: the shared samples when this
machine has them, and small fixtures of every format (MGSM TSV, DROP gzipped JSONL, MMLU and GPQA CSVs,
ARC JSON) that the tests write themselves."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from adas_helpers import write_arc, write_drop, write_gpqa, write_mgsm, write_mmlu

from targets.agents.benchmarks import BenchmarkError, load_benchmark
from targets.agents.benchmarks.arc import parse_grid
from targets.agents.benchmarks.choice import extract_letter
from targets.agents.benchmarks.mgsm import parse_number

REAL = Path("/work/shared/data/adas")

if REAL.is_dir():  # the real samples (absent elsewhere: the fixture tests below cover every format)

    def test_real_files_parse() -> None:
        en = load_benchmark("mgsm", REAL / "mgsm_en.tsv")
        assert len(en.items) == 250
        assert en.items[0].content.startswith("Janet’s ducks lay 16 eggs") and en.items[0].gold == 18.0
        both = load_benchmark("mgsm", REAL)
        assert len(both.items) == 500 and {i.id.split(":")[0] for i in both.items} == {"mgsm_en", "mgsm_ja"}
        drop = load_benchmark("drop", REAL / "drop_v0_dev.jsonl.gz")
        assert len(drop.items) == 9536
        first = drop.items[0]
        assert first.content.startswith("Passage:") and first.content.endswith("Answer:")
        assert first.gold == ["under the age of 18 and 25 to 44 and 45 to 64"]
        assert drop.items[1].gold == ["Pakistanis and Filipinos", "Pakistani and Filipino"]
        assert drop.score("Pakistani and Filipino", drop.items[1]) == 1.0
        arc = load_benchmark("arc", REAL / "arc")
        tasks = sorted(REAL.glob("arc/*.json"))
        assert len(arc.items) == sum(len(json.loads(p.read_text())["test"]) for p in tasks) >= 20
        item = next(i for i in arc.items if i.id.startswith("0d3d703e"))
        assert (
            item.gold == [[9, 5, 4], [9, 5, 4], [9, 5, 4]]
            and "[[8, 1, 3], [8, 1, 3], [8, 1, 3]]" in item.content
        )
        assert arc.score(json.dumps(item.gold), item) == 1.0 and arc.score([[9, 5, 4]], item) == 0.0
        splits = both.split(0)
        assert (len(splits.valid), len(splits.test)) == (128, 372)


def test_fixtures_of_every_format(tmp_path: Path) -> None:
    mgsm = load_benchmark("mgsm", write_mgsm(tmp_path / "mgsm", n=5))
    assert [i.gold for i in mgsm.items] == [2.0, 4.0, 6.0, 8.0, 10.0]
    assert mgsm.items[2].content == "What is 3 plus 3?" and mgsm.items[2].id == "mgsm_en:3"
    drop = load_benchmark("drop", write_drop(tmp_path / "drop.jsonl.gz"))
    assert [i.gold for i in drop.items] == [["3", "three"], ["Danes"]]
    assert drop.score("three", drop.items[0]) == 1.0 and drop.score("the Danes", drop.items[1]) == 1.0
    mmlu = load_benchmark("mmlu", write_mmlu(tmp_path / "mmlu"))
    assert [i.gold for i in mmlu.items] == ["B", "C"]
    assert "(B) 4" in mmlu.items[0].content and "Find x if x, squared, is 9" in mmlu.items[1].content
    gpqa = load_benchmark("gpqa", write_gpqa(tmp_path / "gpqa_diamond.csv"))
    assert len(gpqa.items) == 3
    for item in gpqa.items:  # the correct answer sits under the gold letter after the seeded shuffle
        assert f"({item.gold}) right" in item.content
    again = load_benchmark("gpqa", tmp_path / "gpqa_diamond.csv")
    assert [i.gold for i in again.items] == [i.gold for i in gpqa.items], "the shuffle is reproducible"
    arc = load_benchmark("arc", write_arc(tmp_path / "arc"))
    assert [i.gold for i in arc.items] == [[[5, 4]], [[0, 7]]]
    assert "### Input:\n[[1, 0]]\n### Output:\n[[0, 1]]" in arc.items[0].content
    assert "[[5, 4]]" not in arc.items[0].content, "the answer never reaches the task text"


def test_simple_evals_mmlu_csv_with_header(tmp_path: Path) -> None:
    path = tmp_path / "mmlu.csv"
    path.write_text(
        ",Question,A,B,C,D,Answer,Subject\n0,Pick two,1,2,3,4,B,math\n1,Pick four,1,2,3,4,D,math\n"
    )
    bench = load_benchmark("mmlu", path)
    assert [i.gold for i in bench.items] == ["B", "D"] and "(D) 4" in bench.items[1].content


@pytest.mark.parametrize(
    ("name", "make", "message"),
    [
        ("mgsm", lambda p: None, "the mgsm benchmark needs its data: set data_path"),
        ("mgsm", lambda p: p / "nowhere", "does not exist"),
        (
            "mgsm",
            lambda p: _write(p / "mgsm_en.tsv", "only one column\n"),
            "MGSM lines are question<TAB>answer",
        ),
        ("mgsm", lambda p: _write(p / "mgsm_en.tsv", "q\tnot a number\n"), "is not a number"),
        ("drop", lambda p: _write(p / "d.jsonl", '{"passage": 1}\n'), "not a DROP record"),
        ("mmlu", lambda p: _write(p / "m.csv", "q,a,b,c,d,E\n"), "is not one of A, B, C, D"),
        (
            "gpqa",
            lambda p: _write(p / "g.csv", "Question,Answer\nq,a\n"),
            "lacks the column 'Correct Answer'",
        ),
        ("gpqa", lambda p: None, "GPQA is gated on the Hugging Face hub"),
        ("arc", lambda p: _write(p / "t.json", '{"train": []}'), "is not an ARC task"),
        ("chess", lambda p: None, "unknown benchmark 'chess'"),
    ],
)
def test_bad_data_gets_one_sentence(tmp_path: Path, name: str, make: Any, message: str) -> None:
    with pytest.raises(BenchmarkError) as info:
        load_benchmark(name, make(tmp_path))
    assert message in str(info.value) and "\n" not in str(info.value)


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_splits_are_fixed_disjoint_and_seeded(tmp_path: Path) -> None:
    bench = load_benchmark("mgsm", write_mgsm(tmp_path, n=30))
    a, b, c = bench.split(0, 10, 15), bench.split(0, 10, 15), bench.split(1, 10, 15)
    ids = [i.id for i in a.valid]
    assert ids == [i.id for i in b.valid] and ids != [i.id for i in c.valid]
    assert len(a.valid) == 10 and len(a.test) == 15 and not {i.id for i in a.valid} & {i.id for i in a.test}
    small = bench.split(0, 100, 100)
    assert (len(small.valid), len(small.test)) == (30, 0), "a small benchmark fills validation first"


@pytest.mark.parametrize(
    ("text", "number"),
    [("18", 18.0), ("The answer is 1,250.", 1250.0), ("-3", -3.0), ("2.50 dollars", 2.5), ("none", None)],
)
def test_mgsm_numbers(text: str, number: float | None) -> None:
    assert parse_number(text) == number


@pytest.mark.parametrize(
    ("text", "letter"),
    [("B", "B"), ("(c) because", "C"), ("The answer is D.", "D"), ("Answer: A", "A"), ("none of them", None)],
)
def test_choice_letters(text: str, letter: str | None) -> None:
    assert extract_letter(text) == letter


@pytest.mark.parametrize(
    ("answer", "grid"),
    [([[1, 2]], [[1, 2]]), ("Output: [[1, 2], [3, 4]]", [[1, 2], [3, 4]]), ("[[1, 'a']]", None), ("7", None)],
)
def test_arc_grids(answer: Any, grid: list[list[int]] | None) -> None:
    assert parse_grid(answer) == grid
