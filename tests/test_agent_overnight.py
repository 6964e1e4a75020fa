"""Running for hours unattended: budgets on CPU and GPU time (and the wall-clock and cost flags), an endpoint
that is down for a while or for good, a disk that fills up mid-run, a job that breaks."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from agent_helpers import REPO, cli, distinct, events, recorded, running, scripted_model, start, tiny_config
from agent_helpers import wait_for as wait_until
from fake_openai import Error, FakeOpenAI, Trickle, free_port
from test_jobs_helpers import make_model_and_data, train_config

from agent.control import parse_command, send
from agent.events import EventLog, JobPayload, read_events
from agent.report.taxonomy import failures
from agent.runner import Runner
from agent.runs import create_run
from tui.view import Tracker


def model_config(base_url: str, **endpoint: object) -> dict:
    meta = {"model": "fake-model", "base_url": base_url, "api_key": "k", "timeout_s": 5, "max_retries": 0}
    wait = {"backoff_s": [0.05, 0.05], "probe_every_s": 0.3, "max_wait_hours": 0.05} | endpoint
    return {"models": {"meta": meta}, "endpoint": wait}


def test_an_endpoint_down_for_a_while_pauses_the_run_which_goes_on_by_itself(home: Path) -> None:
    answer = scripted_model(distinct)
    down_until = [time.monotonic() + 1e9]

    def flaky(body: dict) -> object:
        return Error(500, "the server is restarting") if time.monotonic() < down_until[0] else answer(body)

    with FakeOpenAI() as server:
        server.default = flaky
        config = tiny_config(budget={"max_candidates": 1}, **model_config(server.base_url))
        runner, run = start(home / "runs", config, "outage")
        with running(runner, run) as thread:
            assert wait_until(lambda: run.status().state == "paused", 60), run.status()
            reason = run.status().reason
            assert "model endpoint down" in reason and "retried every 0.3 s" in reason, reason
            send(run.control_path, parse_command("hint", "keep the margin small"))  # control works meanwhile
            assert wait_until(lambda: any("command" in e.payload for e in events(run, "human")), 30)
            probes_before = len(events(run, "error"))
            assert wait_until(lambda: len(events(run, "error")) >= probes_before + 2, 30), "it keeps probing"
            down_until[0] = time.monotonic()  # the endpoint comes back
            thread.join(240)
    status = run.status()
    assert status.state == "finished", status
    assert recorded(run) == ["outage-0001"]
    messages = [e.payload.get("message", "") for e in events(run, "human") if e.payload.get("auto")]
    assert messages[0].startswith("paused: the model endpoint is down")
    assert messages[-1].startswith("the model endpoint answers again after")
    design = next(
        e for e in events(run, "node") if e.payload.get("node") == "design" and "hints_used" in e.payload
    )
    assert design.payload["hints_used"] == ["keep the margin small"]


def test_a_stalled_endpoint_is_slow_not_down_and_the_run_goes_on_when_it_answers(home: Path) -> None:
    """A server that takes the request and then sends no token for timeout_s is "slow": said so in the
    status, the events, the progress view and the report's failures, apart from "down"; the call is not
    re-sent at once (the server may still be busy with it), and the run goes on when tokens flow again."""
    answer = scripted_model(distinct)
    stalling = [True]

    def stall(body: dict) -> object:
        reply = answer(body)
        return Trickle(reply, gap_s=0.01, stall_after=3, stall_s=1.5) if stalling[0] else reply

    with FakeOpenAI() as server:
        server.default = stall
        config = tiny_config(budget={"max_candidates": 1}, **model_config(server.base_url, timeout_s=0.4))
        config.models.meta.timeout_s = 0.4
        runner, run = start(home / "runs", config, "slow")
        with running(runner, run) as thread:
            assert wait_until(lambda: run.status().endpoint == "slow", 60), run.status()
            assert "model endpoint slow" in run.status().reason
            assert wait_until(lambda: len(events(run, "error")) >= 2, 30)
            stalling[0] = False
            thread.join(240)
    status = run.status()
    assert status.state == "finished" and status.endpoint == "ok", status
    assert recorded(run) == ["slow-0001"]
    errors = events(run, "error")
    assert {(e.payload["error_kind"], e.payload["endpoint"]) for e in errors} == {("timeout", "slow")}
    assert "none for 0.4 s after 2" in errors[0].payload["message"]
    assert len(server.requests) <= len(errors) + 8  # one request per try: a stall is never re-sent at once
    tracker = Tracker("slow")
    lines = [line.text for e in read_events(run.events_path) for line in tracker.feed(e)]
    assert any(t.startswith("model endpoint slow: ") for t in lines), lines
    kinds = {f.kind for f in failures(run, [], read_events(run.events_path))}
    assert "model endpoint slow" in kinds and "model endpoint down" not in kinds


def test_an_endpoint_that_never_comes_back_stops_the_run_in_bounded_time(home: Path) -> None:
    config = tiny_config(**model_config(f"http://127.0.0.1:{free_port()}/v1", max_wait_hours=2 / 3600))
    runner, run = start(home / "runs", config, "gone")
    started = time.monotonic()
    status = runner.execute()
    assert time.monotonic() - started < 60
    assert status.state == "stopped", status
    assert "model endpoint has been failing for" in status.reason and "limit" in status.reason
    assert "disco resume gone" in status.reason
    kinds = {e.payload.get("error_kind") for e in events(run, "error")}
    assert kinds == {"unreachable"} and len(events(run, "error")) >= 4  # first try, 2 back-offs, probes
    assert recorded(run) == []


def test_cpu_budget_flag_stops_the_run_and_the_seconds_are_counted(home: Path, shared_cache: Path) -> None:
    env = {"DISCO_CACHE": str(shared_cache), "DISCO_MODEL": "offline"}
    args = ("run", "--run-id", "cpu", "--preset", "tiny", "--max-candidates", "5", "--quiet")
    proc = cli(home, *args, "--max-cpu-hours", "0.00001", env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    status = json.loads((home / "runs" / "cpu" / "status.json").read_text())
    assert status["state"] == "stopped" and status["reason"].startswith("CPU budget reached"), status
    evs = [json.loads(line) for line in (home / "runs" / "cpu" / "events.jsonl").read_text().splitlines()]
    spent = sum(e["payload"]["seconds"] for e in evs if e["kind"] == "evaluation")
    nodes = [e["payload"] for e in evs if e["kind"] == "node" and e["payload"].get("phase") == "leave"]
    spent += sum(p["seconds"] for p in nodes if p["node"] in ("check", "confirm"))  # checks, extra seeds
    assert status["cpu_s"] == pytest.approx(spent, abs=0.05) and status["cpu_s"] > 0.036
    assert status["candidates"] < 5
    before = status["cpu_s"]
    proc = cli(home, "resume", "cpu", "--quiet", env=env)  # the CPU budget is still used up
    assert proc.returncode == 0, proc.stderr[-2000:]
    status = json.loads((home / "runs" / "cpu" / "status.json").read_text())
    assert status["cpu_s"] >= before, "the seconds come back from the event log"
    assert status["reason"].startswith("CPU budget reached")


def test_wall_clock_and_cost_flags_stop_the_run(home: Path, shared_cache: Path, tmp_path: Path) -> None:
    env = {"DISCO_CACHE": str(shared_cache), "DISCO_MODEL": "offline"}
    proc = cli(
        home, "run", "--run-id", "clock", "--preset", "tiny", "--hours", "0.000001", "--quiet", env=env
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "time budget reached" in proc.stderr
    with FakeOpenAI() as server:
        server.default = scripted_model(distinct)
        config = tmp_path / "priced.toml"
        config.write_text(
            f'[models.meta]\nmodel = "fake-model"\nbase_url = "{server.base_url}"\napi_key = "k"\n'
            "usd_per_mtok_in = 1000000.0\n"
        )
        env.pop("DISCO_MODEL")
        args = ("run", "--run-id", "usd", "--config", str(config), "--preset", "tiny", "--quiet")
        proc = cli(home, *args, "--max-usd", "5", env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    status = json.loads((home / "runs" / "usd" / "status.json").read_text())
    assert status["state"] == "stopped" and status["reason"].startswith("cost budget reached"), status
    assert status["usd"] >= 5 and status["candidates"] == 0


def test_gpu_hours_of_earlier_sessions_count_against_the_gpu_budget(home: Path) -> None:
    config = tiny_config(budget={"max_gpu_hours": 1.0})
    run = create_run(home / "runs", config, "gpuh")
    # What an earlier session wrote about a 2-GPU job that ran for an hour.
    EventLog(run.events_path, run.run_id).append(
        JobPayload(job="job-0123456789abcdef", state="succeeded", cursor={}, cpu_s=0.0, gpu_s=7200.0),
        "gpuh-0001",
    )
    status = Runner(run, config, poll_s=0.05).execute()
    assert status.state == "stopped" and status.reason == "GPU budget reached: 2.000 h of 1.0 h"
    assert status.gpu_s == 7200.0 and recorded(run) == []


def test_a_broken_job_is_recorded_with_its_state_and_the_run_goes_on(home: Path, tmp_path: Path) -> None:
    model, data = make_model_and_data(tmp_path)
    spec = {"train": train_config(model, data), "gpus": 0, "resources": {"cpus": 1}, "time_limit_s": 1}
    config = tiny_config(gpu={"enabled": True, "spec": spec}, budget={"max_candidates": 2})
    runner, run = start(home / "runs", config, "brokenjob")
    runner.jobs.every_s = 0.2
    status = runner.execute()
    assert status.state == "finished" and recorded(run) == ["brokenjob-0001", "brokenjob-0002"]
    states = [e.payload["state"] for e in events(run, "job") if e.payload.get("job")]
    assert "failed:timeout" in states, states
    failed = next(e for e in events(run, "job") if e.payload.get("state") == "failed:timeout")
    assert "time limit of 1 s" in failed.payload["reason"] and failed.payload["cpu_s"] >= 0


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 MiB tmpfs as the data dir: a real disk that really fills up."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mount)], capture_output=True
    )
    assert done.returncode == 0, f"cannot mount a tmpfs (needs root): {done.stderr.decode()}"
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(path: Path) -> None:
    """Take every free byte, once: a filler that kept retrying would also eat what the runner frees."""
    import os

    stat = os.statvfs(path.parent)
    left = stat.f_bavail * stat.f_frsize
    with path.open("wb", buffering=0) as handle:
        try:
            while left > 0:
                left -= handle.write(b"\x5a" * min(left, 1 << 20))
        except OSError:
            pass


def test_a_full_disk_stops_the_run_cleanly_and_resume_goes_on(small_disk: Path, shared_cache: Path) -> None:
    home = small_disk / "home"
    env = {"DISCO_CACHE": str(shared_cache), "DISCO_MODEL": "offline"}
    cmd = ["run", "--run-id", "full", "--preset", "tiny", "--max-candidates", "2", "--quiet"]
    proc = subprocess.Popen(
        [*cli_argv(home), *cmd], cwd=REPO, env=env_with(env), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    run = home / "runs" / "full"
    assert wait_until(lambda: _recorded(run) >= 1, 240), "the first candidate is recorded"
    filler = small_disk / "filler"
    filler_thread = threading.Thread(target=_fill, args=(filler,))
    filler_thread.start()
    _, err = proc.communicate(timeout=240)
    filler_thread.join()
    assert b"Traceback" not in err, err.decode()[-3000:]
    status = json.loads((run / "status.json").read_text())
    assert status["state"] == "stopped", status
    assert "the disk is full" in status["reason"] and "disco resume full" in status["reason"]
    kept = _recorded(run)
    assert kept >= 1
    filler.unlink()
    proc2 = cli(home, "resume", "full", "--quiet", env=env)
    assert proc2.returncode == 0, proc2.stderr[-3000:]
    status = json.loads((run / "status.json").read_text())
    assert status["state"] == "finished", status
    evs = [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()]
    assert [e["seq"] for e in evs] == list(range(len(evs))), "no torn or lost lines"
    cands = [e["candidate"] for e in evs if e["kind"] == "candidate"]
    assert cands == ["full-0001", "full-0002"]
    evaluated = [e["candidate"] for e in evs if e["kind"] == "evaluation"]
    assert len(evaluated) == len(set(evaluated))
    assert any(e["kind"] == "error" and e["payload"].get("error_kind") == "disk_full" for e in evs)


def _recorded(run: Path) -> int:
    path = run / "events.jsonl"
    if not path.exists():
        return 0
    return sum(1 for line in path.read_bytes().splitlines() if b'"kind":"candidate"' in line)


def cli_argv(home: Path) -> list[str]:
    import sys

    return [sys.executable, "-m", "agent.cli", "--home", str(home)]


def env_with(extra: dict[str, str]) -> dict[str, str]:
    import os

    return os.environ | extra
