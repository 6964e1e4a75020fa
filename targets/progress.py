"""Progress from inside a long step, in words, for the person watching a run.

An evaluation can take minutes (the first one builds the toy task, its SFT model and DPO's baseline runs;
every one trains a sweep of runs). The agent installs a sink around the step (`progress_to`); a target
calls `report` as it goes, and wraps what a run pays once (`one_time`) so that the report can split the
run's time into set-up and per candidate. With no sink installed (a bench, a test) a report does nothing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

Sink = Callable[..., None]
"""sink(what, done, total, **extra): `extra` is `setup_s` at the end of a one-time piece of work."""

_sink: Sink | None = None
_lock = threading.Lock()


@contextmanager
def progress_to(sink: Sink) -> Iterator[None]:
    """Send `report`s to `sink(what, done, total)` for the block (one block at a time per process)."""
    global _sink
    with _lock:
        previous, _sink = _sink, sink
    try:
        yield
    finally:
        with _lock:
            _sink = previous


def report(what: str, done: int | None = None, total: int | None = None, **extra: float) -> None:
    """Say what is being done now (and how far along, when it counts): never raises."""
    sink = _sink
    if sink is None:
        return
    try:
        sink(what, done, total, **extra)
    except Exception:  # progress must never break the work it describes
        return


@contextmanager
def one_time(what: str) -> Iterator[None]:
    """Work a run pays once (building the task, starting the workers, the baseline's runs): said at the
    start, and at the end with its seconds (`setup_s`), which the report counts as set-up, not as any
    candidate's time. Nothing is said at the end when the work failed."""
    report(what)
    started = time.monotonic()
    yield
    seconds = time.monotonic() - started
    report(f"{what}: done in {seconds:.0f} s", setup_s=seconds)


class Counter:
    """`done of total` with an estimate of the time left from the pace so far."""

    def __init__(self, what: str) -> None:
        self.what, self.started = what, time.monotonic()

    def __call__(self, done: int, total: int) -> None:
        elapsed = time.monotonic() - self.started
        left = elapsed / done * (total - done) if done else None
        eta = f", ~{left:.0f} s left" if left is not None and done < total else ""
        report(f"{self.what}: {done} of {total} done{eta}", done, total)
