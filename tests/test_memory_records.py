"""The candidate record: derived fields, JSON round trip, and what Chroma can filter on."""

from __future__ import annotations

from memory.records import CandidateRecord, Fitness, code_hash, derive_id


def test_code_hash_ignores_line_endings_and_trailing_space_only() -> None:
    assert code_hash("a = 1\r\nb = 2  \n\n") == code_hash("a = 1\nb = 2")
    assert code_hash("a = 1\nb = 2") != code_hash("a = 1\nb = 3")
    assert code_hash("a = 1") != code_hash("a = 1  # note")


def test_id_and_hash_are_derived_and_stable() -> None:
    a = CandidateRecord(target="dpo", run_id="r", code="x = 1\n")
    b = CandidateRecord(target="dpo", run_id="r", code="x = 1")
    assert a.id == b.id == derive_id("dpo", "r", "x = 1") and a.code_hash == code_hash("x = 1")
    assert CandidateRecord(target="dpo", run_id="other", code="x = 1").id != a.id
    assert CandidateRecord(id="given", target="dpo", code="x").id == "given"


def test_json_round_trip_and_filter_fields_have_no_none() -> None:
    r = CandidateRecord(
        target="dpo",
        code="x",
        parent_ids=["p"],
        fitness=Fitness(value=1.5, ci_low=1, ci_high=2),
        status="evaluated",
    )
    assert CandidateRecord.model_validate_json(r.model_dump_json()) == r
    fields = r.filter_fields()
    assert fields["fitness"] == 1.5 and fields["parent_ids"] == ["p"] and fields["has_fitness"] is True
    bare = CandidateRecord(target="dpo", code="x").filter_fields()
    assert "fitness" not in bare and "parent_ids" not in bare and None not in bare.values()


def test_failure_text_prefers_the_error_then_failed_checks() -> None:
    from targets.results import CheckResult

    checks = [
        CheckResult(name="gradients", passed=False, message="zero gradient"),
        CheckResult(name="batch_dependence", passed=False, level="warning", message="depends on batch"),
    ]
    assert CandidateRecord(target="dpo", code="x", checks=checks).failure_text() == "gradients: zero gradient"
    assert CandidateRecord(target="dpo", code="x", checks=checks, error="NaN").failure_text() == "NaN"


def test_normalise_code_drops_comments_docstrings_and_layout() -> None:
    from memory.records import normalise_code

    a = '# cite\ndef f(x):\n    """Why."""\n    y = x + 1  # note\n    return y\n'
    b = "def f(x):\n    y = x + 1\n\n    return y"
    assert normalise_code(a) == normalise_code(b) == "def f(x):\n    y = x + 1\n    return y"
    assert normalise_code("not python (") == "not python ("


def test_a_record_with_non_finite_check_numbers_survives_json() -> None:
    """A check that measured inf or NaN (an overflowing loss) must not make the record unreadable."""
    import math

    from memory.records import CandidateRecord
    from targets.results import CheckResult

    check = CheckResult(name="b", passed=False, message="m", numbers={"d": float("inf"), "n": float("nan")})
    record = CandidateRecord(target="dpo", code="x", checks=[check])
    back = CandidateRecord.model_validate_json(record.model_dump_json())
    assert back.checks[0].numbers["d"] == float("inf") and math.isnan(back.checks[0].numbers["n"])
