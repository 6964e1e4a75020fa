"""GPU admission on a real GPU: two small jobs share one device, each sees only it (by UUID).

Gated by a capability check and an explicit flag: DISCO_GPU_TESTS=1 on a machine with a CUDA GPU.
Each job takes the CUDA path of targets/dpo/real.py: a trusted fork computes the reference log-probs, a
jailed child (which needs `JailSpec.devices` for /dev/nvidia*) trains and reports its peak GPU memory, and
the worker loads the weights on the GPU after the child exited and scores them.
"""

from __future__ import annotations

import os

import pytest
import torch
from test_jobs_helpers import DPO, job_spec, make_model_and_data

from tools.jobs import JobQueue, Resources
from tools.jobs.gpu import probe_gpus

pytestmark = pytest.mark.skipif(
    os.environ.get("DISCO_GPU_TESTS") != "1" or not torch.cuda.is_available(),
    reason="needs a CUDA GPU and DISCO_GPU_TESTS=1",
)


def test_two_small_jobs_share_one_gpu(tmp_path):
    model, data = make_model_and_data(tmp_path)
    gpu = probe_gpus()[0]
    assert gpu.total_gb > 4 and gpu.uuid.startswith("GPU-")
    queue = JobQueue(tmp_path / "jobs", max_jobs_per_gpu=2)
    specs = [
        job_spec(f"dpo{i}", DPO, model, data, train={"seed": i, "device": "auto"},
                 resources=Resources(gpus=1, gpu_memory_gb=1.5))
        for i in range(2)
    ]  # fmt: skip
    jobs = [queue.submit(spec) for spec in specs]
    for job in jobs:
        assert job.state == "running" and job.resources.gpus == [gpu.uuid]
        assert job.spec.train["train"]["device"] == "cuda"
    for job in jobs:
        done = queue.wait(job.id, timeout_s=300)
        assert done.state == "succeeded", (done.reason, done.traceback)
        assert done.metrics["device"] == "cuda" and done.metrics["peak_gpu_memory_gib"] > 0
    whole = queue.submit(
        job_spec("whole", DPO, model, data, train={"device": "auto"}, resources=Resources(gpus=1))
    )
    assert whole.resources is not None and whole.resources.gpu_memory_gb is None
    assert queue.wait(whole.id, timeout_s=300).state == "succeeded"
