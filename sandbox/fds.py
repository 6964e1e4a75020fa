"""Waiting on a descriptor with poll(2): select(2) refuses descriptors numbered 1024 or more, which a
long-lived process (the agent, the test suite) can reach."""

from __future__ import annotations

import math
import select


def readable(fd: int, timeout_s: float) -> bool:
    """Whether `fd` has data or its other end closed, within `timeout_s` (0: just look)."""
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
    return bool(poller.poll(max(0, math.ceil(timeout_s * 1000))))
