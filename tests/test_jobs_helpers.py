"""Shared pieces of the job tests: a tiny saved model, a tiny preference file, candidates that succeed,
go NaN, run out of memory, hang or diverge, and a job spec that trains in a few seconds on a CPU.
Imported by the other test_jobs_* files.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from helpers_tiny import preference_rows, tiny_gpt2, tiny_tokenizer

from tools.jobs import JobSpec, Resources

ROOT = Path(__file__).resolve().parent.parent
SIGNATURE = (
    "(self, policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps):\n"
)
RHO = (
    "    rho = (policy_chosen_logps - policy_rejected_logps)"
    " - (reference_chosen_logps - reference_rejected_logps)\n"
)
DPO = "def dpo" + SIGNATURE + RHO + "    return -F.logsigmoid(self.beta * rho)  # (B,)\n"
NAN = "def always_nan" + SIGNATURE + RHO + "    return -F.logsigmoid(self.beta * rho) * float('nan')\n"
OOM = (
    "def hungry" + SIGNATURE + RHO + "    big = torch.ones(2**34)  # 64 GiB of float32\n"
    "    return -F.logsigmoid(self.beta * rho) + big[0] * 0\n"
)
# Spins without allocating: `rho = rho + 0` grew the autograd graph until the job's address-space limit
# crashed it (std::bad_alloc), on a fast machine before its time limit.
HANG = "def hangs" + SIGNATURE + RHO + "    spins = 0\n    while True:\n        spins = spins + 1\n"
HUGE = "def huge" + SIGNATURE + RHO + "    return -F.logsigmoid(self.beta * rho) * 1000.0 + 1000.0\n"


def make_model_and_data(folder: Path) -> tuple[Path, Path]:
    """A tiny GPT-2 saved as a model directory, and 32 preference pairs as JSONL."""
    model = folder / "tiny-model"
    if not (model / "config.json").exists():
        tokenizer = tiny_tokenizer()
        tiny_gpt2(tokenizer, seed=0).save_pretrained(model)
        tokenizer.save_pretrained(model)
    data = folder / "pairs.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in preference_rows(32, seed=2)))
    return model, data


def train_config(model: Path, data: Path, **train: Any) -> dict[str, Any]:
    """A RealDPOSpec (as JSON) that trains 6 steps of 4 pairs on the CPU: a few seconds."""
    hyper = {"device": "cpu", "beta": 0.5, "learning_rate": 5e-4, "max_steps": 6}
    hyper |= {"per_device_train_batch_size": 4, "max_length": 48, "logging_steps": 2} | train
    return {"model": str(model), "dataset": str(data), "eval_fraction": 0.25, "train": hyper}


def job_spec(name: str, code: str, model: Path, data: Path, **fields: Any) -> JobSpec:
    train = fields.pop("train", {})
    base = {
        "candidate_name": name,
        "candidate_code": code,
        "train": train_config(model, data, **train),
        "resources": Resources(cpus=1, memory_gb=6),
        "time_limit_s": 120.0,
    }
    return JobSpec(**(base | fields))


def wait_for(predicate, timeout_s: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def process_alive(pid: int) -> bool:
    """True for a live process (a zombie counts as dead)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] not in "ZX"


def kill_group(pid: int) -> None:
    """SIGKILL the process group led by `pid` (a process this test started in its own session)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


SUBMIT_AND_HANG = """
import sys, time
sys.path[:0] = [{tests!r}, {root!r}]
from tools.jobs import JobQueue, JobSpec
queue = JobQueue({queue!r}, {backend!r}, **{config!r})
for raw in {specs!r}:
    job = queue.submit(JobSpec.model_validate_json(raw))
    print(job.id, flush=True)
print("submitted", flush=True)
if {hang!r}:
    time.sleep(3600)
"""


def submitter_argv(
    queue_root: Path, specs: list[JobSpec], backend: str, config: dict, hang: bool
) -> list[str]:
    """A separate agent-like process that submits `specs`, then hangs (to be killed) or exits."""
    code = SUBMIT_AND_HANG.format(
        tests=str(ROOT / "tests"),
        root=str(ROOT),
        queue=str(queue_root),
        backend=backend,
        config=config,
        specs=[s.model_dump_json() for s in specs],
        hang=hang,
    )
    return [sys.executable, "-c", code]
