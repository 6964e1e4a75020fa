"""Confine a long-lived worker process in place: the sandbox's isolation for pools that cannot be
started through `sandbox.local` (e.g. the DPO sweep's ProcessPoolExecutor workers, which keep torch,
TRL and the task warm across many trainings).

`confine_current_process(Confinement(...))` is called first in the worker (its pool `initializer`),
before it starts any thread: namespaces are per thread, and threads started later inherit the
confined ones. It gives the worker an empty network namespace, a read-only view of the file system
except the directories it must write (and a private /tmp), a scrubbed environment, rlimits and
no-new-privileges, and returns what it achieved in words; what the host refuses is said, not hidden.
Pipes and /dev/shm, through which multiprocessing talks to the parent, keep working.
"""

from __future__ import annotations

import ctypes
import os
import resource
import sys
import threading
from pathlib import Path

from pydantic import BaseModel, Field

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
MS_NOATIME, MS_NODIRATIME, MS_RELATIME = 1024, 2048, 1 << 21
_FLAGS = {"nosuid": MS_NOSUID, "nodev": MS_NODEV, "noexec": MS_NOEXEC, "noatime": MS_NOATIME,
          "nodiratime": MS_NODIRATIME, "relatime": MS_RELATIME}  # fmt: skip
KEEP_ENV_PREFIXES = ("HF_", "CUDA_", "NVIDIA_", "OMP_", "MKL_", "TORCH", "PYTORCH_", "DISCO_", "LC_")
KEEP_ENV = frozenset({"PATH", "HOME", "LANG", "TZ", "TMPDIR", "TOKENIZERS_PARALLELISM", "PYTHONHASHSEED"})
_SECRET_WORDS = ("KEY", "TOKEN", "SECRET", "PASSWORD", "CREDENTIAL", "AUTH")


class Confinement(BaseModel):
    """What to take away from a worker process."""

    network: bool = False
    """False: an empty network namespace (not even loopback is up)."""
    writable: list[Path] = Field(default_factory=list)
    """Directories that stay writable (caches, outputs); everything else becomes read-only."""
    readonly_fs: bool = True
    private_tmp: bool = True
    """A fresh, private tmpfs on /tmp."""
    memory_mb: int | None = None
    """RLIMIT_AS; leave None for CUDA workers (CUDA reserves huge virtual ranges)."""
    cpu_s: float | None = None
    max_file_mb: int | None = 8192
    max_open_files: int | None = 4096


def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
    return libc


def _unshare(libc: ctypes.CDLL, flags: int) -> str | None:
    """None on success, else the reason."""
    if libc.unshare(flags) == 0:
        return None
    err = ctypes.get_errno()
    uid, gid = os.geteuid(), os.getegid()  # read before: inside a new user namespace they are unmapped
    if uid != 0 and libc.unshare(CLONE_NEWUSER | flags) == 0:
        Path("/proc/self/setgroups").write_text("deny")
        Path("/proc/self/uid_map").write_text(f"{uid} {uid} 1")
        Path("/proc/self/gid_map").write_text(f"{gid} {gid} 1")
        return None
    return os.strerror(err)


def _mount(
    libc: ctypes.CDLL, src: str | None, dst: str, fstype: str | None, flags: int, data: str = ""
) -> str | None:
    enc = [None if v is None else v.encode() for v in (src, dst, fstype)]
    if libc.mount(enc[0], enc[1], enc[2], flags, data.encode() or None) == 0:
        return None
    return f"{dst}: {os.strerror(ctypes.get_errno())}"


def _mounts() -> list[tuple[str, int]]:
    """(mount point, its per-mount flags) from mountinfo, parents first."""
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        point = fields[4].replace("\\040", " ")
        flags = sum(_FLAGS.get(opt, 0) for opt in fields[5].split(","))
        found.append((point, flags))
    return sorted(set(found), key=lambda m: m[0].count("/"))


def _code_under_tmp() -> set[str]:
    """Top directories under /tmp that hold this interpreter's code (a checkout or venv cloned into
    /tmp): the private /tmp would hide them, so they are bound back (read-only like the rest)."""
    found = set()
    for entry in (os.getcwd(), sys.prefix, sys.base_prefix, *sys.path):
        if not entry:
            continue
        parts = Path(entry).resolve().parts
        if len(parts) > 2 and parts[1] == "tmp" and Path("/tmp", parts[2]).is_dir():
            found.add(str(Path("/tmp", parts[2])))
    return found


def _filesystem(libc: ctypes.CDLL, conf: Confinement) -> list[str]:
    err = _unshare(libc, CLONE_NEWNS)
    if err:
        return [f"file system: NOT read-only (mount namespace refused: {err})"]
    failures = [e for e in [_mount(libc, None, "/", None, MS_REC | MS_PRIVATE)] if e]
    keep = {str(p.resolve()) for p in conf.writable}
    # Held open so that dirs under /tmp can be bound back on top of the private tmpfs: code first, then
    # the writable dirs (which may lie inside it) on top.
    code = sorted(_code_under_tmp() - keep) if conf.private_tmp else []
    held = {path: os.open(path, os.O_PATH | os.O_DIRECTORY) for path in [*code, *sorted(keep)]}
    if conf.private_tmp:
        flags = MS_NOSUID | MS_NODEV
        failures += [e for e in [_mount(libc, "tmpfs", "/tmp", "tmpfs", flags, "mode=1777")] if e]
    for path, fd in held.items():
        os.makedirs(path, exist_ok=True)
        failures += [e for e in [_mount(libc, f"/proc/self/fd/{fd}", path, None, MS_BIND | MS_REC)] if e]
        os.close(fd)
    if conf.readonly_fs:
        skip = keep | {"/tmp", "/dev/shm"}
        for point, flags in _mounts():
            if point in skip or point.startswith(("/proc", "/sys", "/dev")):
                continue
            err = _mount(libc, None, point, None, MS_REMOUNT | MS_BIND | MS_RDONLY | flags)
            if err and point == "/":
                failures.append(err)
    if failures:
        return [f"file system: partly confined ({'; '.join(failures[:3])})"]
    writable = ", ".join(sorted(keep)) or "nothing"
    tmp = ", private /tmp" if conf.private_tmp else ""
    return [f"file system: read-only except {writable}{tmp}" if conf.readonly_fs else "file system: as is"]


def _scrub_env() -> list[str]:
    dropped = []
    for name in list(os.environ):
        secret = any(word in name.upper() for word in _SECRET_WORDS)
        if secret or not (name in KEEP_ENV or name.startswith(KEEP_ENV_PREFIXES)):
            dropped.append(name)
            del os.environ[name]
    return [f"environment: scrubbed ({len(dropped)} variables removed)"]


def _rlimits(conf: Confinement) -> list[str]:
    set_ = []
    for name, which, value in (
        ("address space", resource.RLIMIT_AS, conf.memory_mb and conf.memory_mb << 20),
        ("cpu seconds", resource.RLIMIT_CPU, None if conf.cpu_s is None else int(conf.cpu_s) + 1),
        ("file size", resource.RLIMIT_FSIZE, conf.max_file_mb and conf.max_file_mb << 20),
        ("open files", resource.RLIMIT_NOFILE, conf.max_open_files),
        ("core dumps", resource.RLIMIT_CORE, 0),
    ):
        if value is None:
            continue
        hard = resource.getrlimit(which)[1]
        value = value if hard == resource.RLIM_INFINITY else min(value, hard)
        resource.setrlimit(which, (value, value))
        set_.append(name)
    return [f"limits: {', '.join(set_)}"]


def confine_current_process(conf: Confinement | None = None) -> list[str]:
    """Confine this process (call before it starts threads); returns what was achieved, in words."""
    conf = conf or Confinement()
    if threading.active_count() > 1:
        raise RuntimeError("confine_current_process must run before the process starts any thread")
    libc = _libc()
    achieved = []
    if not conf.network:
        err = _unshare(libc, CLONE_NEWNET)
        achieved.append(f"network: NOT isolated ({err})" if err else "network: none (network namespace)")
    achieved += _filesystem(libc, conf)
    achieved += _scrub_env()
    achieved += _rlimits(conf)
    libc.prctl(38, 1, 0, 0, 0)  # PR_SET_NO_NEW_PRIVS: no setuid binary gives privileges back
    return achieved
