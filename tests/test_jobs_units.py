"""The job queue's pure parts, table-driven: ids, admission, failure classification, stream offsets,
GPU visibility, spec files, and the store's at-most-once start. No training runs here."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from test_jobs_helpers import DPO, NAN, job_spec

from tools.jobs import JobError, JobQueue, JobSpec, Resources
from tools.jobs.admission import AdmissionConfig, admit, never_fits
from tools.jobs.classify import from_child, from_exception, from_exit, from_outcome
from tools.jobs.gpu import GPUInfo, probe_gpus, visible
from tools.jobs.local import runner_alive
from tools.jobs.models import Assignment, Job
from tools.jobs.relay import Relay, clean_metrics
from tools.jobs.specfile import load_spec_file
from tools.jobs.store import JobStore
from tools.jobs.streams import read_jsonl, read_lines
from tools.processes import process_start

MODEL, DATA = Path("/models/m"), Path("/data/pairs.jsonl")


# ---------------------------------------------------------------- ids
def test_the_id_is_a_hash_of_what_is_trained_not_of_where():
    spec = job_spec("dpo", DPO, MODEL, DATA)
    assert spec.job_id() == job_spec("dpo", DPO, MODEL, DATA).job_id()
    assert spec.job_id() == spec.model_copy(update={"backend": "ray"}).job_id()
    assert spec.job_id().startswith("job-") and len(spec.job_id()) == 20
    for other in (
        job_spec("dpo", DPO + "\n", MODEL, DATA),
        job_spec("dpo", DPO, MODEL, DATA, train={"seed": 1}),
        job_spec("dpo", DPO, MODEL, DATA, time_limit_s=60.0),
        job_spec("dpo", DPO, MODEL, DATA, resources=Resources(gpus=1)),
    ):
        assert other.job_id() != spec.job_id()


def test_normalizing_fills_defaults_so_equal_configs_share_an_id():
    short = JobSpec(candidate_name="d", candidate_code=DPO, train={"model": "m", "dataset": "d"})
    spelt = JobSpec(
        candidate_name="d",
        candidate_code=DPO,
        train={"model": "m", "dataset": "d", "split": "train", "train": {"beta": 0.1, "device": "cuda"}},
        resources=Resources(gpus=1),
    )
    assert short.job_id() != short.normalized().job_id()
    assert short.normalized().train["train"]["beta"] == 0.1
    assert short.normalized().train["train"]["device"] == "cpu"  # no GPUs asked for: the CPU
    assert spelt.normalized().train["train"]["device"] == "cuda"
    auto = spelt.model_copy(update={"train": {"model": "m", "dataset": "d", "train": {"beta": 0.1}}})
    assert auto.normalized().job_id() == spelt.normalized().job_id()
    with pytest.raises(JobError, match=r"^bad training config train\.train\.beta: "):
        JobSpec(
            candidate_name="d",
            candidate_code=DPO,
            train={"model": "m", "dataset": "d", "train": {"beta": "x"}},
        ).normalized()
    with pytest.raises(JobError, match=r"device 'cuda' but resources\.gpus is 0"):
        spelt.model_copy(update={"resources": Resources()}).normalized()


# ---------------------------------------------------------------- admission
def gpu(i: int, total: float = 80.0, free: float = 80.0) -> GPUInfo:
    return GPUInfo(index=i, uuid=f"GPU-{i}", name="H100", total_gb=total, free_gb=free)


def job(
    name: str, gpus: int = 0, mem: float | None = None, cpus: int = 1, held: list[str] | None = None
) -> Job:
    spec = job_spec(name, DPO, MODEL, DATA, resources=Resources(gpus=gpus, gpu_memory_gb=mem, cpus=cpus))
    resources = None
    if held is not None:
        resources = Assignment(gpus=held, gpu_memory_gb=mem, cpus=cpus)
    return Job(id=name, spec=spec, backend="local", state="queued", created_at=0.0, resources=resources)


CONFIG = AdmissionConfig(cpu_slots=2, max_jobs_per_gpu=3, gpu_headroom_gb=1.0)


@pytest.mark.parametrize(
    ("gpus", "running", "queued", "expected"),
    [
        pytest.param([], [], [job("a"), job("b"), job("c")], {"a": [], "b": []}, id="cpu-slots"),
        pytest.param([], [job("r", cpus=2, held=[])], [job("a")], {}, id="cpu-full"),
        pytest.param(
            [], [], [job("wide", cpus=2), job("a")], {"wide": []}, id="cpu-in-order"
        ),
        pytest.param(
            [gpu(0)], [], [job("a", 1, 30), job("b", 1, 30), job("c", 1, 30)],
            {"a": ["GPU-0"], "b": ["GPU-0"]}, id="two-share-a-gpu-third-waits",
        ),
        pytest.param(
            [gpu(0, free=20)], [], [job("a", 1, 30), job("b", 1, 10)], {"b": ["GPU-0"]},
            id="free-memory-counts-and-small-jobs-backfill",
        ),
        pytest.param(
            [gpu(0, free=75)], [job("r", 1, 60, held=["GPU-0"])], [job("a", 1, 30)], {},
            id="reservation-of-a-job-not-yet-allocated",
        ),
        pytest.param(
            [gpu(0), gpu(1, free=50)], [], [job("a", 1, 40), job("b", 1, 40)],
            {"a": ["GPU-0"], "b": ["GPU-1"]}, id="most-available-first",
        ),
        pytest.param(
            [gpu(0), gpu(1)], [], [job("whole", 1), job("a", 1, 10)], {"whole": ["GPU-0"], "a": ["GPU-1"]},
            id="whole-gpu",
        ),
        pytest.param(
            [gpu(0), gpu(1)], [job("r", 1, 10, held=["GPU-1"])], [job("two", 2)], {}, id="two-whole-gpus-busy"
        ),
        pytest.param(
            [gpu(0)], [job(f"r{i}", 1, 1, held=["GPU-0"]) for i in range(3)], [job("a", 1, 1)], {},
            id="max-jobs-per-gpu",
        ),
        pytest.param([gpu(0)], [], [job("a", 1, 10), job("c")], {"a": ["GPU-0"], "c": []}, id="gpu-and-cpu"),
    ],
)  # fmt: skip
def test_admission(gpus, running, queued, expected):
    started = {j.id: a.gpus for j, a in admit(queued, running, gpus, CONFIG)}
    assert started == expected


@pytest.mark.parametrize(
    ("resources", "gpus", "message"),
    [
        (Resources(cpus=3), [], "asks for 3 CPU cores but CPU jobs may use 2"),
        (Resources(gpus=1), [], "asks for 1 GPU(s) but this machine has no GPU"),
        (Resources(gpus=2), [gpu(0)], "this machine has 1 GPU "),
        (Resources(gpus=1, gpu_memory_gb=100), [gpu(0)], "the largest GPU here has 80 GB"),
        (Resources(gpus=1, gpu_memory_gb=40), [gpu(0)], None),
        (Resources(cpus=2), [], None),
    ],
)
def test_jobs_that_could_never_start(resources, gpus, message):
    why = never_fits(resources, gpus, CONFIG)
    assert (why is None) if message is None else (message in why)


def test_gpu_visibility_follows_cuda_visible_devices():
    gpus = [gpu(0), gpu(1), gpu(2)]
    assert visible(gpus, None) == gpus
    assert [g.index for g in visible(gpus, "2,0")] == [0, 2]
    assert [g.index for g in visible(gpus, "GPU-1")] == [1]
    assert visible(gpus, "") == []
    if not torch.cuda.is_available():
        assert probe_gpus() == []  # no driver, no nvidia-smi: no GPUs, and no error


# ---------------------------------------------------------------- classification
CPU_OOM = (
    "[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate memory: you tried to allocate"
)


@pytest.mark.parametrize(
    ("outcome", "state", "text"),
    [
        ({"status": "ok"}, "succeeded", ""),
        ({"status": "diverged", "reason": "the loss became non-finite at step 3"}, "failed:nan", "step 3"),
        (
            {"status": "error", "reason": f"the candidate raised RuntimeError: {CPU_OOM}"},
            "failed:oom",
            "in the candidate",
        ),
        (
            {"status": "error", "reason": "the candidate raised OutOfMemoryError: CUDA out of"},
            "failed:oom",
            "",
        ),
        (
            {"status": "error", "reason": "the candidate returned losses of shape (4, 1)"},
            "failed:crash",
            "(4, 1)",
        ),
    ],
)
def test_training_outcomes(outcome, state, text):
    got, reason, _ = from_outcome(outcome)
    assert got == state and text in reason


@pytest.mark.parametrize(
    ("exc", "state"),
    [
        (MemoryError(), "failed:oom"),
        (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), "failed:oom"),
        (RuntimeError(CPU_OOM), "failed:oom"),
        (ValueError("the data set has no 'prompt' column"), "failed:crash"),
        (KeyError("input_ids"), "failed:crash"),
    ],
)  # fmt: skip
def test_exceptions(exc, state):
    try:
        raise exc
    except BaseException as raised:
        got, reason, tb = from_exception(raised)
    assert got == state and type(exc).__name__ in reason and "Traceback" in tb


@pytest.mark.parametrize(
    ("returncode", "killed_for", "state", "text"),
    [
        (-9, "timeout", "failed:timeout", "time limit of 30 s"),
        (-9, "cancel", "cancelled", "cancelled on request"),
        (-9, None, "failed:oom", "out-of-memory killer"),
        (-11, None, "failed:crash", "SIGSEGV"),
        (1, None, "failed:crash", "exited with status 1"),
        (-9, "shutdown", "failed:crash", "SIGTERM"),
    ],
)
def test_process_exits(returncode, killed_for, state, text):
    got, reason = from_exit(returncode, killed_for, 30.0)
    assert got == state and text in reason


@pytest.mark.parametrize(
    ("kind", "message", "detail", "sig", "state", "text"),
    [
        ("timeout", "training did not finish", None, None, "failed:timeout", "time limit of 30 s"),
        ("killed", "killed by signal 9", None, 9, "failed:oom", "out-of-memory killer"),
        ("crash", "OutOfMemoryError: CUDA out of memory", "Traceback ...", None, "failed:oom", "CUDA"),
        ("crash", "KeyError: 'input_ids'", f"Traceback ... {CPU_OOM}", None, "failed:oom", "KeyError"),
        ("crash", "the training process ended (exit 1)", "Traceback ...", None, "failed:crash", "exit 1"),
        ("rejected", "the trained weights were rejected: x", None, None, "failed:crash", "rejected"),
        ("refused", "the training sandbox was refused", None, None, "failed:crash", "refused"),
    ],
)  # fmt: skip
def test_jailed_child_failures(kind, message, detail, sig, state, text):
    """How a job ends when its jailed training child left no usable result (targets.dpo.real.ChildFailed)."""
    got, reason = from_child(kind, message, detail, sig, 30.0)
    assert got == state and text in reason


# ---------------------------------------------------------------- streams
def test_reads_whole_lines_once_across_offsets(tmp_path):
    path = tmp_path / "log"
    assert read_lines(path, 0) == ([], 0)
    path.write_text("one\ntw")
    lines, offset = read_lines(path, 0)
    assert lines == ["one"] and offset == 4
    assert read_lines(path, offset) == ([], 4)  # half a line waits
    with open(path, "a") as fh:
        fh.write("o\nthree\n")
    assert read_lines(path, offset) == (["two", "three"], 14)
    path.write_text("x" * 100)
    assert read_lines(path, 0, max_bytes=40) == (["x" * 40], 40)  # an endless line comes in slices
    (tmp_path / "m.jsonl").write_text('{"step": 1}\nnot json\n[1]\n{"step": 2}\n')
    assert read_jsonl(tmp_path / "m.jsonl") == ([{"step": 1}, {"step": 2}], 37)


# ---------------------------------------------------------------- spec files
def test_spec_files(tmp_path):
    (tmp_path / "loss.py").write_text(DPO)
    (tmp_path / "pairs.jsonl").write_text("")
    (tmp_path / "a.toml").write_text(
        'candidate_file = "loss.py"\n[train]\nmodel = "Qwen/Qwen2.5-0.5B"\ndataset = "pairs.jsonl"\n'
        "[resources]\ngpus = 1\ngpu_memory_gb = 20\n"
    )
    spec = load_spec_file(tmp_path / "a.toml")
    assert spec.candidate_name == "loss" and spec.candidate_code == DPO
    assert spec.train["model"] == "Qwen/Qwen2.5-0.5B"  # a hub id stays as it is
    assert spec.train["dataset"] == str(tmp_path / "pairs.jsonl")
    assert spec.resources.gpu_memory_gb == 20
    (tmp_path / "b.toml").write_text('candidate = "ipo"\n[train]\nmodel = "m"\ndataset = "d"\n')
    assert load_spec_file(tmp_path / "b.toml").candidate_name == "ipo"
    (tmp_path / "c.toml").write_text('candidate = "nope"\n[train]\nmodel = "m"\ndataset = "d"\n')
    with pytest.raises(JobError, match="no zoo loss named 'nope'"):
        load_spec_file(tmp_path / "c.toml")
    (tmp_path / "d.toml").write_text(
        'candidate = "ipo"\ncolour = "red"\n[train]\nmodel = "m"\ndataset = "d"\n'
    )
    with pytest.raises(JobError, match="colour: Extra inputs are not permitted"):
        load_spec_file(tmp_path / "d.toml")


# ---------------------------------------------------------------- store and queue
def test_a_job_moves_to_running_at_most_once(tmp_path):
    """Two stores on one database (two processes): only the first move from queued counts."""
    spec = job_spec("dpo", DPO, MODEL, DATA)
    a, b = JobStore(tmp_path), JobStore(tmp_path)
    job, created = a.insert(spec, "local")
    again, created_again = b.insert(spec, "local")
    assert created and not created_again and again.id == job.id
    moved = []
    for store in (a, b):
        with store.transaction() as db:
            if store.require(job.id).state == "queued":
                store.mark_running(db, job.id, Assignment(cpus=1), None)
                moved.append(store)
    assert moved == [a] and b.require(job.id).launches == 1
    with b.transaction() as db:
        assert b.finish(db, job.id, "succeeded")
        assert not b.finish(db, job.id, "failed:crash", "late")  # a final state is final
    assert a.require(job.id).state == "succeeded"


def test_submission_refuses_what_could_never_run(tmp_path):
    queue = JobQueue(tmp_path, cpu_slots=2)
    with pytest.raises(JobError, match="asks for 64 GPU"):
        queue.submit(
            job_spec("dpo", DPO, MODEL, DATA, resources=Resources(gpus=64), train={"device": "auto"})
        )
    with pytest.raises(JobError, match="asks for 3 CPU cores"):
        queue.submit(job_spec("dpo", DPO, MODEL, DATA, resources=Resources(cpus=3)))
    with pytest.raises(JobError, match="breaks the sandbox policy"):
        queue.submit(job_spec("evil", NAN.replace("return", "import os\n    return"), MODEL, DATA))
    with pytest.raises(JobError, match="unknown job backend 'slurm'"):
        JobQueue(tmp_path, backend="slurm")
    with pytest.raises(JobError, match="bad local backend setting cpu_slots"):
        JobQueue(tmp_path, cpu_slots=0)
    assert queue.list() == []


def test_a_dead_runner_fails_its_job(tmp_path):
    """A runner that is gone (kill -9, reboot) leaves a running job behind: the next schedule records it."""
    queue = JobQueue(tmp_path, cpu_slots=1)
    spec = job_spec("dpo", DPO, MODEL, DATA).normalized()
    job, _ = queue.store.insert(spec, "local")
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    runner = {"pid": sleeper.pid, "start": process_start(sleeper.pid)}
    assert runner_alive(runner) and not runner_alive({"pid": sleeper.pid, "start": 1})
    with queue.store.transaction() as db:
        queue.store.mark_running(db, job.id, Assignment(cpus=1), runner)
    queue.refresh()
    assert queue.store.require(job.id).state == "running"
    sleeper.send_signal(signal.SIGKILL)
    sleeper.wait()
    time.sleep(0.1)
    assert not runner_alive(runner)
    failed = queue.get(job.id)
    assert failed.state == "failed:crash" and "runner process died" in failed.reason


def test_an_unreachable_ray_cluster_is_one_sentence_not_a_hang(tmp_path):
    with socket.socket() as s:  # a port that nothing listens on
        s.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{s.getsockname()[1]}"
    queue = JobQueue(tmp_path, backend="ray", address=address)
    t0 = time.monotonic()
    with pytest.raises(JobError, match=f"cannot reach the Ray cluster at {address}"):
        queue.submit(job_spec("dpo", DPO, MODEL, DATA))
    # A Ray job already in the store: listing still works, and says why it was not updated.
    queue.store.insert(job_spec("dpo", DPO, MODEL, DATA).normalized(), "ray")
    assert [j.state for j in JobQueue(tmp_path).list()] == ["queued"]
    reopened = JobQueue(tmp_path)
    reopened.list()
    assert reopened.warnings and "cannot reach the Ray cluster" in reopened.warnings[0]
    assert time.monotonic() - t0 < 30


# ---------------------------------------------------------------- relay of the jailed child's progress
@pytest.mark.parametrize(
    ("line", "kept"),
    [
        (b'{"kind": "train", "step": 2, "loss": 0.5, "epoch": null}', True),
        (b'{"kind": "summary", "step": 6, "train_loss": NaN}', True),
        (b'{"kind": "eval", "step": 6, "eval_rewards/margins": 99.0}', False),  # only the worker scores
        (b'{"kind": "train", "step": 2, "note": "OPENAI_API_KEY=sk-..."}', False),  # numbers only
        (b'{"kind": "train", "loss": 0.5}', False),
        (b'{"kind": "train", "step": 2, "nested": {"a": 1}}', False),
        (b"not json", False),
        (b"[1, 2]", False),
    ],
)
def test_the_relay_keeps_only_the_childs_progress_numbers(line, kept):
    out = clean_metrics(line)
    assert (out is not None) == kept
    if kept:
        assert json.loads(out.decode().replace("NaN", "null"))["kind"] in ("train", "summary")


def test_the_relay_copies_files_not_links(tmp_path):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    (scratch / "output.log").symlink_to("/etc/hostname")
    (scratch / "metrics.jsonl").write_text(
        '{"kind": "train", "step": 1, "loss": 0.7}\n{"kind": "eval", "step": 1}\n'
    )
    log = tmp_path / "log"
    fd = os.open(log, os.O_WRONLY | os.O_CREAT)
    try:
        with Relay(scratch / "output.log", fd, scratch / "metrics.jsonl", tmp_path / "metrics.jsonl"):
            pass
    finally:
        os.close(fd)
    assert log.read_text() == ""  # the link was never followed
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["kind"] for x in lines] == ["train"]
