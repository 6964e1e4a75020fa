"""Cache directories that are built once and never seen half-written, even by concurrent processes.

A builder writes into a private temp dir beside the final one, a marker file written last says the
content is complete, and a rename publishes it. A file lock makes concurrent builders on one machine
wait for the first instead of building twice; the rename keeps a builder on another machine safe.
"""

from __future__ import annotations

import fcntl
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock held for the block (released when the process dies, too)."""
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def build_dir_once(final: Path, build: Callable[[Path], None], marker: str) -> bool:
    """Make `final` by `build(tmp)` + rename unless it holds `marker`; True if this call built it.

    `build` must write `marker` last: a directory without it is incomplete and is rebuilt.
    """
    if (final / marker).exists():
        return False
    final.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(final.parent / f".{final.name}.lock"):
        if (final / marker).exists():  # another process finished while we waited
            return False
        if final.exists():  # left by a process killed mid-rename on a non-POSIX file system
            shutil.rmtree(final)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
        try:
            build(tmp)
            try:
                tmp.rename(final)
            except OSError:
                if (final / marker).exists():  # a builder that did not take our lock won
                    return False
                raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return True
