"""A full disk, recognised and survived. (The CPU and GPU seconds a run used are folded from its event log
by agent.run_state, so that a `kill -9` loses none of them.)

A full disk is recognised through the exception chain
(the OS's ENOSPC, SQLite's "database or disk is full", Chroma wrapping either), and a small reserve file
in the run directory is given back at that moment so that the runner can still write why it stopped.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

DISK_FULL_MARKERS = ("No space left on device", "database or disk is full", "Disk quota exceeded")
RESERVE_BYTES = 256 * 1024
"""Enough for the final status, the last events and SQLite's journal of a read."""


def disk_full(exc: BaseException) -> str | None:
    """The first line of the error if `exc` (or what caused it) says the disk is full, else None."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in (errno.ENOSPC, errno.EDQUOT):
            return f"{type(current).__name__}: {current.strerror or current}"
        text = str(current)
        if any(marker in text for marker in DISK_FULL_MARKERS):
            return f"{type(current).__name__}: {text.splitlines()[0][:200]}"
        current = current.__cause__ or current.__context__
    return None


class Reserve:
    """A few hundred KiB held in the run directory and released when the disk is full, so that the final
    status and events can still be written (the ballast-file trick)."""

    def __init__(self, root: Path) -> None:
        self.path = root / "reserve.bin"

    def hold(self) -> None:
        """(Re)create the reserve; raises OSError(ENOSPC) when even that does not fit."""
        if self.path.exists() and self.path.stat().st_size >= RESERVE_BYTES:
            return
        try:
            with self.path.open("wb") as handle:
                handle.write(b"\xa5" * RESERVE_BYTES)  # real bytes: a sparse file would reserve nothing
                handle.flush()
                os.fsync(handle.fileno())
        except OSError:
            self.path.unlink(missing_ok=True)
            raise

    def release(self) -> None:
        self.path.unlink(missing_ok=True)
