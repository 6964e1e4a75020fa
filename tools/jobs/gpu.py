"""The GPUs of this machine and their free memory, without torch.

The scheduler runs in the agent, the CLI and every job's runner; `torch.cuda.mem_get_info` would cost each
of them the torch import and a CUDA context (hundreds of MB on every GPU). NVML — the library behind
nvidia-smi, shipped with the driver — answers in microseconds through ctypes; `nvidia-smi` is the
fallback; no driver means no GPUs.

GPUs are named by UUID: `CUDA_VISIBLE_DEVICES=GPU-…` selects the same device whatever order CUDA
enumerates them in. A `CUDA_VISIBLE_DEVICES` already set for the scheduler limits the GPUs it hands out.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess

from pydantic import BaseModel

GIB = 2**30


class GPUInfo(BaseModel):
    index: int
    uuid: str
    name: str
    total_gb: float
    free_gb: float


class _NvmlMemory(ctypes.Structure):
    _fields_ = [("total", ctypes.c_ulonglong), ("free", ctypes.c_ulonglong), ("used", ctypes.c_ulonglong)]


def _nvml() -> list[GPUInfo] | None:
    """None when NVML is not there (no driver); a list (maybe empty) when it answered."""
    try:
        lib = ctypes.CDLL("libnvidia-ml.so.1")
    except OSError:
        return None
    if lib.nvmlInit_v2() != 0:
        return None
    try:
        count = ctypes.c_uint()
        if lib.nvmlDeviceGetCount_v2(ctypes.byref(count)) != 0:
            return None
        found = []
        for i in range(count.value):
            handle = ctypes.c_void_p()
            if lib.nvmlDeviceGetHandleByIndex_v2(i, ctypes.byref(handle)) != 0:
                continue
            mem, name, uuid = _NvmlMemory(), ctypes.create_string_buffer(96), ctypes.create_string_buffer(96)
            if lib.nvmlDeviceGetMemoryInfo(handle, ctypes.byref(mem)) != 0:
                continue
            lib.nvmlDeviceGetName(handle, name, 96)
            lib.nvmlDeviceGetUUID(handle, uuid, 96)
            found.append(
                GPUInfo(
                    index=i,
                    uuid=uuid.value.decode(),
                    name=name.value.decode(),
                    total_gb=mem.total / GIB,
                    free_gb=mem.free / GIB,
                )
            )
        return found
    finally:
        lib.nvmlShutdown()


def _nvidia_smi() -> list[GPUInfo]:
    if not shutil.which("nvidia-smi"):
        return []
    query = "index,uuid,name,memory.total,memory.free"
    try:
        out = subprocess.run(
            ["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=20, check=True,
        ).stdout  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return []
    found = []
    for line in out.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 5:
            index, uuid, name, total, free = parts
            found.append(
                GPUInfo(index=int(index), uuid=uuid, name=name, total_gb=float(total) / 1024,
                        free_gb=float(free) / 1024)
            )  # fmt: skip
    return found


def visible(gpus: list[GPUInfo], setting: str | None) -> list[GPUInfo]:
    """The GPUs that a `CUDA_VISIBLE_DEVICES` value (indices or UUIDs) allows; all when it is unset."""
    if setting is None:
        return gpus
    wanted = [s.strip() for s in setting.split(",") if s.strip()]
    return [g for g in gpus if str(g.index) in wanted or any(g.uuid.startswith(w) for w in wanted if w)]


def probe_gpus() -> list[GPUInfo]:
    """This machine's GPUs that the scheduler may use, with their free memory now."""
    found = _nvml()
    if found is None:
        found = _nvidia_smi()
    return visible(found, os.environ.get("CUDA_VISIBLE_DEVICES"))
