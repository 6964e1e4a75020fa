"""A jailed training child must not hang on the parent's garbage.

Seen in CI: after ~870 tests the pytest process held ~280 native threads (chromadb's tokio and sqlite
workers, Ray's gRPC); a training child forked from it ran a garbage collection inside TRL's loop, which
freed a leftover chromadb object whose destructor waited for a tokio thread that the child does not have.
The child hung for good (its timeout was a week), and so did CI. Here the same mechanism, deterministic:
an object in a reference cycle whose finalizer needs a thread of the parent's.
"""

from __future__ import annotations

import gc
import queue
import threading
import time
from pathlib import Path

from sandbox.forked import run_forked
from sandbox.jail import JailSpec

WAIT_S = 30.0


class NeedsItsThread:
    """Garbage like a chromadb client: its finalizer asks a service thread of the parent and waits."""

    def __init__(self, requests: queue.Queue[threading.Event]) -> None:
        self.requests = requests
        self.cycle = self  # only the cycle collector frees it

    def __del__(self) -> None:
        answered = threading.Event()
        self.requests.put(answered)
        answered.wait(WAIT_S)  # in a forked child there is no service thread: this waits the whole time


def serve(requests: queue.Queue[threading.Event]) -> None:
    while True:
        requests.get().set()


def test_a_child_never_finalizes_the_parents_garbage(tmp_path: Path) -> None:
    requests: queue.Queue[threading.Event] = queue.Queue()
    threading.Thread(target=serve, args=(requests,), daemon=True).start()
    was_enabled = gc.isenabled()
    gc.disable()  # the garbage must still exist at the fork
    try:
        NeedsItsThread(requests)
        young = ["made just before the fork"]
        marker = tmp_path / "collected"

        def collect_in_child() -> None:
            gc.collect()  # what TRL's loop (accelerate's release_memory) does
            marker.write_text("done")

        outcome = run_forked(collect_in_child, JailSpec(writable=[tmp_path]), tmp_path, timeout_s=WAIT_S / 2)
        assert not outcome.timed_out, "the child hung finalizing an object it inherited"
        assert outcome.exit_code == 0, outcome.log_tail
        assert marker.read_text() == "done"

        # The parent's generations are as they were: its young objects were not promoted to the oldest
        # generation (where garbage waits for rare full collections: sockets piled up past 1024 fds).
        assert any(obj is young for obj in gc.get_objects(generation=0))
        start = time.monotonic()
        assert gc.collect() >= 1  # the parent still collects its own garbage, with its thread alive
        assert time.monotonic() - start < 5
        assert gc.get_freeze_count() == 0  # and nothing stays frozen in the parent
    finally:
        if was_enabled:
            gc.enable()


def test_waiting_on_a_descriptor_numbered_past_1024(tmp_path: Path) -> None:
    """A long-lived process can hold more than 1024 descriptors; select() refuses those, poll() does not."""
    import os
    import resource

    from sandbox.fds import readable

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 1200:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(2048, hard), hard))
    null = os.open(os.devnull, os.O_RDONLY)
    read_end, write_end = os.pipe()
    high_read, high_write = os.dup2(read_end, 1100), os.dup2(write_end, 1101)
    try:
        assert not readable(high_read, 0.05)
        os.write(high_write, b"x")
        assert readable(high_read, 1.0)
        os.close(high_write)
        os.close(write_end)
        os.read(high_read, 1)
        assert readable(high_read, 1.0), "the other end closed: readable (EOF)"
    finally:
        for fd in (null, read_end, high_read):
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
