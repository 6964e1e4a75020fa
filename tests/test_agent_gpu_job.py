"""A candidate that beats the run's best earns a real DPO job; in approval mode the graph is interrupted
(LangGraph `interrupt`) until the person approves, and the job runs on the job queue (CPU here)."""

from __future__ import annotations

from pathlib import Path

import pytest
from agent_helpers import events, running, start, tiny_config, wait_for
from test_jobs_helpers import make_model_and_data, train_config

from agent.control import parse_command, send
from tools.jobs import JobQueue


def test_gpu_job_waits_for_approval_then_runs_on_the_queue(home: Path, tmp_path: Path) -> None:
    model, data = make_model_and_data(tmp_path)
    spec = {
        "train": train_config(model, data),
        "gpus": 0,
        "resources": {"cpus": 1, "memory_gb": 6},
        "time_limit_s": 180,
    }
    config = tiny_config(gpu={"enabled": True, "approval": True, "spec": spec}, budget={"max_candidates": 1})
    runner, run = start(home / "runs", config, "gpu")
    with running(runner, run) as thread:
        assert wait_for(lambda: run.status().state == "waiting", 240), run.status()
        assert "waiting for approval" in run.status().reason
        assert not [e for e in events(run, "job") if e.payload.get("job")], "nothing launched before approval"
        send(run.control_path, parse_command("approve"))
        thread.join(240)
    assert run.status().state == "finished", run.status()
    job_events = [e for e in events(run, "job") if e.payload.get("job")]
    launched = job_events[0]
    assert launched.candidate == "gpu-0001" and launched.payload["message"] == "GPU DPO job submitted"
    assert {e.payload["job"] for e in job_events} == {launched.payload["job"]}, "one job, launched once"
    queue = JobQueue(home / "jobs")
    job = queue.wait(launched.payload["job"], timeout_s=180)
    assert job.state == "succeeded", (job.state, job.reason)
    consumed = [e.payload.get("consumed") for e in events(run, "human") if e.payload.get("consumed")]
    assert consumed == ["approve"]
    queue.close()


@pytest.mark.parametrize("decision", ["deny"])
def test_a_denied_gpu_job_is_not_launched(home: Path, tmp_path: Path, decision: str) -> None:
    config = tiny_config(
        gpu={"enabled": True, "approval": True, "spec": {"train": {"model": "x"}}},
        budget={"max_candidates": 1},
    )
    runner, run = start(home / "runs", config, "denied")
    send(run.control_path, parse_command(decision))
    assert runner.execute().state == "finished"
    assert [e.payload["state"] for e in events(run, "job")] == ["denied"]
