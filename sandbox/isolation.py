"""What the local backend can isolate with on this host, detected once, and the argv that does it.

Levels, strongest first:
- `bwrap`: bubblewrap with new network, PID, IPC and UTS namespaces, the file system read-only, home
  directories, /tmp and /run hidden, and a private writable work dir; the sandbox dies with its parent.
- `unshare`: util-linux `unshare` with new network and PID namespaces; the file system stays as it is
  (a separate uid keeps the code out of root's files).
- `none`: a process group, rlimits and (as root) a separate uid only. The network is NOT isolated.
"""

from __future__ import annotations

import functools
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Literal

Level = Literal["bwrap", "unshare", "none"]
LEVELS: tuple[Level, ...] = ("bwrap", "unshare", "none")

REPO_ROOT = Path(__file__).resolve().parent.parent
"""Where the `sandbox` package lives: the worker imports it (and the targets) from here."""
HIDDEN_DIRS = ("/root", "/home", "/run", "/var/tmp", "/tmp", "/mnt", "/media")
"""Replaced by empty tmpfs inside bubblewrap: home directories (keys, tokens), sockets (a Docker or
podman API socket is root on the host), shared temporary dirs."""


def python_paths() -> list[Path]:
    """What the interpreter needs: the venv, the base install its binary links into, and the repo."""
    paths = {Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve(), REPO_ROOT}
    return sorted(paths)


def bwrap_argv(workdir: Path, shared: tuple[str, ...] = ()) -> list[str]:
    argv = [
        "bwrap", "--die-with-parent", "--unshare-net", "--unshare-pid", "--unshare-ipc",
        "--unshare-uts", "--unshare-cgroup-try", "--hostname", "sandbox", "--ro-bind", "/", "/",
    ]  # fmt: skip
    for hidden in HIDDEN_DIRS:
        if Path(hidden).is_dir() and not Path(hidden).is_symlink():
            argv += ["--perms", "1777", "--tmpfs", hidden] if "tmp" in hidden else ["--tmpfs", hidden]
    for path in python_paths():
        if any(path.is_relative_to(h) for h in HIDDEN_DIRS):
            argv += _bind("--ro-bind", path)
    argv += ["--proc", "/proc", "--dev", "/dev", *_bind("--bind", workdir)]
    for path in shared:  # SandboxRequest.shared_dirs: e.g. a proxy's Unix socket in the caller's process
        argv += _bind("--bind", Path(path))
    return [*argv, "--chdir", str(workdir), "--"]


def _bind(how: str, path: Path) -> list[str]:
    """Bind `path` at the same place; its parents inside a hidden (tmpfs) dir are made 0755, since
    bwrap would create them 0700, unreachable for the sandbox's uid."""
    argv: list[str] = []
    hidden = next((Path(h) for h in HIDDEN_DIRS if path.is_relative_to(h)), None)
    if hidden is not None:
        for parent in reversed(path.parents):
            if parent.is_relative_to(hidden) and parent != hidden:
                argv += ["--perms", "0755", "--dir", str(parent)]
    return [*argv, how, str(path), str(path)]


def unshare_argv() -> list[str]:
    return ["unshare", "--net", "--pid", "--fork", "--kill-child", "--mount-proc", "--ipc", "--uts", "--"]


def wrapper_argv(level: Level, workdir: Path, shared: tuple[str, ...] = ()) -> list[str]:
    """The wrapper's argv; `shared` dirs need no binding below bwrap (the file system is the host's)."""
    if level == "bwrap":
        return bwrap_argv(workdir, shared)
    if level == "unshare":
        return unshare_argv()
    return []


def _works(argv: list[str]) -> tuple[bool, str]:
    if not shutil.which(argv[0]):
        return False, f"`{argv[0]}` is not installed"
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"`{argv[0]}` cannot start: {exc}"
    if proc.returncode != 0:
        msg = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
        return False, f"`{argv[0]}` is refused on this host: {msg}"
    return True, ""


@functools.cache
def probe() -> dict[Level, tuple[bool, str]]:
    """Which levels work here, with the reason for each that does not (run once per process)."""
    with tempfile.TemporaryDirectory(prefix="disco-probe-") as probe_dir:
        return {
            "bwrap": _works([*bwrap_argv(Path(probe_dir)), "true"]),
            "unshare": _works([*unshare_argv(), "true"]),
            "none": (True, ""),
        }


def best_level() -> Level:
    return next(level for level in LEVELS if probe()[level][0])


def _world_traversable(path: Path) -> bool:
    for part in [path, *path.parents]:
        try:
            if part.is_dir() and not part.stat().st_mode & stat.S_IXOTH:
                return False
        except OSError:
            return False
    return True


def can_drop_uid(level: Level) -> tuple[bool, str]:
    """A separate uid needs root, and (outside bubblewrap, which re-creates the parents) an interpreter
    and a repo that other users can reach."""
    if os.geteuid() != 0:
        return False, "not root: the code runs as the caller's uid (no process-count limit)"
    if level != "bwrap":
        blocked = [p for p in python_paths() if not _world_traversable(p)]
        if blocked:
            return False, f"{blocked[0]} is not reachable by another uid: the code runs as root"
    return True, ""


def describe(level: Level, uid_ok: bool) -> list[str]:
    """The isolation a run gets, in words; what is missing is said plainly."""
    words = {
        "bwrap": ["network: none (network namespace)", "file system: read-only, home and /tmp hidden",
                  "processes: own PID namespace (nothing outlives the run)"],
        "unshare": ["network: none (network namespace)",
                    "file system: NOT read-only (bubblewrap unavailable)",
                    "processes: own PID namespace (nothing outlives the run)"],
        "none": ["network: NOT isolated (no namespaces on this host)",
                 "file system: NOT read-only (bubblewrap unavailable)",
                 "processes: process group only; kill by uid" if uid_ok else
                 "processes: process group only (a daemon that calls setsid may survive)"],
    }[level]  # fmt: skip
    words = list(words)
    words.append("uid: separate unprivileged uid" if uid_ok else "uid: same as the caller")
    if not uid_ok and level != "bwrap":
        # Measured by the escape suite: as the caller's uid, code writes wherever the caller may write,
        # and (without a PID namespace) may signal the caller itself.
        words.append("WARNING: the code can write wherever the caller can")
        if level == "none":
            words.append("WARNING: the code can signal (kill) the caller's processes")
    words.append("limits: CPU, address space, file size, open files" + (", processes" if uid_ok else ""))
    words.append("environment: scrubbed")
    return words
