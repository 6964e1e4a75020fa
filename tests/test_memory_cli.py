"""`disco memory`: CliRunner for the commands (shared MiniLM), the real entry point where it matters."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from test_memory_helpers import DPO_RENAMED, DPO_TAU_CHANGED, FakeEmbeddingServer, shared_minilm
from typer.testing import CliRunner, Result

from agent.cli import app
from agent.home import set_home
from targets.dpo.zoo import get_zoo_loss

DISCO = Path(sys.executable).with_name("disco")
Invoke = Callable[..., Result]


@pytest.fixture
def cli(tmp_path: Path) -> Iterator[Invoke]:
    shared_minilm()  # the commands below share the process's model cache
    runner = CliRunner()
    home = tmp_path / "home"

    def invoke(*args: str) -> Result:
        return runner.invoke(app, ["--home", str(home), "memory", *args])

    yield invoke
    set_home(None)  # --home sets process state; leave none behind for other tests


ZOO_ARCHIVE = [("dpo", 1.0), ("lrml", 2.0), ("slic", 0.5)]


def write_zoo_archive(path: Path) -> Path:
    items = [{"code": get_zoo_loss(n).code, "fitness": f} for n, f in ZOO_ARCHIVE]
    path.write_text(json.dumps(items), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def zoo_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The zoo archive imported once (its fingerprints computed in the sandbox) and exported as JSONL, so
    that each test seeds its own memory from the export without computing them again."""
    shared_minilm()
    folder = tmp_path_factory.mktemp("zoo")
    home = ["--home", str(folder / "home"), "memory"]
    try:
        result = CliRunner().invoke(
            app, [*home, "import", str(write_zoo_archive(folder / "discopop.json")), "--json"]
        )
        assert result.exit_code == 0, result.output
        assert json.loads(result.output) == {"read": 3, "added": 3, "fingerprinted": 3}
        out = folder / "zoo.jsonl"
        assert CliRunner().invoke(app, [*home, "export", str(out)]).exit_code == 0
    finally:
        set_home(None)
    return out


@pytest.fixture
def seeded(cli: Invoke, tmp_path: Path, zoo_export: Path) -> Invoke:
    """Memory holding the zoo archive as `disco memory import` of the DiscoPOP file leaves it."""
    write_zoo_archive(tmp_path / "discopop.json")
    result = cli("import", str(zoo_export), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {"read": 3, "added": 3, "fingerprinted": 3}
    return cli


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_import_twice_keeps_one_of_each(seeded: Invoke, tmp_path: Path) -> None:
    again = seeded("import", str(tmp_path / "discopop.json"), "--json")
    assert json.loads(again.output)["added"] == 0
    stats = json.loads(seeded("stats", "--json").output)
    assert stats["total"] == 3 and stats["by_status"] == {"evaluated": 3} and stats["spaces"]["fp.dpo"] == 3


def test_search_and_show(seeded: Invoke) -> None:
    hits = json.loads(seeded("search", get_zoo_loss("slic").code, "-k", "2", "--json").output)
    assert hits[0]["name"] == "slic_hinge_loss" and hits[0]["similarity"] > 0.99 and hits[0]["fitness"] == 0.5
    shown = seeded("show", hits[0]["id"], "--json")
    assert shown.exit_code == 0 and json.loads(shown.output)["code"] == get_zoo_loss("slic").code
    text = seeded("show", hits[0]["id"])
    assert "status evaluated" in text.output and "relu" in text.output


@pytest.mark.parametrize(
    ("code", "novel", "exit_code"),
    [(DPO_RENAMED, False, 1), (DPO_TAU_CHANGED, True, 0), (get_zoo_loss("lrml").code, False, 1)],
)
def test_novelty_json(seeded: Invoke, tmp_path: Path, code: str, novel: bool, exit_code: int) -> None:
    result = seeded("novelty", str(write(tmp_path, "cand.py", code)), "--json")
    assert result.exit_code == exit_code, result.output
    verdict = json.loads(result.output)
    assert set(verdict) == {"novel", "nearest", "similarity"} and verdict["novel"] is novel
    assert isinstance(verdict["nearest"], str) and 0 <= verdict["similarity"] <= 1


def test_export_import_into_another_home(seeded: Invoke, tmp_path: Path) -> None:
    out = tmp_path / "export.jsonl"
    assert json.loads(seeded("export", str(out), "--json").output) == {"exported": 3, "file": str(out)}
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 3 and all(len(line["fingerprint"]) > 0 for line in lines)
    other = CliRunner().invoke(
        app, ["--home", str(tmp_path / "other"), "memory", "import", str(out), "--json"]
    )
    set_home(None)
    assert json.loads(other.output) == {"read": 3, "added": 3, "fingerprinted": 3}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["show", "nope"], "no candidate 'nope' in memory."),
        (["novelty", "/no/such/file.py"], "cannot read /no/such/file.py: no such file."),
        (["import", "/no/such/archive.json"], "cannot read /no/such/archive.json: no such file."),
        (
            ["export", "/no/such/dir/out.jsonl"],
            "cannot write /no/such/dir/out.jsonl: the folder /no/such/dir does",
        ),
        (["search", "x", "--space", "bogus"], "--space must be code, meaning or both, not 'bogus'."),
    ],
)
def test_user_errors_are_one_sentence(cli: Invoke, args: list[str], message: str) -> None:
    result = cli(*args)
    assert result.exit_code in (1, 2)
    assert message in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_a_bad_archive_is_one_sentence(cli: Invoke, tmp_path: Path) -> None:
    result = cli("import", str(write(tmp_path, "bad.json", '[{"fitness": 1}]')))
    assert (
        result.exit_code == 2
        and result.output.strip() == "item 0 of the discopop archive has no `code` string."
    )


def test_entry_point_with_an_endpoint(tmp_path: Path) -> None:
    """The installed `disco` in a fresh process: empty stats without any model, then novelty via HTTP."""
    with FakeEmbeddingServer() as server:
        env = {**os.environ, "DISCO_HOME": str(tmp_path), "DISCO_EMBEDDINGS_BACKEND": "openai",
               "DISCO_EMBEDDINGS_BASE_URL": server.url, "OMP_NUM_THREADS": "1"}  # fmt: skip

        def disco(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [str(DISCO), "memory", *args], env=env, capture_output=True, text=True, timeout=120
            )

        stats = disco("stats", "--json")
        assert stats.returncode == 0 and json.loads(stats.stdout)["total"] == 0 and not server.requests
        cand = write(tmp_path, "c.py", get_zoo_loss("ipo").code)
        first = disco("novelty", str(cand), "--json", "--no-fingerprint")
        # IPO is a published loss: memory holds the DPO target's baselines from the first command on
        # (their texts embedded through the endpoint too)
        assert first.returncode == 1 and json.loads(first.stdout) == {
            "novel": False,
            "nearest": "baseline-dpo-ipo",
            "similarity": 1.0,
        }
        assert server.requests
        server.fail_with = 503
        archive = write(tmp_path, "a.json", json.dumps([{"code": get_zoo_loss("ipo").code, "fitness": 1}]))
        failed = disco("import", str(archive), "--target", "other")
        assert failed.returncode == 2 and failed.stderr.strip().endswith("answered HTTP 503.")
        assert "Traceback" not in failed.stderr
