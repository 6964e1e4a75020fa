"""Confine a freshly forked process in place: the box that candidate training runs in.

A warm "zygote" (torch, transformers and TRL imported, the task loaded) forks a child per candidate and
calls `enter_jail` first thing in it: no exec, so the imports stay warm, and the jail costs a few
milliseconds (two forks and some mounts). What the child gets:

- namespaces: new mount, PID, network (unless `network`), IPC, UTS and cgroup namespaces; as non-root a
  user namespace first (mapping only the caller's own uid), which is what allows the others;
- a file system made of the allow-list only (`sandbox.isolation.allow_list`): a tmpfs root, read-only
  binds of the interpreter, the venv, disco's packages, site-packages dirs and system libraries, the
  loader cache and time zone of /etc, the spec's read-only inputs and read-write scratch dirs, a minimal
  /dev, a /proc of its own PID namespace and a private tmpfs /tmp; then `pivot_root` and the old root
  detached: the rest of the host is absent, not hidden;
- as root: its own uid (JAIL_UID_BASE + the pid of the process that called `enter_jail`, unique while it
  lives), supplementary groups dropped, the writable dirs handed to it; always: an empty capability
  bounding, ambient, effective and permitted set, no_new_privs, rlimits, a scrubbed environment (and
  the process's original environment block zeroed, which /proc/self/environ reads), then the seccomp
  filter of `sandbox.seccomp`.

Process layout: the caller's child C unshares and forks J, PID 1 of the new PID namespace, which sets
up the file system and privileges and returns from `enter_jail` to run the job. C waits for J and
`os._exit`s with its status (a signal n as 128 + n), so the caller's waitpid on C sees the job's exit
code. J dies with C (PR_SET_PDEATHSIG, set again after the uid change, which clears it) and everything
in the namespace dies with J: killing C kills the job and all it started.
J being PID 1 (one fork less than a separate reaper, ~10 ms with torch loaded) has two consequences:
orphans of the job's own children stay zombies until the job ends (bounded by `max_processes`), and a
signal J sends itself with its default action is ignored by the kernel. RLIMIT_CPU's SIGXCPU is
therefore handled (exit 128 + SIGXCPU) and its hard limit, a second later, is SIGKILL, which does reach
a PID 1.

Memory the zygote holds is the child's too (fork): a zygote must never hold a secret. The environment
block is wiped here; Python objects are not.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import os
import resource
import signal
import stat
from pathlib import Path

from pydantic import BaseModel, Field

from sandbox.fds import readable
from sandbox.fork import fork_without_inherited_garbage
from sandbox.isolation import UNSAFE_HINT, Bind, allow_list
from sandbox.seccomp import deny_list, filter_bytes, install

JAIL_UID_BASE = 1_000_000
"""Jailed processes run as this plus a pid when started as root (pids are below 2**22)."""
JAIL_HOSTNAME = "jail"
DEVICES = ("null", "zero", "full", "random", "urandom")

CLONE_NEWNS, CLONE_NEWCGROUP, CLONE_NEWUTS, CLONE_NEWIPC = 0x20000, 0x2000000, 0x4000000, 0x8000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
MS_NOATIME, MS_NODIRATIME, MS_RELATIME = 1024, 2048, 1 << 21
MNT_DETACH = 2
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_CAPBSET_DROP, PR_CAP_AMBIENT = 1, 4, 24, 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}
KEEP_ENV = frozenset({"LANG", "TZ", "PYTHONHASHSEED", "TOKENIZERS_PARALLELISM", "CUDA_VISIBLE_DEVICES"})
KEEP_ENV_PREFIXES = (
    "LC_",
    "OMP_",
    "MKL_",
    "OPENBLAS_",
    "HF_HUB_",
    "HF_DATASETS_OFFLINE",
    "TRANSFORMERS_OFFLINE",
)
SECRET_WORDS = ("KEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL", "AUTH", "COOKIE", "SESSION")

# Resolved at import, in the trusted zygote: a forked child should not dlopen.
_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.sethostname.argtypes = [ctypes.c_char_p, ctypes.c_size_t]


class JailSpec(BaseModel):
    """What a jailed process may see and use."""

    readonly: list[Path] = Field(default_factory=list)
    """Inputs the job needs, bound read-only at the same path (e.g. a cache dir)."""
    writable: list[Path] = Field(default_factory=list)
    """Private scratch dirs, bound read-write at the same path (as root: handed to the jail's uid)."""
    network: bool = False
    """False: an empty network namespace (not even loopback is up)."""
    unsafe: bool = False
    """The user opted in to weaker isolation (--unsafe-sandbox): do what the host allows, never raise."""
    uid: int | None = None
    """uid to run as when started as root (default JAIL_UID_BASE + the caller's pid)."""
    memory_mb: int | None = None
    """RLIMIT_AS in MB: the whole address space, what the forked process maps already included."""
    cpu_s: float | None = None
    """CPU seconds of the job's process (SIGXCPU, then SIGKILL a second later)."""
    max_file_mb: int | None = 1024
    """Largest file the job may write (RLIMIT_FSIZE)."""
    max_processes: int | None = 64
    """Processes and threads (RLIMIT_NPROC: counted for the jail's own uid or user namespace)."""
    max_open_files: int | None = 1024
    tmp_mb: int = 256
    """Size of the private /tmp (RAM-backed), and of /dev/shm a quarter of it."""


class JailRefused(RuntimeError):
    """The host refused part of the jail and the user did not opt in to weaker isolation."""


def _fail(what: str) -> str:
    err = ctypes.get_errno()
    return f"{what}: {os.strerror(err) if err else 'failed'}"


class _Steps:
    """Runs set-up steps; a failure raises JailRefused, or (unsafe) is noted and skipped."""

    def __init__(self, unsafe: bool) -> None:
        self.unsafe = unsafe
        self.missing: list[str] = []

    def need(self, ok: bool, what: str) -> bool:
        if ok:
            return True
        if not self.unsafe:
            raise JailRefused(
                f"the host refused to jail candidate code ({_fail(what)}); to run it with weaker isolation "
                f"anyway, opt in with {UNSAFE_HINT}"
            )
        self.missing.append(_fail(what))
        return False


def _mount(src: str | None, dst: str, fstype: str | None, flags: int, data: str | None = None) -> bool:
    enc = [None if v is None else v.encode() for v in (src, dst, fstype, data)]
    return _libc.mount(enc[0], enc[1], enc[2], flags, enc[3]) == 0


def _write(path: str, text: str) -> bool:
    try:
        with open(path, "w", encoding="ascii") as fh:
            fh.write(text)
        return True
    except OSError as exc:
        ctypes.set_errno(exc.errno or errno.EPERM)
        return False


def _locked_flags(path: str) -> int:
    """Per-mount flags a bind must keep when remounted (a user namespace may not clear them)."""
    try:
        f = os.statvfs(path).f_flag
    except OSError:
        return 0
    pairs = ((os.ST_NOSUID, MS_NOSUID), (os.ST_NODEV, MS_NODEV), (os.ST_NOEXEC, MS_NOEXEC),
             (os.ST_NOATIME, MS_NOATIME), (os.ST_NODIRATIME, MS_NODIRATIME),
             (os.ST_RELATIME, MS_RELATIME))  # fmt: skip
    return sum(ms for st, ms in pairs if f & st)


def _namespaces(spec: JailSpec, steps: _Steps) -> list[str]:
    said = []
    if os.geteuid() != 0:
        uid, gid = os.geteuid(), os.getegid()
        if steps.need(_libc.unshare(CLONE_NEWUSER) == 0, "unshare(CLONE_NEWUSER)"):
            ok = _write("/proc/self/setgroups", "deny")
            ok = ok and _write("/proc/self/uid_map", f"{uid} {uid} 1")
            ok = ok and _write("/proc/self/gid_map", f"{gid} {gid} 1")
            if steps.need(ok, "writing the user namespace's uid map"):
                said.append(f"uid: {uid} (the caller's, in a user namespace of its own)")
    flags = {"mount": CLONE_NEWNS, "PID": CLONE_NEWPID, "IPC": CLONE_NEWIPC, "UTS": CLONE_NEWUTS}
    if not spec.network:
        flags["network"] = CLONE_NEWNET
    if _libc.unshare(sum(flags.values())) != 0:
        for name, flag in flags.items():  # unsafe: take what the host gives
            steps.need(_libc.unshare(flag) == 0, f"unshare({name} namespace)")
    said.append("namespaces: " + ", ".join(flags))
    if not spec.network:
        said.append("network: none (an empty network namespace)")
    else:
        said.append("network: the host's (asked for)")
    _libc.unshare(CLONE_NEWCGROUP)  # hides the host's cgroup paths; harmless when refused
    return said


def _bind(fd: int, target: str, bind: Bind, steps: _Steps) -> None:
    if not steps.need(_mount(f"/proc/self/fd/{fd}", target, None, MS_BIND), f"bind {bind.dest}"):
        return
    flags = MS_BIND | MS_REMOUNT | MS_NOSUID | MS_NODEV | _locked_flags(target)
    if bind.kind == "ro":
        flags |= MS_RDONLY
    steps.need(_mount(None, target, None, flags), f"remount {bind.dest}")


def _mountpoint(path: str, like_dir: bool) -> None:
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    if like_dir:
        os.makedirs(path, mode=0o755, exist_ok=True)
    elif not os.path.exists(path):
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o644))


def _filesystem(spec: JailSpec, binds: list[Bind], steps: _Steps) -> list[str]:
    """Build the new root on a tmpfs, pivot into it and detach the old one."""
    if not steps.need(_mount(None, "/", None, MS_REC | MS_PRIVATE), "making mounts private"):
        return ["file system: NOT isolated (the host's, as is)"]
    sources = {b.source for b in binds if b.kind != "symlink"} | {f"/dev/{d}" for d in DEVICES}
    fds = {}
    for src in sorted(sources):  # held open: the new root's tmpfs is mounted over /tmp, where some live
        with contextlib.suppress(OSError):
            fds[src] = os.open(src, os.O_PATH | os.O_CLOEXEC)
    try:
        root = "/tmp"
        os.umask(0o022)
        if not steps.need(
            _mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=4m"), "tmpfs root"
        ):
            return ["file system: NOT isolated (the host's, as is)"]
        # /tmp, /dev and /proc first: binds may land below them (a scratch dir under /tmp).
        os.makedirs(root + "/tmp")
        steps.need(
            _mount("tmpfs", root + "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, f"mode=1777,size={spec.tmp_mb}m"),
            "mount /tmp",
        )
        _dev(root, fds, spec, steps)
        os.makedirs(root + "/proc", mode=0o555)
        steps.need(_mount("proc", root + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC), "mount /proc")
        for bind in binds:
            target = root + bind.dest
            if bind.kind == "symlink":
                os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
                os.symlink(bind.source, target)
            elif bind.source in fds:
                _mountpoint(target, stat.S_ISDIR(os.fstat(fds[bind.source]).st_mode))
                _bind(fds[bind.source], target, bind, steps)
        _mount(None, root + "/dev", None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)
    finally:
        for fd in fds.values():
            os.close(fd)
    os.chdir(root)
    nr = SYS_PIVOT_ROOT.get(os.uname().machine)
    if not steps.need(nr is not None and _libc.syscall(nr, b".", b".") == 0, "pivot_root"):
        os.chdir("/")
        return ["file system: NOT isolated (pivot_root refused)"]
    steps.need(_libc.umount2(b".", MNT_DETACH) == 0, "detaching the old root")
    os.chdir("/")
    steps.need(
        _mount(None, "/", None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV), "read-only /"
    )
    rw = ", ".join(str(p) for p in spec.writable) or "nothing"
    return [f"file system: allow-list only, read-only except {rw}, a private /tmp ({spec.tmp_mb} MB)"]


def _dev(root: str, fds: dict[str, int], spec: JailSpec, steps: _Steps) -> None:
    dev = root + "/dev"
    os.makedirs(dev, exist_ok=True)
    steps.need(
        _mount("tmpfs", dev, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=0755,size=64k"), "tmpfs /dev"
    )
    for name in DEVICES:
        if f"/dev/{name}" in fds:
            _mountpoint(f"{dev}/{name}", like_dir=False)
            if steps.need(
                _mount(f"/proc/self/fd/{fds[f'/dev/{name}']}", f"{dev}/{name}", None, MS_BIND), name
            ):
                flags = MS_BIND | MS_REMOUNT | MS_NOSUID | MS_NOEXEC | _locked_flags(f"{dev}/{name}")
                _mount(None, f"{dev}/{name}", None, flags & ~MS_NODEV)
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
                         ("stderr", "/proc/self/fd/2")):  # fmt: skip
        os.symlink(target, f"{dev}/{name}")
    os.makedirs(f"{dev}/shm", exist_ok=True)
    size = max(1, spec.tmp_mb // 4)
    steps.need(
        _mount("tmpfs", f"{dev}/shm", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, f"mode=1777,size={size}m"),
        "mount /dev/shm",
    )


def _close_directory_fds() -> None:
    """An inherited directory fd would be a way back into the host's tree (openat(fd, "..")): close it."""
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        with contextlib.suppress(OSError):
            if stat.S_ISDIR(os.fstat(fd).st_mode):
                os.close(fd)


def _drop_privileges(spec: JailSpec, uid: int | None, steps: _Steps) -> list[str]:
    said = []
    if uid is not None:  # root: hand the scratch dirs to the jail's uid first
        for top in spec.writable:
            for dirpath, dirnames, filenames in os.walk(top):
                for name in [dirpath, *(os.path.join(dirpath, n) for n in dirnames + filenames)]:
                    with contextlib.suppress(OSError):
                        os.lchown(name, uid, uid)
    for cap in range(64):
        if _libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            if ctypes.get_errno() == errno.EINVAL:
                break
            steps.need(False, "emptying the capability bounding set")
            break
    _libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    if uid is not None:
        try:
            os.setgroups([])
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
            said.append(f"uid: {uid} (its own, unprivileged; no supplementary groups)")
        except OSError as exc:
            ctypes.set_errno(exc.errno or errno.EPERM)
            steps.need(False, f"switching to uid {uid}")
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3
    steps.need(_libc.capset(header, (ctypes.c_uint32 * 6)()) == 0, "clearing capabilities")
    said.append("capabilities: none (bounding, ambient, effective and permitted sets empty)")
    return said


def _rlimits(spec: JailSpec) -> list[str]:
    done = []
    for name, which, value in (
        ("address space", resource.RLIMIT_AS, spec.memory_mb and spec.memory_mb << 20),
        ("cpu seconds", resource.RLIMIT_CPU, None if spec.cpu_s is None else max(1, round(spec.cpu_s))),
        ("file size", resource.RLIMIT_FSIZE, spec.max_file_mb and spec.max_file_mb << 20),
        ("processes", resource.RLIMIT_NPROC, spec.max_processes),
        ("open files", resource.RLIMIT_NOFILE, spec.max_open_files),
        ("core dumps", resource.RLIMIT_CORE, 0),
    ):
        if value is None:
            continue
        hard = resource.getrlimit(which)[1]
        value = value if hard == resource.RLIM_INFINITY else min(value, hard)
        soft_hard = (
            (value, value + 1)
            if which == resource.RLIMIT_CPU and hard == resource.RLIM_INFINITY
            else (value, value)
        )
        resource.setrlimit(which, soft_hard)
        done.append(name)
    return [f"limits: {', '.join(done)}"]


def _scrub_environment(home: str) -> list[str]:
    """Keep an allow-list of harmless variables (never one whose name looks secret) and zero the
    process's original environment block, which /proc/self/environ shows."""
    kept = {
        k: v
        for k, v in os.environ.items()
        if (k in KEEP_ENV or k.startswith(KEEP_ENV_PREFIXES))
        and not any(w in k.upper() for w in SECRET_WORDS)
    }
    dropped = len(os.environ) - len(kept)
    os.environ.clear()  # unsetenv: the C environ no longer points into the original block
    os.environ.update(kept, HOME=home, TMPDIR="/tmp", USER="sandbox", LOGNAME="sandbox")
    os.environ["PATH"] = "/usr/bin:/bin"
    try:
        with open("/proc/self/stat", encoding="ascii") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        start, end = int(fields[47]), int(fields[48])  # env_start, env_end: fields 50 and 51 of proc(5)
        if 0 < start < end:
            ctypes.memset(start, 0, end - start)
    except (OSError, ValueError, IndexError):
        pass
    return [f"environment: scrubbed ({dropped} variables removed, the original block zeroed)"]


def _await_exit(pid: int) -> int:
    """Reap children until `pid` ends; its exit code, a signal n as 128 + n."""
    while True:
        try:
            done, status = os.waitpid(-1, 0)
        except ChildProcessError:
            return 1
        except InterruptedError:
            continue
        if done == pid:
            code = os.waitstatus_to_exitcode(status)
            return 128 - code if code < 0 else code


def _die_with_parent(alive: int) -> None:
    """SIGKILL this process when its parent dies; `alive` is a pipe's read end whose write end the parent
    holds: EOF already means the parent died before the prctl."""
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if readable(alive, 0):
        os._exit(1)


def enter_jail(spec: JailSpec) -> list[str]:
    """Call first in a forked, single-threaded child. Returns only inside the jail (in a grandchild that is
    PID 1 of a new PID namespace); the calling process waits for it and `os._exit`s with its status (signals
    mapped to 128+n), so callers see the jailed process's exit code via waitpid on the child.
    Returns what was achieved, in words. Raises JailRefused (before any partial state matters) when the
    host refuses a namespace, a mount or seccomp and `spec.unsafe` is False."""
    steps = _Steps(spec.unsafe)
    if len(os.listdir("/proc/self/task")) > 1:
        ctypes.set_errno(errno.EINVAL)
        steps.need(False, "enter_jail in a process with threads (namespaces are per thread)")
    parent = os.getppid()
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # C dies with its caller, J with C
    if os.getppid() != parent:
        os._exit(1)
    root = os.geteuid() == 0
    uid = (spec.uid if spec.uid is not None else JAIL_UID_BASE + os.getpid()) if root else None
    binds = allow_list(spec.readonly, spec.writable)
    said = _namespaces(spec, steps)
    alive, holder = os.pipe()
    pid = fork_without_inherited_garbage()
    if pid != 0:  # C: wait for J, exit with its status; never returns to the caller
        code = 1
        try:
            os.close(alive)
            code = _await_exit(pid)
        finally:
            os._exit(code)
    os.close(holder)
    _die_with_parent(alive)
    os.setsid()
    said += _filesystem(spec, binds, steps)
    steps.need(_libc.sethostname(JAIL_HOSTNAME.encode(), len(JAIL_HOSTNAME)) == 0, "sethostname")
    _close_directory_fds()
    said += _drop_privileges(spec, uid, steps)
    # Not dumpable: its /proc files belong to root, so its memory cannot be opened through /proc/<pid>/mem
    # or traced, by itself or by another process of its uid. Root's uid change already did this; a user's
    # jail keeps the caller's uid (found running the attack suite as a user: PID 1 read /proc/1/mem).
    steps.need(_libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) == 0, "prctl(PR_SET_DUMPABLE, 0)")
    _die_with_parent(alive)  # again: a uid change clears PR_SET_PDEATHSIG
    os.close(alive)
    said += _rlimits(spec)
    home = str(spec.writable[0]) if spec.writable else "/tmp"
    said += _scrub_environment(home)
    with contextlib.suppress(OSError):
        os.chdir(home)
    # PID 1 ignores a SIGXCPU left at its default action: make the soft CPU limit end the job anyway.
    signal.signal(signal.SIGXCPU, lambda *_: os._exit(128 + signal.SIGXCPU))
    try:
        install()
        said.append(f"seccomp: {len(deny_list())} system calls denied, no_new_privs")
    except OSError as exc:
        ctypes.set_errno(exc.errno or errno.EPERM)
        steps.need(False, "loading the seccomp filter")
    return said + [f"NOT {m}" for m in steps.missing]


@functools.cache
def probe_jail() -> tuple[bool, str]:
    """Does a full jail work on this host? Forks a tiny child that enters one (once per process)."""
    read, write = os.pipe()
    pid = fork_without_inherited_garbage()
    if pid == 0:
        code = 1
        try:
            os.close(read)
            enter_jail(JailSpec())
            code = 0
        except JailRefused as exc:
            os.write(write, str(exc).encode()[:4000])
            code = 3
        except BaseException as exc:  # any failure is the answer
            os.write(write, f"{type(exc).__name__}: {exc}".encode()[:4000])
        finally:
            os._exit(code)
    os.close(write)
    with os.fdopen(read, "rb") as fh:
        why = fh.read().decode(errors="replace")
    code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    if code == 0:
        return True, ""
    return False, why or f"the probe exited with status {code}"


filter_bytes()  # built here, in the zygote, not in every forked child
allow_list()
