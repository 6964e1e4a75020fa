"""Run a function in a jailed fork of a warm, trusted process, and hand back only files.

A worker that has imported torch, transformers and TRL and loaded its task forks a child per candidate:
start-up costs a fork (milliseconds), not the 6–9 s of imports. The child closes every inherited file
descriptor (the worker's pipes to its parent must not be writable by candidate code), sends its output to
a log file, enters the jail (`sandbox.jail`) and runs the function, which writes its results into its
scratch directory. The worker itself never runs candidate code: what comes back is data, read with
`read_untrusted` (no symlinks, no special files, a size cap) and validated by the caller.
"""

from __future__ import annotations

import contextlib
import os
import signal
import stat
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel

from sandbox.fork import fork_without_inherited_garbage
from sandbox.jail import JailRefused, JailSpec, enter_jail

REFUSED_EXIT = 97
"""Exit status of a child whose jail the host refused (its log says why)."""
LOG_NAME = "output.log"


class ForkOutcome(BaseModel):
    """How the jailed child ended; its results are files in the scratch dir."""

    exit_code: int | None
    """None when it was killed by a signal (or by us on timeout)."""
    signal: int | None = None
    timed_out: bool = False
    refused: bool = False
    """The host refused the jail (and the user did not opt in to a weaker one)."""
    seconds: float
    log_tail: str = ""
    """The end of what the child printed (untrusted text: redact before showing it)."""


def run_forked(fn: Callable[[], None], jail: JailSpec, scratch: Path, timeout_s: float) -> ForkOutcome:
    """Fork, jail and run `fn` in the child; wait at most `timeout_s`, then kill it."""
    log_path = scratch / LOG_NAME
    start = time.monotonic()
    pid = fork_without_inherited_garbage()
    if pid == 0:  # the child: never returns
        _child(fn, jail, log_path)
    status, timed_out = _wait(pid, timeout_s)
    tail = _tail(log_path)
    code = os.waitstatus_to_exitcode(status) if status is not None else None
    return ForkOutcome(
        exit_code=code if code is not None and code >= 0 else None,
        signal=-code if code is not None and code < 0 else (signal.SIGKILL if timed_out else None),
        timed_out=timed_out,
        refused=code == REFUSED_EXIT and "JAIL REFUSED" in tail,
        seconds=time.monotonic() - start,
        log_tail=tail,
    )


def _child(fn: Callable[[], None], jail: JailSpec, log_path: Path) -> None:
    code = 1
    try:
        log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.closerange(3, _max_fd())  # the worker's pipes, sockets and files stay out of reach
        try:
            enter_jail(jail)
        except JailRefused as exc:
            os.write(2, f"JAIL REFUSED: {exc}\n".encode())
            code = REFUSED_EXIT
            return
        fn()
        code = 0
    except BaseException:  # the child reports every failure through its log and exit status
        with contextlib.suppress(OSError):
            os.write(2, traceback.format_exc().encode(errors="replace")[-8000:])
    finally:
        os._exit(code)


def _max_fd() -> int:
    try:
        return max(256, os.sysconf("SC_OPEN_MAX"))
    except (ValueError, OSError):
        return 4096


def _wait(pid: int, timeout_s: float) -> tuple[int | None, bool]:
    deadline = time.monotonic() + timeout_s
    delay = 0.005
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status, False
        if time.monotonic() >= deadline:
            os.kill(pid, signal.SIGKILL)  # the jailed grandchild dies with it (PR_SET_PDEATHSIG)
            return os.waitpid(pid, 0)[1], True
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def _tail(path: Path, limit: int = 4000) -> str:
    try:
        data = read_untrusted(path, 1 << 20)
    except (OSError, ValueError):
        return ""
    return data[-limit:].decode(errors="replace")


def read_untrusted(path: Path, max_bytes: int) -> bytes:
    """A regular file a jailed child wrote: never through a symlink, never a FIFO or device, at most
    `max_bytes` (ValueError otherwise)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ValueError(f"{path.name} is not a regular file")
        if info.st_size > max_bytes:
            raise ValueError(f"{path.name} is {info.st_size} bytes, more than the {max_bytes} allowed")
        chunks, left = [], max_bytes + 1
        while left > 0 and (chunk := os.read(fd, min(left, 1 << 20))):
            chunks.append(chunk)
            left -= len(chunk)
        data = b"".join(chunks)
        if len(data) > max_bytes:
            raise ValueError(f"{path.name} grew past the {max_bytes} bytes allowed")
        return data
    finally:
        os.close(fd)
