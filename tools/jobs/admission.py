"""Which queued jobs may start now, and where: a pure function of the queue and the machine.

A GPU takes a job when both
- the memory free on it now (NVML) covers the job's request plus a headroom, and
- its total memory minus what the jobs already running there reserved covers the request too
  (a job that has just started has not allocated its memory yet; one that uses more than it asked for
  shows in the free memory),
and it runs fewer than `max_jobs_per_gpu` jobs. A job without a memory request takes whole GPUs.
CPU jobs run while the cores they ask for fit in the CPU slots.

Queued jobs are considered in submission order; a job that does not fit does not hold up smaller ones
behind it (backfill), so a long queue of small candidates keeps a GPU busy.
"""

from __future__ import annotations

import socket

from pydantic import BaseModel

from tools.jobs.gpu import GPUInfo
from tools.jobs.models import Assignment, Job, Resources


class AdmissionConfig(BaseModel):
    cpu_slots: int = 2
    """CPU cores that CPU jobs may use together."""
    max_jobs_per_gpu: int = 4
    gpu_headroom_gb: float = 1.0
    """Kept free on every GPU (CUDA context, allocator fragmentation)."""


class _GPUState:
    def __init__(self, gpu: GPUInfo) -> None:
        self.gpu = gpu
        self.free = gpu.free_gb
        self.reserved = 0.0
        self.jobs = 0
        self.whole = False

    def available(self, headroom: float) -> float:
        if self.whole:
            return 0.0
        return min(self.free, self.gpu.total_gb - self.reserved) - headroom

    def take(self, memory_gb: float | None) -> None:
        self.jobs += 1
        if memory_gb is None:
            self.whole = True
            self.reserved = self.gpu.total_gb
        else:
            self.reserved += memory_gb
            self.free -= memory_gb


def never_fits(resources: Resources, gpus: list[GPUInfo], config: AdmissionConfig) -> str | None:
    """Why a job could never start on this machine (one sentence), or None."""
    if resources.gpus == 0:
        if resources.cpus > config.cpu_slots:
            return (
                f"the job asks for {resources.cpus} CPU cores but CPU jobs may use {config.cpu_slots} here "
                "(raise cpu_slots or lower resources.cpus)"
            )
        return None
    if len(gpus) < resources.gpus:
        have = f"{len(gpus)} GPU" + ("s" if len(gpus) != 1 else "") if gpus else "no GPU"
        return (
            f"the job asks for {resources.gpus} GPU(s) but this machine has {have} "
            "(resources.gpus = 0 trains on the CPU)"
        )
    if resources.gpu_memory_gb is not None:
        fits = [g for g in gpus if g.total_gb - config.gpu_headroom_gb >= resources.gpu_memory_gb]
        if len(fits) < resources.gpus:
            biggest = max(g.total_gb for g in gpus)
            return (
                f"the job asks for {resources.gpu_memory_gb:g} GB per GPU but the largest GPU here has "
                f"{biggest:.0f} GB"
            )
    return None


def admit(
    queued: list[Job], running: list[Job], gpus: list[GPUInfo], config: AdmissionConfig
) -> list[tuple[Job, Assignment]]:
    """The queued jobs to start now, in order, each with its placement."""
    state = {g.uuid: _GPUState(g) for g in gpus}
    cpus_used = 0
    for job in running:
        held = job.resources
        if held is None:
            continue
        if not held.gpus:
            cpus_used += held.cpus
        for uuid in held.gpus:
            if uuid in state:
                # The free memory measured now already contains what this job has allocated so far;
                # count only its reservation here (and not subtract it from `free` again).
                s = state[uuid]
                s.jobs += 1
                if held.gpu_memory_gb is None:
                    s.whole, s.reserved = True, s.gpu.total_gb
                else:
                    s.reserved += held.gpu_memory_gb

    host = socket.gethostname()
    started: list[tuple[Job, Assignment]] = []
    for job in queued:
        need = job.spec.resources
        if need.gpus == 0:
            if cpus_used + need.cpus <= config.cpu_slots:
                cpus_used += need.cpus
                started.append((job, Assignment(cpus=need.cpus, host=host)))
            continue
        fit = [
            s
            for s in state.values()
            if s.jobs < config.max_jobs_per_gpu
            and (
                (s.jobs == 0 and s.free >= s.gpu.total_gb * 0.9)
                if need.gpu_memory_gb is None
                else s.available(config.gpu_headroom_gb) >= need.gpu_memory_gb
            )
        ]
        if len(fit) < need.gpus:
            continue
        chosen = sorted(fit, key=lambda s: -s.available(config.gpu_headroom_gb))[: need.gpus]
        for s in chosen:
            s.take(need.gpu_memory_gb)
        assignment = Assignment(
            gpus=[s.gpu.uuid for s in chosen], gpu_memory_gb=need.gpu_memory_gb, cpus=need.cpus, host=host
        )
        started.append((job, assignment))
    return started
