"""Fault injection: `kill -9` of the runner's process group at twenty-odd random (seeded) moments, in every
step of the loop and while GPU jobs (tiny CPU jobs) are queued or training, each followed by `disco resume`.
No candidate is lost or recorded twice, none is evaluated twice, no job is launched twice, and the event log
stays one consecutive, parseable record."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

from agent_helpers import logged_events, start_cli
from test_jobs_helpers import make_model_and_data, train_config

from tools.jobs import JobQueue

SEED = 8
KILLS = 22
"""Kills in all: up to JOB_KILLS inside a training job, as the timing allows, and the rest on event counts
and start-up (the event points are drawn so that they suffice even when no job kill happens)."""
STARTUP_KILLS = 3
JOB_KILLS = 4
"""Kills while a job's training process is alive, at most (whether one trains when looked at is timing)."""
CANDIDATES = 4
EXPECTED_EVENTS = 150
"""About what the run logs at least (~25 events a candidate, its jobs, ~3 a resume; 154 when only the first
candidate earns a job): kill points spread over it, none past the end of a short run."""


def _training(jobs_root: Path) -> int:
    """Training processes of this queue alive now (the job's worker, in its own session)."""
    alive = 0
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0") if proc.name.isdigit() else []
        except OSError:
            continue
        alive += b"tools.jobs.worker" in argv and any(a.startswith(str(jobs_root).encode()) for a in argv)
    return alive


def _graph_inputs(run: Path) -> int:
    """How many times the graph was started on a new candidate (its `input` checkpoints)."""
    import sqlite3

    from langgraph.checkpoint.sqlite import SqliteSaver

    conn = sqlite3.connect(run / "checkpoints.sqlite")
    try:
        history = SqliteSaver(conn).list({"configurable": {"thread_id": run.name}})
        return sum(1 for c in history if c.metadata.get("source") == "input")
    finally:
        conn.close()


def _config(path: Path, model: Path, data: Path) -> None:
    train = train_config(model, data, max_steps=120)  # a job that lives long enough to be killed inside
    hyper = "\n".join(f"{k} = {json.dumps(v)}" for k, v in train.pop("train").items())
    head = "\n".join(f"{k} = {json.dumps(v)}" for k, v in train.items())
    path.write_text(
        f"[budget]\nmax_candidates = {CANDIDATES}\n"
        '[targets.dpo]\npreset = "tiny"\nworkers = 1\n'
        "[gpu]\nenabled = true\napproval = false\n"
        "[gpu.spec]\ngpus = 0\ntime_limit_s = 300\n"
        "[gpu.spec.resources]\ncpus = 1\n"
        "[evidence]\nstages = [2]\n"
        f"[gpu.spec.train]\n{head}\n[gpu.spec.train.train]\n{hyper}\n"
    )


def _kill_points(rng: random.Random) -> list[tuple[str, int]]:
    """Where to kill, drawn once: event counts spread over the whole run (so that every session makes
    progress), and a few kills during start-up (before the session is even logged)."""
    counts = sorted(rng.sample(range(4, EXPECTED_EVENTS), KILLS - STARTUP_KILLS))
    points = [("events", n) for n in counts]
    for _ in range(STARTUP_KILLS):
        points.insert(rng.randrange(1, len(points)), ("startup", 0))
    return points


def _job_kills(kills: list[tuple[str, str, int]]) -> int:
    return sum(1 for k in kills if k[0] == "job")


def _running_session(run: Path, proc: subprocess.Popen) -> bool:
    """Has this runner process logged its session (it is past start-up and drives the loop)?"""
    events = logged_events(run)
    sessions = [e for e in events if e["kind"] == "run" and e["payload"].get("phase") == "session"]
    return bool(sessions) and sessions[-1]["payload"].get("pid") == proc.pid


def _wait(
    point: tuple[str, int],
    rng: random.Random,
    run: Path,
    jobs_root: Path,
    p: subprocess.Popen,
    job_kills: int,
) -> str | None:
    """Wait for the next kill point, or for a job that trains (then kill somewhere inside it, once the
    runner is past start-up and follows the job); None when the run ended first."""
    mode, count = point
    deadline = time.monotonic() + 180
    if mode == "startup":
        time.sleep(rng.uniform(0.2, 2.5))
        return mode if p.poll() is None else None
    while p.poll() is None and len(logged_events(run)) < count and time.monotonic() < deadline:
        if job_kills < JOB_KILLS and _training(jobs_root) and _running_session(run, p):
            time.sleep(rng.uniform(0.0, 1.0))
            return "job" if p.poll() is None else None
        time.sleep(0.05)
    return mode if p.poll() is None else None


def test_twenty_random_kill_9s_across_steps_and_jobs_lose_and_repeat_nothing(
    tmp_path: Path, shared_cache: Path
) -> None:
    started = time.monotonic()
    home, run = tmp_path / "home", tmp_path / "home" / "runs" / "f"
    jobs_root = home / "jobs"
    model, data = make_model_and_data(tmp_path)
    config = tmp_path / "disco.toml"
    _config(config, model, data)
    env = os.environ | {"DISCO_CACHE": str(shared_cache), "DISCO_MODEL": "offline"}
    rng = random.Random(SEED)
    proc = start_cli(home, ["run", "--config", str(config), "--run-id", "f"], env)
    kills: list[tuple[str, str, int]] = []
    points = _kill_points(rng)
    try:
        while (
            points
            and len(kills) < KILLS
            and (mode := _wait(points[0], rng, run, jobs_root, proc, _job_kills(kills)))
        ):
            if mode != "job":
                points.pop(0)
            events = logged_events(run)
            where = str(events[-1]["payload"].get("node") or events[-1]["kind"]) if events else "none"
            kills.append((mode, where, _training(jobs_root)))
            os.killpg(proc.pid, signal.SIGKILL)  # the runner and all it started, as a crash would
            proc.wait()
            proc = start_cli(home, ["resume", "f"], env)
        _, err = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, err[-3000:]
    assert len(kills) >= 20, f"the run ended after only {len(kills)} kills: {kills}"
    assert sum(1 for k in kills if k[2]) >= 2, f"too few kills while a job trained: {kills}"
    assert len({k[1] for k in kills}) >= 4, f"kills not spread over the loop's steps: {kills}"

    events = logged_events(run)
    assert [e["seq"] for e in events] == list(range(len(events))), "a gap or a torn line in the event log"
    recorded = [e["candidate"] for e in events if e["kind"] == "candidate"]
    assert recorded == [f"f-{i:04d}" for i in range(1, CANDIDATES + 1)], (recorded, kills)
    folders = sorted(p.parent.name for p in (run / "candidates").glob("*/record.json"))
    assert folders == recorded, "a folder per candidate, with its record"
    evaluations = Counter(e["candidate"] for e in events if e["kind"] == "evaluation")
    assert all(n == 1 for n in evaluations.values()), f"evaluated twice: {evaluations}"
    status = json.loads((run / "status.json").read_text())
    assert status["state"] == "finished" and status["candidates"] == CANDIDATES, status
    assert _graph_inputs(run) == CANDIDATES, "a resume restarted a candidate in flight from scratch"

    job_events = [e for e in events if e["kind"] == "job" and e["payload"].get("job")]
    submitted = Counter(e["payload"]["job"] for e in job_events if "cursor" not in e["payload"])
    assert submitted and all(n == 1 for n in submitted.values()), f"a submission announced twice: {submitted}"
    per_candidate: dict[str, set[str]] = {}
    for e in job_events:
        per_candidate.setdefault(e["candidate"], set()).add(e["payload"]["job"])
    assert all(len(ids) == 1 for ids in per_candidate.values()), f"a candidate with two jobs: {per_candidate}"
    earned = {e["candidate"] for e in events if e["kind"] == "node" and e["payload"].get("node") == "gpu_job"}
    assert set(per_candidate) == earned, "every candidate routed to gpu_job has its one job, and only those"
    queue = JobQueue(jobs_root)
    jobs = {job.id: queue.wait(job.id, timeout_s=300) for job in queue.list()}
    queue.close()
    assert set(jobs) == set(submitted), "the queue holds exactly the jobs the run announced"
    assert all(j.launches == 1 for j in jobs.values()), {i: j.launches for i, j in jobs.items()}
    assert all(j.state == "succeeded" for j in jobs.values()), {
        i: (j.state, j.reason) for i, j in jobs.items()
    }
    print(f"{len(kills)} kills in {time.monotonic() - started:.0f} s: {kills}")
