"""The Ray backend against a real local Ray cluster on 127.0.0.1, started once for this module (ray is in
the dev extra: a missing install fails here, it is not skipped).

The cluster runs `ray start --head --block` in its own session, so that the test can stop exactly the
processes it started (SIGINT to that process, which takes its daemons down with it).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from test_jobs_helpers import DPO, HANG, NAN, job_spec, make_model_and_data, submitter_argv, wait_for

from tools.jobs import JobQueue

RAY = Path(sys.executable).with_name("ray")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cluster() -> str:
    port = free_port()
    temp = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))  # unix socket paths must stay short
    argv = [
        str(RAY), "start", "--head", "--block", "--node-ip-address", "127.0.0.1", "--port", str(port),
        "--num-cpus", "2", "--num-gpus", "0", "--object-store-memory", str(80 * 2**20),
        "--include-dashboard", "false", "--disable-usage-stats", "--temp-dir", str(temp),
    ]  # fmt: skip
    head = subprocess.Popen(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, cwd=temp
    )
    address = f"127.0.0.1:{port}"
    try:
        wait_for(lambda: _reachable(port), 60, "the Ray head to listen")
        yield address
    finally:
        import ray

        if ray.is_initialized():
            ray.shutdown()
        head.send_signal(signal.SIGINT)
        try:
            head.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait()
        shutil.rmtree(temp, ignore_errors=True)


def _reachable(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="module")
def world(cluster, tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("jobs-ray")
    model, data = make_model_and_data(tmp)
    node_dir = tmp / "nodes"
    specs = {"ok": job_spec("dpo", DPO, model, data), "nan": job_spec("always_nan", NAN, model, data)}
    config = {"address": cluster, "node_dir": str(node_dir)}
    # The driver that submits exits at once: the detached actors keep the jobs running.
    proc = subprocess.run(
        submitter_argv(tmp / "jobs", list(specs.values()), "ray", config, hang=False),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    ids = proc.stdout.split()[: len(specs)]
    return {
        "tmp": tmp,
        "model": model,
        "data": data,
        "specs": specs,
        "ids": dict(zip(specs, ids, strict=True)),
    }


def test_jobs_run_on_the_cluster_after_their_driver_exited(world):
    queue = JobQueue(world["tmp"] / "jobs", backend="ray")  # the address was stored by the submitter
    job = queue.wait(world["ids"]["ok"], timeout_s=150)
    assert job.state == "succeeded", (job.reason, job.traceback)
    assert job.backend == "ray" and job.launches == 1
    assert job.resources is not None and job.resources.host == socket.gethostname()
    assert job.metrics["steps"] == 6 and job.metrics["final_loss"] < 0.6932
    # The log and metrics came back from the node into the local folder, as on the local backend.
    lines, _ = queue.logs(job.id)
    assert any("[train] step 6/6" in line for line in lines)
    assert any("network: none" in line for line in lines)
    records, _ = queue.metrics(job.id)
    assert [r["step"] for r in records if r["kind"] == "train"] == [2, 4, 6]
    assert {"metrics.json", "result.json"} <= set(job.artefacts)


def test_failures_are_classified_on_ray_too(world):
    queue = JobQueue(world["tmp"] / "jobs", backend="ray")
    job = queue.wait(world["ids"]["nan"], timeout_s=150)
    assert job.state == "failed:nan" and "non-finite at step 1" in job.reason


def test_resubmission_does_not_start_a_second_actor(world):
    import ray

    queue = JobQueue(world["tmp"] / "jobs", backend="ray")
    first = queue.wait(world["ids"]["ok"], timeout_s=150)
    again = queue.submit(world["specs"]["ok"])
    assert again.id == first.id and again.state == "succeeded" and again.launches == 1
    with pytest.raises(ValueError):  # the finished job's actor was killed when its result came in
        ray.get_actor(first.id, namespace="disco-jobs")


def test_cancel_a_running_ray_job(world):
    queue = JobQueue(world["tmp"] / "jobs", backend="ray")
    job = queue.submit(job_spec("hangs", HANG, world["model"], world["data"], time_limit_s=600.0))
    wait_for(lambda: any("[train] " in line for line in queue.logs(job.id)[0]), 120, "training to start")
    assert queue.get(job.id).state == "running"
    job = queue.cancel(job.id)
    assert job.state == "cancelled" and job.reason == "cancelled on request"
