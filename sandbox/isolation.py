"""What the local backend isolates with on this host, detected once, and the allow-list both of disco's
process boxes (this bubblewrap sandbox and the in-place jail of `sandbox.jail`) are built from.

Levels, strongest first:
- `bwrap`: bubblewrap; a fresh root holding only the allow-list below (read-only), a private /tmp,
  a minimal /dev and the sandbox's own /proc; new PID, network, IPC, UTS and cgroup namespaces; no
  capabilities (the worker drops the three it keeps for its uid change, see `sandbox.worker`), the
  seccomp filter of `sandbox.seccomp`, no_new_privs, a new session; it dies with its parent.
- `unshare`: util-linux `unshare` with new network and PID namespaces; the whole file system is visible.
- `none`: a process group, rlimits and (as root) a separate uid only. The network is NOT isolated.

Only `bwrap` gives the guarantees of issue 15 (no secret readable, no way out of the box), so the local
backend refuses the weaker two unless the user opted in (`--unsafe-sandbox`, `[sandbox] unsafe = true`,
which set DISCO_UNSAFE_SANDBOX=1).

The allow-list: the interpreter's install (`sys.base_prefix`), the venv (`sys.prefix`), disco's own
packages (`sandbox/`, `targets/`, `memory/`; not the checkout, which holds `.disco/` with runs, memory
and caches), site-packages directories on `sys.path`, the system libraries (`/usr/lib`, `/lib`, ...),
two files of /etc (the loader cache and the time zone), plus what a run needs: its work dir, read-only
inputs and shared dirs (e.g. the ADAS proxy's socket). Home directories, /srv, /opt, /run, /var, /mnt,
/etc's other files and the data dir are absent, not merely hidden.
"""

from __future__ import annotations

import functools
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Level = Literal["bwrap", "unshare", "none"]
LEVELS: tuple[Level, ...] = ("bwrap", "unshare", "none")

REPO_ROOT = Path(__file__).resolve().parent.parent
"""Where the `sandbox` package lives: the worker imports it (and the targets) from here."""
PACKAGE_DIRS = ("sandbox", "targets", "memory")
"""disco's packages that sandboxed code may import; `agent/`, `tools/`, `tui/` (the trusted side) are
left out, and so is the rest of the checkout."""
SYSTEM_DIRS = ("/usr/lib", "/usr/lib64", "/lib", "/lib64", "/usr/local/lib")
"""Shared libraries (libc, libgomp, libstdc++ ...) for the interpreter, torch and their extensions."""
EXEC_DIRS = ("/usr/bin", "/bin")
"""Only in the bubblewrap sandbox, whose `command` requests run programs (`sh -c ...`)."""
ETC_FILES = ("/etc/ld.so.cache", "/etc/localtime")
"""The only files of /etc: the loader's cache (dlopen by soname) and the time zone. No passwd: USER
and LOGNAME are set, which is what `getpass.getuser()` reads first."""
UNSAFE_ENV = "DISCO_UNSAFE_SANDBOX"
UNSAFE_HINT = "--unsafe-sandbox, `[sandbox] unsafe = true` in the config or DISCO_UNSAFE_SANDBOX=1"
TMP_MB = 256
"""Size of the bubblewrap sandbox's private /tmp (RAM-backed)."""


def unsafe_opted_in() -> bool:
    """The user accepted weaker isolation than the allow-list sandbox (the CLI flag sets the variable)."""
    return os.environ.get(UNSAFE_ENV) == "1"


@dataclass(frozen=True)
class Bind:
    """One entry of a sandbox's file system: `source` bound at `dest` (read-only or not), or a symlink
    at `dest` whose text is `source`."""

    dest: str
    source: str
    kind: Literal["ro", "rw", "symlink"]


def python_paths() -> list[Path]:
    """The interpreter's install and the venv (real paths and, where they differ, the paths Python was
    started by), and disco's own package dirs."""
    paths = set()
    for prefix in (sys.prefix, sys.base_prefix):
        paths |= {Path(os.path.abspath(prefix)), Path(prefix).resolve()}
    paths |= {REPO_ROOT / name for name in PACKAGE_DIRS if (REPO_ROOT / name).is_dir()}
    return sorted(paths)


def _site_dirs(entries: tuple[str, ...]) -> list[Path]:
    """site-packages and dist-packages dirs on sys.path outside the prefixes (editable installs, a user
    site): never the checkout itself, nor a parent of it."""
    prefixes = [Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve()]
    found = []
    for entry in entries:
        if not entry or not os.path.isabs(entry) or not os.path.isdir(entry):
            continue
        path = Path(entry).resolve()
        if any(path.is_relative_to(p) for p in prefixes):
            continue
        if path.is_relative_to(REPO_ROOT) or REPO_ROOT.is_relative_to(path):
            continue
        if path.name in ("site-packages", "dist-packages"):
            found.append(path)
    return found


def code_paths() -> list[Path]:
    """What a sandbox must mount read-only to run disco's worker with this interpreter: the prefixes,
    disco's packages and site-packages dirs on sys.path (the system libraries excluded)."""
    return sorted({*python_paths(), *_site_dirs(tuple(sys.path))})


def _system(names: Iterable[str]) -> list[Bind]:
    binds = []
    for name in names:
        if os.path.islink(name) and Path(name).parent == Path("/"):  # merged /usr: /lib -> usr/lib
            binds.append(Bind(name, os.readlink(name), "symlink"))
        elif os.path.isdir(name):
            real = str(Path(name).resolve())
            binds.append(Bind(real, real, "ro"))
    return binds


@functools.lru_cache(maxsize=8)
def _base(path_entries: tuple[str, ...], exec_dirs: bool) -> tuple[Bind, ...]:
    """The part of the allow-list that depends on the interpreter only (computed once per sys.path: a
    forked jail child then pays nothing for it)."""
    binds = _system([*SYSTEM_DIRS, *(EXEC_DIRS if exec_dirs else ())])
    for path in [*python_paths(), *_site_dirs(path_entries)]:
        if path.exists():
            binds.append(Bind(os.path.abspath(path), str(path.resolve()), "ro"))
    for name in ETC_FILES:
        if os.path.exists(name):
            binds.append(Bind(name, os.path.realpath(name), "ro"))
    return tuple(binds)


def allow_list(
    readonly: Iterable[Path] = (), writable: Iterable[Path] = (), exec_dirs: bool = False
) -> list[Bind]:
    """Everything a sandboxed process sees of the host, parents before children; a read-only path
    inside another read-only one is left out (the outer bind brings it)."""
    binds = list(_base(tuple(sys.path), exec_dirs))
    for path in map(Path, readonly):
        if path.exists():
            binds.append(Bind(os.path.abspath(path), str(path.resolve()), "ro"))
    for path in map(Path, writable):
        binds.append(Bind(os.path.abspath(path), str(path.resolve()), "rw"))
    unique = sorted(set(binds), key=lambda b: (b.dest.count("/"), b.dest, b.kind))
    kept: list[Bind] = []
    for bind in unique:
        covered = any(
            outer.kind == "ro" and outer.dest == outer.source and bind.dest == bind.source
            and Path(bind.dest).is_relative_to(outer.dest)
            for outer in kept
        )  # fmt: skip
        if not (bind.kind == "ro" and covered) and all(k.dest != bind.dest for k in kept):
            kept.append(bind)
    return kept


def bwrap_argv(
    workdir: Path, shared: tuple[str, ...] = (), seccomp_fd: int | None = None, drop_uid: bool = False
) -> list[str]:
    """bubblewrap's argv for a worker: the allow-list, its work dir and shared dirs read-write.

    As root the worker keeps CAP_SETUID/SETGID/SETPCAP (nothing else) to empty its bounding set and
    drop to its own uid after the preload (`sandbox.worker._confine`); a user namespace would map that
    uid back to root, whose processes RLIMIT_NPROC does not count."""
    argv = ["bwrap", "--die-with-parent", "--new-session", "--unshare-pid", "--unshare-net",
            "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try", "--hostname", "sandbox",
            "--cap-drop", "ALL"]  # fmt: skip
    if os.geteuid() != 0:
        argv.append("--unshare-user")
    elif drop_uid:
        argv += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID", "--cap-add", "CAP_SETPCAP"]
    made: set[str] = {"/"}
    binds = allow_list(writable=[workdir, *map(Path, shared)], exec_dirs=True)
    made |= {"/tmp", "/dev", "/proc"}
    argv += [
        "--dev",
        "/dev",
        "--proc",
        "/proc",
        "--size",
        str(TMP_MB << 20),
        "--perms",
        "1777",
        "--tmpfs",
        "/tmp",
    ]
    for bind in binds:
        for parent in reversed(Path(bind.dest).parents):
            if str(parent) not in made:  # bwrap would make it 0700, unreachable for the sandbox's uid
                argv += ["--perms", "0755", "--dir", str(parent)]
                made.add(str(parent))
        made.add(bind.dest)
        if bind.kind == "symlink":
            argv += ["--symlink", bind.source, bind.dest]
        else:
            argv += ["--ro-bind" if bind.kind == "ro" else "--bind", bind.source, bind.dest]
    argv += ["--remount-ro", "/"]
    if seccomp_fd is not None:
        argv += ["--seccomp", str(seccomp_fd)]
    return [*argv, "--chdir", str(workdir), "--"]


@contextmanager
def seccomp_fd() -> Iterator[int]:
    """A pipe holding the seccomp program for `bwrap --seccomp FD` (pass it with Popen's pass_fds);
    closed here once the launch is done."""
    from sandbox.seccomp import filter_bytes

    read, write = os.pipe()
    try:
        os.write(write, filter_bytes())
        os.close(write)
        write = -1
        yield read
    finally:
        os.close(read)
        if write != -1:
            os.close(write)


def unshare_argv() -> list[str]:
    """The weaker level's wrapper; a non-root caller needs a user namespace (its own uid mapped to itself)
    for the others."""
    user = [] if os.geteuid() == 0 else ["--map-current-user"]
    return [
        "unshare",
        *user,
        "--net",
        "--pid",
        "--fork",
        "--kill-child",
        "--mount-proc",
        "--ipc",
        "--uts",
        "--",
    ]


def wrapper_argv(
    level: Level, workdir: Path, shared: tuple[str, ...] = (), fd: int | None = None, drop_uid: bool = False
) -> list[str]:
    """The wrapper's argv; `shared` dirs need no binding below bwrap (the file system is the host's)."""
    if level == "bwrap":
        return bwrap_argv(workdir, shared, fd, drop_uid)
    if level == "unshare":
        return unshare_argv()
    return []


def _works(argv: list[str], pass_fds: tuple[int, ...] = ()) -> tuple[bool, str]:
    if not shutil.which(argv[0]):
        return False, f"`{argv[0]}` is not installed"
    try:
        proc = subprocess.run(
            argv, capture_output=True, text=True, timeout=10, check=False, pass_fds=pass_fds
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"`{argv[0]}` cannot start: {exc}"
    if proc.returncode != 0:
        msg = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
        return False, f"`{argv[0]}` is refused on this host: {msg}"
    return True, ""


@functools.cache
def probe() -> dict[Level, tuple[bool, str]]:
    """Which levels work here, with the reason for each that does not (run once per process). bwrap is
    probed with everything a worker gets: the allow-list, the seccomp filter and the kept capabilities."""
    with tempfile.TemporaryDirectory(prefix="disco-probe-") as probe_dir, seccomp_fd() as fd:
        drop = os.geteuid() == 0
        return {
            "bwrap": _works([*bwrap_argv(Path(probe_dir), (), fd, drop), "true"], (fd,)),
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
        if level == "bwrap":
            return False, "not root: the code runs as the caller's uid inside a user namespace"
        return False, "not root: the code runs as the caller's uid (no process-count limit)"
    if level != "bwrap":
        blocked = [p for p in python_paths() if not _world_traversable(p)]
        if blocked:
            return False, f"{blocked[0]} is not reachable by another uid: the code runs as root"
    return True, ""


def describe(level: Level, uid_ok: bool) -> list[str]:
    """The isolation a run gets, in words; what is missing is said plainly."""
    from sandbox.seccomp import deny_list

    words = {
        "bwrap": ["network: none (network namespace)",
                  "file system: allow-list only (interpreter, venv, disco's packages, system libraries), "
                  "read-only; private /tmp and work dir",
                  "processes: own PID namespace (nothing outlives the run)",
                  "capabilities: none (empty bounding set), no_new_privs",
                  f"seccomp: {len(deny_list())} system calls denied (namespaces, mount, ptrace, bpf, ...)"],
        "unshare": ["network: none (network namespace)",
                    "file system: NOT isolated: the whole host is readable (bubblewrap unavailable)",
                    "processes: own PID namespace (nothing outlives the run)"],
        "none": ["network: NOT isolated (no namespaces on this host)",
                 "file system: NOT isolated: the whole host is readable (bubblewrap unavailable)",
                 "processes: process group only; kill by uid" if uid_ok else
                 "processes: process group only (a daemon that calls setsid may survive)"],
    }[level]  # fmt: skip
    words = list(words)
    if level == "bwrap":
        words.append("uid: separate unprivileged uid" if uid_ok else "uid: the caller's, in a user namespace")
    else:
        words.append("uid: separate unprivileged uid" if uid_ok else "uid: same as the caller")
        words.append("WARNING: weaker isolation accepted by the user (--unsafe-sandbox)")
    if not uid_ok and level != "bwrap":
        # Measured by the escape suite: as the caller's uid, code writes wherever the caller may write,
        # and (without a PID namespace) may signal the caller itself.
        words.append("WARNING: the code can write wherever the caller can")
        if level == "none":
            words.append("WARNING: the code can signal (kill) the caller's processes")
    words.append("limits: CPU, address space, file size, open files, processes")
    words.append("environment: scrubbed")
    return words
