"""Progress, never silence (issue 19.7): a first `disco run` on a cold cache builds the toy task, its SFT
model and DPO's baseline runs inside the first evaluation, which used to print nothing for minutes after
"#0001 checks pass". Now the run says what it is doing (n of N, time left) and never stays silent for
more than 10 s while a step runs. The real command, its stderr read line by line as a person sees it."""

from __future__ import annotations

import itertools
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from agent_helpers import REPO

QUIET_S = 8.0
SLACK_S = 2.0  # the issue: progress at least every 10 s
"""The heartbeat speaks after 8 s of silence and looks every second; a line takes a moment to arrive."""


def test_a_first_run_on_a_cold_cache_is_never_silent(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "DISCO_MODEL"))}
    env |= {"DISCO_CACHE": str(tmp_path / "cold-cache"), "COLUMNS": "200"}
    cmd = [sys.executable, "-m", "agent.cli", "--home", str(tmp_path / "home"), "run"]
    cmd += ["--model", "offline", "--preset", "tiny", "--max-candidates", "1", "--run-id", "cold"]
    proc = subprocess.Popen(
        cmd, cwd=REPO, env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True
    )
    lines: list[tuple[float, str]] = []

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append((time.monotonic(), line.rstrip("\n")))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert proc.wait(timeout=600) == 0, "\n".join(text for _, text in lines)[-3000:]
    finally:
        proc.kill()
    reader.join(10)
    text = "\n".join(t for _, t in lines)
    start = next(i for i, (_, t) in enumerate(lines) if "designed" in t)
    end = next(i for i, (_, t) in enumerate(lines) if "evaluated in" in t)
    window = lines[start : end + 1]
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(window)]
    assert max(gaps) <= QUIET_S + SLACK_S, f"silent for {max(gaps):.1f} s:\n{text}"
    assert "DPO's baseline runs, once for this preset" in text, text
    assert "starting the training workers (the toy task and its SFT model are built once" in text
    assert "DPO's baseline runs: 1 of 1 done" in text, "n of N (the tiny preset trains one run each)"
    assert re.search(r"training \w+: 1 of 1 done", text), "the candidate's own runs are counted too"
    evaluated_after = float(lines[end][1].split("evaluated in ")[1].split(" s")[0])
    if evaluated_after > QUIET_S + SLACK_S:  # a slow first evaluation: the heartbeat must have spoken
        assert "#0001 evaluating… " in text, text


def test_the_heartbeat_names_the_step_and_what_it_does(capsys: pytest.CaptureFixture[str]) -> None:
    from agent.commands.run import ConsoleProgress
    from agent.events import Event

    console = ConsoleProgress(quiet_s=0.4)

    def event(kind: str, **payload: object) -> Event:
        return Event(seq=0, run="r", kind=kind, candidate="r-0007", payload=payload)  # type: ignore[arg-type]

    console(event("node", node="evaluate", phase="enter"))
    console(event("progress", what="DPO's baseline runs: 2 of 8 done, ~60 s left", done=2, total=8))
    time.sleep(1.5)
    console(event("node", node="evaluate", phase="leave", seconds=1.5))
    said = capsys.readouterr().err
    assert "#0007 DPO's baseline runs: 2 of 8 done, ~60 s left" in said
    heartbeat = [line for line in said.splitlines() if "#0007 evaluating… " in line]
    assert heartbeat and "s: DPO's baseline runs" in heartbeat[0], said
    time.sleep(1.0)
    assert capsys.readouterr().err == "", "no heartbeat between steps"


def test_an_estimate_comes_from_the_pace_so_far() -> None:
    from targets.progress import Counter, progress_to

    said: list[tuple[str, int | None, int | None]] = []
    with progress_to(lambda what, done, total: said.append((what, done, total))):
        counter = Counter("training x")
        counter.started -= 10.0  # ten seconds in
        counter(2, 4)
        counter(4, 4)
    assert said[0][0].startswith("training x: 2 of 4 done, ~") and said[0][0].endswith(" s left")
    assert 9 <= float(said[0][0].split("~")[1].split(" s")[0]) <= 11
    assert said[1] == ("training x: 4 of 4 done", 4, 4)


def test_resume_says_at_once_what_it_picks_up(tmp_path: Path) -> None:
    """`disco resume` used to print nothing for ~60 s (imports, checks, loading the target)."""
    from agent.config import load_config
    from agent.events import CandidatePayload, EventLog, NodePayload
    from agent.runs import RunStatus, create_run

    home = tmp_path / "home"
    run = create_run(home / "runs", load_config(None, {"budget": {"max_candidates": 5}}, env={}), "halfway")
    log = EventLog(run.events_path, run.run_id)
    for cid, last in (("halfway-0001", "record"), ("halfway-0002", "evaluate")):
        for node in ("design", "check", "evaluate", "record")[: 4 if last == "record" else 3]:
            log.append(NodePayload(node=node, phase="enter"), cid)
        if last == "record":
            run.write_candidate_file(cid, "record.json", {"id": cid, "status": "evaluated"})
            log.append(CandidatePayload(name="n", status="evaluated"), cid)
    run.write_status(RunStatus(state="stopped", reason="stopped by you (Ctrl-C)"))

    cmd = [sys.executable, "-m", "agent.cli", "--home", str(home), "resume", "halfway"]
    started = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=REPO, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    try:
        assert proc.stderr is not None
        first = proc.stderr.readline().strip()
        seconds = time.monotonic() - started
    finally:
        proc.kill()
        proc.wait()
    assert first == (
        "resuming run halfway (stopped: stopped by you (Ctrl-C)): 1 candidate recorded; "
        "#0002 goes on from its evaluate step"
    )
    assert seconds < 8, f"the first line took {seconds:.1f} s"


def test_the_data_dir_is_found_from_a_subdirectory_like_git(tmp_path: Path) -> None:
    """Runs used to seem to vanish after a `cd` (issue 19.10): the data dir was `./.disco`, relative."""
    from agent.config import load_config
    from agent.runs import create_run

    project = tmp_path / "project"
    (project / ".git").mkdir(parents=True)
    create_run(project / ".disco" / "runs", load_config(None, {}, env={}), "at-the-top")
    deeper = project / "notebooks" / "week1"
    deeper.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if k not in ("DISCO_HOME", "DISCO_CACHE")}
    env["PYTHONPATH"] = str(REPO)
    cmd = [sys.executable, "-m", "agent.cli", "runs", "list"]
    listed = subprocess.run(cmd, cwd=deeper, env=env, capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0, listed.stderr
    assert "at-the-top" in listed.stdout
    assert f"runsin{project / '.disco' / 'runs'}" in "".join(listed.stdout.split()), "it says where"

    outside = tmp_path / "elsewhere"  # no .disco up to its root (the .git above stops the search)
    (outside / ".git").mkdir(parents=True)
    listed = subprocess.run(cmd, cwd=outside, env=env, capture_output=True, text=True, timeout=120)
    assert "at-the-top" not in listed.stdout
    assert f"runsin{outside / '.disco' / 'runs'}" in "".join(listed.stdout.split())
