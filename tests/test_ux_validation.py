"""Every user-given name is checked (issue 19.6): run ids are safe slugs (no path traversal), pins and
vetoes name candidates that exist, and `disco bench losses` keeps one row per input file."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from agent_helpers import cli
from test_tui_helpers import RUN_ID, commands, live_run, text_of, until

from agent.control import ControlError, check_candidate, parse_command
from agent.runs import RunDir, RunError, RunMeta, check_run_id
from targets.dpo.commands import resolve_losses
from tui.commands import ControlAction, parse_input
from tui.services import RunSource

CLEAN_ENV = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "DISCO_"))}
ATTACK_IDS = ["../../evil", "/tmp/disco-evil-abs", "a/b", "..", ".hidden", "x" * 101, "", "r1\n", "r 1"]


@pytest.mark.parametrize("run_id", ATTACK_IDS)
def test_a_run_id_must_be_a_slug(run_id: str) -> None:
    with pytest.raises(RunError, match="is not allowed"):
        check_run_id(run_id)


def test_ordinary_run_ids_pass() -> None:
    for run_id in ("r1", "20250101-120000-ab12", "my_run.v2", "A-b_c.d"):
        assert check_run_id(run_id) == run_id


@pytest.mark.parametrize("run_id", ["../../evil", "/tmp/disco-evil-abs", "a/b", ".."])
def test_disco_run_refuses_a_run_id_that_leaves_the_runs_folder(tmp_path: Path, run_id: str) -> None:
    env = CLEAN_ENV | {"DISCO_MODEL": "offline"}
    proc = cli(tmp_path / "home", "run", "--run-id", run_id, "--max-candidates", "1", env=env)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"run id {run_id!r} is not allowed: use up to 100 letters, digits, '.', '_' or '-', "
        "starting with a letter or digit."
    ]
    assert not (tmp_path / "evil").exists() and not Path("/tmp/disco-evil-abs").exists()
    assert not (tmp_path / "home").exists(), "nothing recorded"


@pytest.mark.parametrize(
    "args",
    [
        ["runs", "show", "../../evil"],
        ["resume", "../../evil"],
        ["control", "../../evil", "stop"],
        ["report", "../../evil"],
        ["tui", "--run-id", "../../evil"],
    ],
)
def test_no_command_opens_a_run_outside_the_runs_folder(tmp_path: Path, args: list[str]) -> None:
    outside = tmp_path / "evil"  # <home>/runs/../../evil
    RunDir.create(tmp_path, RunMeta(run_id="evil", target="dpo", model="offline"))
    before = sorted(p.name for p in outside.iterdir())
    proc = cli(tmp_path / "home", *args, env=CLEAN_ENV)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "run id '../../evil' is not allowed" in proc.stderr
    assert sorted(p.name for p in outside.iterdir()) == before, "the outside run was not touched"


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    """Run r1 with candidates #1 and #2, and an older run with #3."""
    root = tmp_path / "home" / "runs"
    for run_id, cids in (("r1", ["r1-0001", "r1-0002"]), ("old", ["old-0003"])):
        run = RunDir.create(root, RunMeta(run_id=run_id, target="dpo", model="offline"))
        for cid in cids:
            run.write_candidate_file(cid, "design.py", "def loss(): ...")
    return root


@pytest.mark.parametrize(
    ("action", "arg", "refused"),
    [
        ("veto", "r1-0099", "no candidate 'r1-0099' in run r1, another run or memory"),
        ("pin", "r1-0003", "no candidate 'r1-0003' in run r1"),
        ("veto", "other-0001", "no candidate 'other-0001'"),
        ("veto", "../../etc", "`veto` takes a candidate id such as r1-0003"),
        ("pin", "/etc/passwd", "`pin` takes a candidate id"),
        ("veto", "r1-0002", None),
        ("pin", "r1-0001", None),
        ("pin", "old-0003", None),  # a candidate of an earlier run in the same data dir
    ],
)
def test_pins_and_vetoes_name_existing_candidates(
    runs: Path, action: str, arg: str, refused: str | None
) -> None:
    proc = cli(runs.parent, "control", "r1", action, arg, env=CLEAN_ENV)
    sent = runs / "r1" / "control.jsonl"
    if refused:
        assert proc.returncode == 2 and proc.stderr.strip().splitlines()[0].startswith(refused), proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1 and not sent.exists()
    else:
        assert proc.returncode == 0, proc.stderr
        assert json.loads(sent.read_text())["arg"] == arg


def test_the_tui_resolves_then_checks_the_candidate(runs: Path) -> None:
    source = RunSource(RunDir(runs / "r1"))
    typed = parse_input("/veto 99", "r1")
    assert isinstance(typed, ControlAction) and typed.command.arg == "r1-0099"
    why = source.refusal(typed.command)
    assert why is not None and why.startswith("no candidate 'r1-0099' in run r1")
    assert "r1-0001 … r1-0002" in why, "it says which candidates there are"
    typed = parse_input("/pin 2", "r1")
    assert isinstance(typed, ControlAction) and source.refusal(typed.command) is None


@pytest.mark.anyio
async def test_veto_of_a_missing_candidate_in_the_app_sends_nothing(home: Path) -> None:
    from tui.app import make_app

    run = live_run(home)  # candidates #1 … #4
    app = make_app(home, RUN_ID, poll_s=0.05)
    async with app.run_test(size=(160, 50)) as pilot:
        await until(pilot, lambda: getattr(app.screen, "updates", 0) > 0, what="a run update")
        prompt = app.screen.query_one("#prompt")
        prompt.focus()
        prompt.value = "/veto 99"
        await pilot.press("enter")
        await until(pilot, lambda: f"no candidate '{RUN_ID}-0099'" in text_of(app), what="the refusal")
        assert commands(run) == [] and not app.screen.sent
        prompt.value = "/veto 4"
        await pilot.press("enter")
        await until(pilot, lambda: commands(run) == [("veto", f"{RUN_ID}-0004", "tui")], what="the veto")


class TrigramEmbedder:
    """A real (crude) text embedder: hashed character trigrams, so that memory works without MiniLM."""

    key = "trigram-32"

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), 32), dtype=np.float32)
        for row, text in enumerate(texts):
            for i in range(max(1, len(text) - 2)):
                out[row, hashlib.blake2b(text[i : i + 3].encode(), digest_size=2).digest()[0] % 32] += 1
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


def test_a_candidate_known_only_to_memory_can_be_pinned(runs: Path) -> None:
    from memory.records import CandidateRecord
    from memory.store import MemoryStore

    memory = runs.parent / "memory"
    code = "def imported_loss(self, a, b, c, d):\n    return a - b\n"
    record = CandidateRecord(
        id="elsewhere-0007", target="dpo", run_id="elsewhere", name="imported", code=code
    )
    MemoryStore(memory, embedder=TrigramEmbedder()).record(record)
    check_candidate(runs, "r1", parse_command("pin", "elsewhere-0007"), memory)
    with pytest.raises(ControlError, match="no candidate 'elsewhere-0008'"):
        check_candidate(runs, "r1", parse_command("pin", "elsewhere-0008"), memory)


def _files(root: Path, *names: str) -> str:
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(f"# {name}\n")
    return ",".join(str(root / n) for n in names)


@pytest.mark.parametrize(
    ("given", "rows"),
    [
        (["c0001/design.py", "c0002/design.py"], ["c0001/design", "c0002/design"]),
        (["a/x/design.py", "b/x/design.py", "b/y.py"], ["a/x/design", "b/x/design", "y"]),
        (["one/dpo.py"], ["one/dpo"]),  # never mistaken for the DPO baseline
        (["ipo", "mine/ipo.py"], ["ipo", "mine/ipo"]),  # a file named like a zoo loss it is listed with
        (["c0001/design.py", "c0001/design.py"], ["design"]),  # the same file twice: one row
        (["solo/design.py"], ["design"]),
    ],
)
def test_bench_inputs_keep_distinct_names(tmp_path: Path, given: list[str], rows: list[str]) -> None:
    files = [g for g in given if g.endswith(".py")]
    _files(tmp_path, *files)
    spec = ",".join(g if not g.endswith(".py") else str(tmp_path / g) for g in given)
    chosen = resolve_losses(spec)
    assert list(chosen) == rows
    for name, path in zip(rows, dict.fromkeys(given), strict=True):
        if path.endswith(".py"):
            assert chosen[name] == f"# {path}\n", "each row holds its own file's code"
