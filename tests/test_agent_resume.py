"""`kill -9` of the runner at many points of the loop, each followed by `disco resume`: every candidate is
recorded exactly once, none is evaluated twice, and the run ends as if it had never been killed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from agent_helpers import REPO, logged_events, start_cli

KILL_AT_EVENTS = (5, 12, 19, 27, 34, 43, 51, 60)
"""Event counts at which the runner is killed: spread over design, reflect, check, evaluate and record
of different candidates (a tiny-preset candidate writes about 20 events)."""


def _kill_group(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGKILL)  # the runner and everything it started, as a crash would
    proc.wait()


def test_kill_9_at_any_step_then_resume_records_every_candidate_once(
    tmp_path: Path, shared_cache: Path
) -> None:
    home, run = tmp_path / "home", tmp_path / "home" / "runs" / "k9"
    config = tmp_path / "disco.toml"
    config.write_text(
        '[budget]\nmax_candidates = 4\n[targets.dpo]\npreset = "tiny"\nworkers = 1\n'
        "[evidence]\nstages = [2]\n"
    )
    env = os.environ | {"DISCO_CACHE": str(shared_cache), "DISCO_MODEL": "offline"}
    proc = start_cli(home, ["run", "--config", str(config), "--run-id", "k9"], env)
    kills = []
    for threshold in KILL_AT_EVENTS:
        deadline = time.monotonic() + 180
        while len(logged_events(run)) < threshold and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        if proc.poll() is not None:
            break
        last = logged_events(run)[-1]
        kills.append((last["kind"], last["payload"].get("node"), last["payload"].get("phase")))
        _kill_group(proc)
        proc = start_cli(home, ["resume", "k9"], env)

    # Then a kill just after each later candidate's passing check: the record is written by another process.
    def passed_checks() -> list[str]:
        return [e["candidate"] for e in logged_events(run) if e["kind"] == "check" and e["payload"]["passed"]]

    killed_after_check = set(passed_checks())
    deadline = time.monotonic() + 600
    while proc.poll() is None and time.monotonic() < deadline:
        fresh = [c for c in passed_checks() if c not in killed_after_check]
        if not fresh:
            time.sleep(0.02)
            continue
        killed_after_check.add(fresh[-1])
        kills.append(("check", fresh[-1], "passed"))
        _kill_group(proc)
        proc = start_cli(home, ["resume", "k9"], env)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-2000:]
    assert len(kills) >= 6, f"the run ended before enough kills: {kills}"

    events = logged_events(run)
    recorded = [e["candidate"] for e in events if e["kind"] == "candidate"]
    assert recorded == ["k9-0001", "k9-0002", "k9-0003", "k9-0004"], (recorded, kills)
    evaluations = [e["candidate"] for e in events if e["kind"] == "evaluation"]
    assert len(evaluations) == len(set(evaluations)), f"evaluated twice: {evaluations}"
    sessions = [e for e in events if e["kind"] == "run" and e["payload"].get("phase") == "session"]
    # A resume killed while still importing never writes its session event: that is a kill point too.
    assert 2 <= len(sessions) <= len(kills) + 1
    assert [e["seq"] for e in events] == list(range(len(events))), "the event log has no gaps or torn lines"
    status = json.loads((run / "status.json").read_text())
    assert status["state"] == "finished" and status["candidates"] == 4
    folders = sorted(p.parent.name for p in (run / "candidates").glob("*/record.json"))
    assert folders == recorded
    shown = subprocess.run(
        [sys.executable, "-m", "agent.cli", "--home", str(home), "runs", "show", "k9", "--json"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        check=True,
    )
    assert [c["id"] for c in json.loads(shown.stdout)["candidates"]] == recorded
    # The fingerprint a passing check computed reaches the record, also across a kill between the two
    # (it travels in the checkpointed state; the target that computed it died with the runner).
    from agent.home import set_home
    from agent.session import open_store

    session_seqs = [e["seq"] for e in sessions]
    records = [e for e in events if e["kind"] == "candidate"]
    record_seq = {e["candidate"]: e["seq"] for e in records}
    evaluated = {e["candidate"] for e in records if e["payload"]["status"] == "evaluated"}
    checks = [e for e in events if e["kind"] == "check" and e["candidate"] in evaluated]
    checked = {e["candidate"]: e["seq"] for e in checks}
    across = [c for c, seq in checked.items() if any(seq < s < record_seq[c] for s in session_seqs)]
    assert across, f"no kill fell between a check and its record: {kills}"
    set_home(home)
    try:
        store = open_store()
        prints = {c: store.fingerprint_of(c, "dpo") for c in checked}
    finally:
        set_home(None)
    missing = [c for c, p in prints.items() if p is None or len(p) != 351]
    assert prints and not missing, f"recorded without their fingerprint: {missing}"
