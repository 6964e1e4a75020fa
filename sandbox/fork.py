"""`os.fork` for a child that goes on running Python: the parent's objects never reach its collector.

A forked child has one thread, but it inherits every object of a parent that may have had hundreds (a
chromadb client runs tokio and sqlite worker threads, Ray runs gRPC's). When the child's cycle collector
frees the parent's leftover garbage, a finalizer may wait for one of those threads, which do not exist
in the child: it waits forever (seen: a chromadb object's Rust destructor, reached from a garbage
collection inside TRL's training loop, blocked a training child for good).

So the collector is off across the fork, and the child's first act is `gc.freeze()`: everything it
inherited goes into the permanent generation, which its collector never examines; it still collects what
it makes itself. The parent's generations are left as they were. (Freezing in the parent and unfreezing
after the fork would move all its young objects into the oldest generation at every fork, where garbage
waits for rare full collections: in the test suite, sockets and pipes held by such garbage piled up past
1024 descriptors.)
"""

from __future__ import annotations

import gc
import os


def fork_without_inherited_garbage() -> int:
    """`os.fork()`, with the parent's objects out of the child's garbage collector (see the module)."""
    enabled = gc.isenabled()
    gc.disable()  # no automatic collection in the child before it has frozen what it inherited
    try:
        pid = os.fork()
        if pid == 0:
            gc.freeze()
    finally:
        if enabled:
            gc.enable()
    return pid
