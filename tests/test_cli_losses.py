"""`disco losses`: the real entry point in a subprocess where it matters, CliRunner where it is quicker."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agent.cli import app
from targets.dpo.zoo import get_zoo_loss, zoo_names

DISCO = Path(sys.executable).with_name("disco")
GOOD = get_zoo_loss("dpo").code
BAD = "def loss(self, policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, x):\n    return x\n"


def disco(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [str(DISCO), *args], capture_output=True, text=True, timeout=120, cwd=cwd, env=env, check=False
    )


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def test_entry_point_check_json_passes_and_exits_0(tmp_path: Path) -> None:
    file = tmp_path / "dpo.py"
    file.write_text(GOOD, encoding="utf-8")
    proc = disco("losses", "check", str(file), "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["passed"] is True
    assert {"name", "passed", "message", "level", "numbers", "line", "traceback"} <= set(report["checks"][0])
    assert [c["name"] for c in report["checks"]][:2] == ["policy", "signature"]


def test_entry_point_unreadable_file_is_one_sentence_and_exit_2(tmp_path: Path) -> None:
    proc = disco("losses", "check", str(tmp_path / "missing.py"), cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.strip() == f"cannot read {tmp_path / 'missing.py'}: no such file."


def test_entry_point_list_json(tmp_path: Path) -> None:
    proc = disco("losses", "list", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert [r["name"] for r in rows] == zoo_names()
    assert all(r["citation"] and "code" not in r for r in rows)
    assert "SUMMED" in next(r for r in rows if r["name"] == "ipo")["notes"]


def test_list_table_names_every_loss(runner: CliRunner) -> None:
    result = runner.invoke(app, ["losses", "list"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert all(name in result.stdout for name in zoo_names())
    assert "Rafailov" in result.stdout and "arXiv:2406.08414" in result.stdout


@pytest.mark.parametrize("name", ["lrml", "kto_pair", "cell"])
def test_show_prints_the_source_exactly(runner: CliRunner, name: str) -> None:
    result = runner.invoke(app, ["losses", "show", name])
    assert result.exit_code == 0
    assert result.stdout == get_zoo_loss(name).code


def test_show_unknown_name_lists_valid_ones(runner: CliRunner) -> None:
    result = runner.invoke(app, ["losses", "show", "dpoo"])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "no zoo loss named 'dpoo'" in result.stderr and "lrml" in result.stderr
    assert "Traceback" not in result.stderr


def test_check_failing_file_exits_1_with_json(runner: CliRunner, tmp_path: Path) -> None:
    file = tmp_path / "bad.py"
    file.write_text(BAD, encoding="utf-8")
    result = runner.invoke(app, ["losses", "check", str(file), "--json"])
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    signature = next(c for c in report["checks"] if c["name"] == "signature")
    assert (
        report["passed"] is False
        and signature["passed"] is False
        and "expected exactly" in signature["message"]
    )


def test_check_zoo_file_that_overflows_exits_1(runner: CliRunner, tmp_path: Path) -> None:
    """cell is published, but exp(-βρ) is inf at ρ=-1000, β=0.1 in float32: the check says so and fails."""
    file = tmp_path / "cell.py"
    file.write_text(get_zoo_loss("cell").code, encoding="utf-8")
    result = runner.invoke(app, ["losses", "check", str(file)], env={"COLUMNS": "300"})
    assert result.exit_code == 1
    assert (
        "finite_extreme" in result.stdout
        and "FAIL" in result.stdout
        and "ρ=-1000 with β=0.1" in result.stdout
    )
    assert result.stdout.rstrip().endswith("failed")


def test_check_human_table_for_a_passing_file(runner: CliRunner, tmp_path: Path) -> None:
    file = tmp_path / "aql.py"
    file.write_text(get_zoo_loss("aql").code, encoding="utf-8")
    result = runner.invoke(app, ["losses", "check", str(file)], env={"COLUMNS": "300"})
    assert result.exit_code == 0
    assert "warn" in result.stdout and "batch_dependence" in result.stdout
    assert result.stdout.rstrip().endswith("passed")


@pytest.mark.parametrize(
    ("make", "sentence"),
    [
        (lambda p: p.mkdir(), "it is a directory"),
        (lambda p: p.write_bytes(b"\xff\xfe\x00bad"), "it is not UTF-8 text"),
    ],
    ids=["directory", "binary"],
)
def test_check_unreadable_file_exits_2(
    runner: CliRunner, tmp_path: Path, make: Callable[[Path], object], sentence: str
) -> None:
    path = tmp_path / "loss.py"
    make(path)
    result = runner.invoke(app, ["losses", "check", str(path)])
    assert result.exit_code == 2
    assert sentence in result.stderr and result.stdout == ""
    assert result.exception is None or isinstance(result.exception, SystemExit)
