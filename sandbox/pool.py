"""Warm local workers: sandboxed processes that have already imported what a job needs.

A check then costs the check, not Python's and torch's start-up. Each worker runs exactly one job and
is replaced in the background. All workers are started from one long-lived thread because bubblewrap's
`--die-with-parent` (PR_SET_PDEATHSIG) fires when the *thread* that started it exits.
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from sandbox.fds import readable
from sandbox.isolation import REPO_ROOT, Level, seccomp_fd, wrapper_argv

READY_TIMEOUT_S = 120.0
"""Importing torch and the targets takes seconds, more on a busy machine."""
SAFE_ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "USER": "sandbox",  # getpass.getuser() reads these first: the sandbox has no /etc/passwd
    "LOGNAME": "sandbox",
    "LANG": "C.UTF-8",
    "PYTHONDONTWRITEBYTECODE": "1",
    "PYTHONUNBUFFERED": "1",  # output written just before a kill still reaches the caller
    "OMP_NUM_THREADS": "1",  # threads count towards the process limit
    "MKL_NUM_THREADS": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
}
"""The whole environment of sandboxed code (plus HOME, TMPDIR and the request's own `env`): nothing of
the caller's environment, so no API key or token, reaches it."""
_BOOT = "import sys; sys.path.insert(0, {root!r}); from sandbox.worker import main; main()"
_uids = itertools.count()


class WorkerStartError(RuntimeError):
    """A worker could not start (a preload import failed, or the wrapper is refused)."""


@dataclass
class Worker:
    proc: subprocess.Popen[bytes]
    workdir: Path
    uid: int | None
    level: Level

    def alive(self) -> bool:
        return self.proc.poll() is None


def _pdeathsig() -> Callable[[], None]:
    """A preexec_fn: die when the starting thread dies (unshare / none levels). libc is resolved here, in
    the parent, because importing between fork and exec in a threaded process can deadlock."""
    prctl = ctypes.CDLL(None).prctl
    return lambda: prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def sandbox_env(workdir: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    tmp = workdir / ".tmp"
    return {**SAFE_ENV, "HOME": str(workdir), "TMPDIR": str(tmp), **(extra or {})}


def sandbox_root() -> Path:
    """The parent of every sandbox work dir: one per user, so that a machine where root (or anyone) ran
    disco first still works for everyone else; a directory someone else made there, or a link, is refused."""
    root = Path(tempfile.gettempdir()) / f"disco-sandbox-{os.geteuid()}"
    root.mkdir(mode=0o711, exist_ok=True)
    info = root.lstat()
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid():
        raise WorkerStartError(f"{root} is not this user's own directory: remove it, or set TMPDIR elsewhere")
    return root


def start_worker(
    preload: tuple[str, ...],
    level: Level,
    uid: int | None,
    env: dict[str, str] | None = None,
    shared: tuple[str, ...] = (),
) -> Worker:
    """Start one sandboxed worker and wait until its imports are done."""
    workdir = Path(tempfile.mkdtemp(prefix="run-", dir=sandbox_root()))
    (workdir / ".tmp").mkdir()
    if uid is not None:
        # Owned by the sandbox's uid; group root with 0770, because until its uid change the worker is
        # root without CAP_DAC_OVERRIDE and must still enter it.
        os.chown(workdir, uid, 0)
        os.chmod(workdir, 0o770)
        os.chown(workdir / ".tmp", uid, uid)
    # RLIMIT_NPROC counts per uid: the worker's own uid, or (non-root) its user namespace's processes.
    nproc = uid is not None or (level == "bwrap" and os.geteuid() != 0)
    spec = {"preload": list(preload), "workdir": str(workdir), "uid": uid, "nproc": nproc}
    with seccomp_fd() as fd:
        argv = [
            *wrapper_argv(level, workdir, shared, fd, uid is not None),
            sys.executable, "-I", "-c", _BOOT.format(root=str(REPO_ROOT)), json.dumps(spec),
        ]  # fmt: skip
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=sandbox_env(workdir, env),
            cwd=workdir,
            start_new_session=True,
            pass_fds=(fd,) if level == "bwrap" else (),
            preexec_fn=None if level == "bwrap" else _pdeathsig(),
        )
    worker = Worker(proc, workdir, uid, level)
    try:
        _await_ready(worker)
    except WorkerStartError:
        discard(worker)
        raise
    return worker


def _await_ready(worker: Worker) -> None:
    assert worker.proc.stdout is not None
    fd, got, deadline = worker.proc.stdout.fileno(), b"", time.monotonic() + READY_TIMEOUT_S
    while not got.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or not readable(fd, left):
            raise WorkerStartError(f"the sandbox worker did not start within {READY_TIMEOUT_S:g} s")
        chunk = os.read(fd, 1)
        if not chunk:
            err = worker.proc.stderr.read().decode(errors="replace") if worker.proc.stderr else ""
            last = (err.strip().splitlines() or ["no error output"])[-1]
            raise WorkerStartError(f"the sandbox worker exited during start-up ({last})")
        got += chunk


def kill_tree(worker: Worker) -> None:
    """SIGKILL everything the run started: the process group, then (outside a PID namespace) every
    process of the sandbox's uid, which catches daemons that left the group with setsid."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(worker.proc.pid, signal.SIGKILL)
    if worker.level == "none" and worker.uid is not None:
        pid = os.fork()
        if pid == 0:  # only raw syscalls between fork and _exit
            try:
                os.setuid(worker.uid)
                os.kill(-1, signal.SIGKILL)
            finally:
                os._exit(0)
        os.waitpid(pid, 0)


def discard(worker: Worker) -> None:
    kill_tree(worker)
    with contextlib.suppress(subprocess.TimeoutExpired):
        worker.proc.wait(timeout=5)
    for stream in (worker.proc.stdin, worker.proc.stdout, worker.proc.stderr):
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()
    shutil.rmtree(worker.workdir, ignore_errors=True)


class WarmPool:
    """Ready workers per preload set and shared dirs (bound when bwrap starts, so part of the key); `take`
    hands one out and starts its replacement."""

    def __init__(self, level: Level, drop_uid: bool, uid_base: int, warm: int) -> None:
        self.level: Level = level
        self.drop_uid, self.uid_base, self.warm = drop_uid, uid_base, warm
        self._ready: dict[tuple[tuple[str, ...], tuple[str, ...]], list[Future[Worker]]] = {}
        self._lock = threading.Lock()
        self._spawner = ThreadPoolExecutor(max_workers=2, thread_name_prefix="disco-sandbox-spawn")
        self._closed = False

    def _uid(self) -> int | None:
        # Per-worker uids: RLIMIT_NPROC and kill(-1) are per uid, so sandboxes must not share one.
        return self.uid_base + (os.getpid() % 500) * 64 + next(_uids) % 64 if self.drop_uid else None

    def _spawn(self, preload: tuple[str, ...], shared: tuple[str, ...] = ()) -> Future[Worker]:
        return self._spawner.submit(start_worker, preload, self.level, self._uid(), None, shared)

    def take(self, preload: tuple[str, ...], shared: tuple[str, ...] = ()) -> Worker:
        """A started worker for `preload` (with `shared` dirs bound); cold when none is waiting."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the sandbox is closed")
            waiting = self._ready.setdefault((preload, shared), [])
            fut = waiting.pop(0) if waiting else self._spawn(preload, shared)
            if self.warm:
                while len(waiting) < self.warm:
                    waiting.append(self._spawn(preload, shared))
        worker = fut.result()
        if worker.alive():
            return worker
        discard(worker)
        return self._spawn(preload, shared).result()

    def prewarm(self, preload: tuple[str, ...], wait: bool = False) -> None:
        """Start workers for `preload` up to the pool size; with `wait`, until their imports are done."""
        with self._lock:
            waiting = self._ready.setdefault((preload, ()), [])
            while len(waiting) < max(self.warm, 1):
                waiting.append(self._spawn(preload))
            futures = list(waiting)
        if wait:
            for fut in futures:
                fut.exception(timeout=READY_TIMEOUT_S)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            pending = [f for futs in self._ready.values() for f in futs]
            self._ready.clear()
        for fut in pending:  # never wait for a start-up: discard each worker when it is ready
            if not fut.cancel():
                fut.add_done_callback(_discard_when_ready)
        self._spawner.shutdown(wait=False)


def _discard_when_ready(fut: Future[Worker]) -> None:
    if fut.exception() is None:
        discard(fut.result())
