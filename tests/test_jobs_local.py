"""The local backend end to end: real detached runners, real confined training processes, real TRL.

Every job of this module is submitted at once by the module fixture, so that their 6–9 s of imports
overlap; each test then waits for its own job.
"""

from __future__ import annotations

import subprocess
import time

import pytest
from test_jobs_helpers import (
    DPO,
    HANG,
    HUGE,
    NAN,
    OOM,
    job_spec,
    kill_group,
    make_model_and_data,
    process_alive,
    submitter_argv,
    wait_for,
)

from tools.jobs import JobQueue, JobSpec, Resources
from tools.jobs.models import TERMINAL

SLOTS = 8
HANG_LIMIT_S = 50.0


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("jobs-local")
    model, data = make_model_and_data(tmp)
    queue = JobQueue(tmp / "jobs", cpu_slots=SLOTS)
    specs = {
        "ok": job_spec("dpo", DPO, model, data),
        "nan": job_spec("always_nan", NAN, model, data),
        "oom": job_spec("hungry", OOM, model, data),
        "hang": job_spec("hangs", HANG, model, data, time_limit_s=HANG_LIMIT_S),
        "huge": job_spec("huge", HUGE, model, data, stop_if_loss_above=100.0),
        "long": job_spec("hangs_long", HANG, model, data, time_limit_s=600.0),
    }
    # An agent-like process submits one more job and is killed (its whole process group, as a closed
    # terminal would) right after: see test_a_job_survives_the_process_that_submitted_it.
    orphan = job_spec("dpo_seed1", DPO, model, data, train={"seed": 1})
    agent = subprocess.Popen(
        submitter_argv(queue.root, [orphan], "local", {}, hang=True),
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    jobs = {name: queue.submit(spec) for name, spec in specs.items()}
    try:
        orphan_id = agent.stdout.readline().strip()
        submitted = agent.stdout.readline().strip() == "submitted"
    finally:
        kill_group(agent.pid)
        agent.wait()
    world = {"tmp": tmp, "model": model, "data": data, "queue": queue, "specs": specs, "jobs": jobs}
    yield world | {"orphan": (orphan, orphan_id, submitted, agent.returncode)}
    for job in queue.list():  # nothing of this module may outlive it
        if not job.terminal:
            queue.cancel(job.id)
    queue.close()


def test_jobs_start_detached_and_run_at_once(world):
    for job in world["jobs"].values():  # one CPU slot each, all admitted at once
        assert job.state == "running" and job.launches == 1
        assert job.resources is not None and job.resources.gpus == [] and job.resources.cpus == 1


def test_a_good_candidate_succeeds_with_its_metrics_streamed(world):
    queue: JobQueue = world["queue"]
    job_id = world["jobs"]["ok"].id
    seen_lines, offset = [], 0
    seen_metrics, moffset = [], 0
    while not queue.get(job_id).terminal:  # read both streams incrementally, as the agent does
        lines, offset = queue.logs(job_id, offset)
        seen_lines += lines
        records, moffset = queue.metrics(job_id, moffset)
        seen_metrics += records
        time.sleep(0.3)
    lines, offset = queue.logs(job_id, offset)
    records, moffset = queue.metrics(job_id, moffset)
    seen_lines += lines
    seen_metrics += records

    job = queue.get(job_id)
    assert job.state == "succeeded", (job.reason, job.traceback)
    assert job.started_at and job.finished_at and job.created_at <= job.started_at <= job.finished_at
    assert job.metrics["steps"] == 6 and job.metrics["tokens_per_second"] > 0
    assert job.metrics["final_loss"] < 0.6932 and job.metrics["eval_reward_margin"] > 0
    assert {"log", "metrics.jsonl", "metrics.json", "result.json", "spec.json"} <= set(job.artefacts)
    # Each line exactly once, in order, whatever the read boundaries were.
    assert seen_lines == queue.logs(job_id)[0]
    assert seen_metrics == queue.metrics(job_id)[0]
    assert [m["step"] for m in seen_metrics if m["kind"] == "train"] == [2, 4, 6]
    text = "\n".join(seen_lines)
    assert "network: none" in text and "[train] step 6/6" in text and "succeeded" in text
    assert queue.logs(job_id, offset) == ([], offset)


def test_resubmitting_the_same_spec_returns_the_same_job(world):
    queue: JobQueue = world["queue"]
    first = queue.wait(world["jobs"]["ok"].id, timeout_s=120)
    again = queue.submit(world["specs"]["ok"])
    # The same content written differently (defaults spelt out, another backend name) is the same job.
    explicit = world["specs"]["ok"].normalized().model_copy(update={"backend": "local"})
    reopened = JobQueue(queue.root).submit(explicit)  # as an agent that restarted would
    assert again.id == reopened.id == first.id
    assert reopened.state == "succeeded" and reopened.launches == 1
    assert sum(1 for j in queue.list() if j.id == first.id) == 1


def test_a_candidate_that_goes_nan_fails_nan(world):
    job = world["queue"].wait(world["jobs"]["nan"].id, timeout_s=120)
    assert job.state == "failed:nan"
    assert "non-finite at step 1" in job.reason and "nan" in job.reason


def test_a_candidate_that_exceeds_its_memory_fails_oom(world):
    job = world["queue"].wait(world["jobs"]["oom"].id, timeout_s=120)
    assert job.state == "failed:oom", (job.reason, job.traceback)
    assert "out of memory" in job.reason and "can't allocate memory" in job.reason


def test_a_hopeless_loss_is_stopped_early_as_nan(world):
    job = world["queue"].wait(world["jobs"]["huge"].id, timeout_s=120)
    assert job.state == "failed:nan"
    assert "above the hopeless mark 100" in job.reason and "at step 2" in job.reason
    assert job.metrics["steps"] == 2  # stopped at the first log step, not after all 6


def test_a_candidate_that_hangs_times_out(world):
    queue: JobQueue = world["queue"]
    job = queue.wait(world["jobs"]["hang"].id, timeout_s=120)
    assert job.state == "failed:timeout"
    assert f"time limit of {HANG_LIMIT_S:g} s" in job.reason
    assert HANG_LIMIT_S <= job.finished_at - job.started_at < HANG_LIMIT_S + 20
    log = "\n".join(queue.logs(job.id)[0])
    assert "[train] " in log  # it hung inside the candidate, not on the way there


def test_cancel_a_queued_and_a_running_job(world):
    queue: JobQueue = world["queue"]
    running = world["jobs"]["long"]
    wait_for(lambda: "[train] " in "\n".join(queue.logs(running.id)[0]), 90, "training to start")
    # The hanging job holds one CPU slot: a job that needs all of them has to wait.
    wide = job_spec("dpo_wide", DPO, world["model"], world["data"], resources=Resources(cpus=SLOTS))
    queued = queue.submit(wide)
    assert queued.state == "queued"
    cancelled = queue.cancel(queued.id)
    assert cancelled.state == "cancelled" and cancelled.launches == 0

    pid = queue.store.runner(running.id)["pid"]
    job = queue.cancel(running.id)
    assert job.state == "cancelled" and job.reason == "cancelled on request"
    wait_for(lambda: not process_alive(pid), 10, "the runner to exit")


def test_a_job_survives_the_process_that_submitted_it(world):
    """The submitter was SIGKILLed with its process group right after submitting (see the fixture); the
    job went on, and a new queue on the same directory picks its result up."""
    spec, job_id, submitted, returncode = world["orphan"]
    assert submitted and returncode == -9
    assert job_id == spec.normalized().job_id()
    fresh = JobQueue(world["queue"].root)
    job = fresh.wait(job_id, timeout_s=150)
    assert job.state == "succeeded", (job.reason, job.traceback)
    assert job.launches == 1 and job.metrics["steps"] == 6


def test_every_job_of_the_module_ended(world):
    queue: JobQueue = world["queue"]
    for job in queue.list():
        job = queue.wait(job.id, timeout_s=60)
        assert job.state in TERMINAL
        assert isinstance(job.spec, JobSpec)
