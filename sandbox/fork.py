"""`os.fork` for a child that goes on running Python: the parent's objects never reach its collector.

A forked child has one thread, but it inherits every object of a parent that may have had hundreds (a
chromadb client runs tokio and sqlite worker threads, Ray runs gRPC's). When the child's cycle collector
frees the parent's leftover garbage, a finalizer may wait for one of those threads, which do not exist
in the child: it waits forever (seen: a chromadb object's Rust destructor, reached from a garbage
collection inside TRL's training loop, blocked a training child for good).

`gc.freeze()` just before the fork moves everything that exists into the permanent generation, which the
child's collector never examines; the child still collects what it makes itself. The parent unfreezes at
once. (It also spares the child copy-on-write faults from the collector touching inherited objects.)
"""

from __future__ import annotations

import gc
import os


def fork_without_inherited_garbage() -> int:
    """`os.fork()`, with the parent's objects out of the child's garbage collector (see the module)."""
    already_frozen = gc.get_freeze_count() > 0
    gc.freeze()
    pid = os.fork()
    if pid != 0 and not already_frozen:
        gc.unfreeze()
    return pid
