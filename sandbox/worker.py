"""The process inside a local sandbox: import the heavy modules, wait for one job, run it, exit.

Started by `sandbox.local` (already inside bubblewrap or unshare). The imports are paid before the job
arrives, which is what makes a warm check fast; limits and the uid drop are applied only after them, so
they bound the candidate and not torch's start-up. One job per process: nothing a candidate does can
leak into the next one.

Protocol: argv[1] is JSON {"preload": [...], "workdir": str, "uid": int | null, "nproc": bool,
"job": path?} (nproc: apply RLIMIT_NPROC even without a uid change, i.e. inside a user namespace). Without
"job" (the local backend's warm workers) the worker writes
`DISCO-READY\\n` on stdout once the imports are done, then reads one JSON job line from stdin:
{"kind": "code" | "call" | "command", "code"|"call"+"kwargs"|"command", "limits": {...}}.
"""

from __future__ import annotations

import ctypes
import errno
import importlib
import json
import math
import os
import resource
import runpy
import sys
import traceback
from typing import Any

READY = b"DISCO-READY\n"
RESULT_FILE = ".disco-result.json"  # same value as sandbox.models.RESULT_FILE (not imported: startup)
PR_SET_NO_NEW_PRIVS = 38
PR_CAPBSET_DROP = 24
PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 47, 4


def _limit(which: int, value: int) -> None:
    _soft, hard = resource.getrlimit(which)
    value = value if hard == resource.RLIM_INFINITY else min(value, hard)
    resource.setrlimit(which, (value, value))


def _drop_capabilities() -> None:
    """Empty the bounding set (needs CAP_SETPCAP: as root in bubblewrap the worker keeps it for this) and
    the ambient set, so that no later exec or uid change can give a capability back."""
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in range(64):
        if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 and ctypes.get_errno() == errno.EINVAL:
            break  # past the kernel's last capability
    libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)


def _clear_capsets() -> None:
    """capset(2) to nothing: effective, permitted and inheritable."""
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
    data = (ctypes.c_uint32 * 6)()
    ctypes.CDLL(None, use_errno=True).capset(header, data)


def _confine(limits: dict[str, Any], uid: int | None, nproc: bool = False) -> None:
    """Apply rlimits, drop every capability and drop to `uid`. Irreversible: the code cannot raise them
    back."""
    used = sum(resource.getrusage(resource.RUSAGE_SELF)[:2])
    cpu = math.ceil(used + limits["cpu_seconds"])
    hard = resource.getrlimit(resource.RLIMIT_CPU)[1]
    if hard != resource.RLIM_INFINITY:
        cpu = min(cpu, hard - 1)
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))  # SIGXCPU at soft, SIGKILL at hard
    _limit(resource.RLIMIT_AS, limits["memory_mb"] << 20)
    _limit(resource.RLIMIT_FSIZE, limits["max_file_mb"] << 20)
    _limit(resource.RLIMIT_NOFILE, limits["max_open_files"])
    _limit(resource.RLIMIT_CORE, 0)
    _drop_capabilities()  # before the uid change, which needs CAP_SETUID/SETGID (not in the bounding set)
    if uid is not None:
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
    _clear_capsets()
    if uid is not None or nproc:
        # Counted per uid on the whole host (so each sandbox gets its own uid, see LocalSandbox), or per
        # user namespace when not root.
        _limit(resource.RLIMIT_NPROC, limits["max_processes"])
    # No setuid binary (su, ping, ...) can give privileges back.
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    if _seccomp_mode() == 0:  # bubblewrap loaded the filter already; the weaker levels load it here
        from sandbox.seccomp import install

        try:
            install()
        except OSError as exc:
            sys.stderr.write(f"warning: the seccomp filter could not be loaded: {exc}\n")


def _seccomp_mode() -> int:
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Seccomp:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _user_traceback(exc: BaseException) -> str:
    """The traceback without this file's and runpy's frames: what the code's author needs."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename in (__file__, runpy.__file__, "<frozen runpy>"):
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(exc), exc, tb))


def _run(job: dict[str, Any], workdir: str) -> int:
    kind = job["kind"]
    if kind == "command":
        argv = job["command"]
        try:
            os.execvpe(argv[0], argv, os.environ)
        except OSError as exc:
            sys.stderr.write(f"cannot execute {argv[0]!r}: {exc.strerror}\n")
            return 127
    try:
        if kind == "code":
            sys.argv = ["main.py"]
            sys.path.insert(0, workdir)
            runpy.run_path(os.path.join(workdir, "main.py"), run_name="__main__")
        else:
            module, _, name = job["call"].partition(":")
            # A target from outside the repo ships its package in the request's files (targets.sources);
            # appended, so that shipped files never shadow disco's own or installed modules.
            sys.path.append(workdir)
            value = getattr(importlib.import_module(module), name)(**job["kwargs"])
            if hasattr(value, "model_dump"):
                value = value.model_dump(mode="json")
            with open(os.path.join(workdir, RESULT_FILE), "w", encoding="utf-8") as fh:
                json.dump(value, fh)
    except SystemExit as exc:
        code = exc.code
        if code is None or isinstance(code, int):
            return code or 0
        sys.stderr.write(f"{code}\n")
        return 1
    except BaseException as exc:  # the code's own failure: report it like Python would, exit 1
        sys.stderr.write(_user_traceback(exc))
        return 1
    return 0


def main() -> None:
    spec = json.loads(sys.argv[1])
    devnull = os.open(os.devnull, os.O_RDWR)
    out, err = os.dup(1), os.dup(2)
    os.dup2(devnull, 1)  # import noise (warnings, banners) is not the job's output
    os.dup2(devnull, 2)
    try:
        for module in spec["preload"]:
            importlib.import_module(module)
    except BaseException:
        os.write(err, traceback.format_exc().encode())
        os._exit(3)
    os.dup2(out, 1)
    os.dup2(err, 2)
    os.close(out)
    os.close(err)
    if spec.get("job"):  # a container: the job is a file in the work dir, there is no warm handshake
        with open(spec["job"], encoding="utf-8") as fh:
            job = json.load(fh)
    else:
        os.write(1, READY)
        line = sys.stdin.buffer.readline()
        if not line:  # the pool closed or its parent died: leave quietly
            os._exit(0)
        job = json.loads(line)
    os.dup2(devnull, 0)
    sys.stdin = open(os.devnull, encoding="utf-8")  # noqa: SIM115 - stays open for the code
    os.chdir(spec["workdir"])
    os.environ.update(job.get("env") or {})
    _confine(job["limits"], spec["uid"], spec.get("nproc", False))
    code = _run(job, spec["workdir"])
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except OSError:
        pass
    os._exit(code)


if __name__ == "__main__":
    main()
