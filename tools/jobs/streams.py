"""Incremental reads of a job's append-only files (its log and its metrics stream).

Offsets are byte offsets into the file, and only whole lines are returned: a line the job is still
writing stays for the next read, so a reader that passes back the offset it got never sees half a line
and never sees a line twice — across processes and restarts, since the offset is all the state there is.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

MAX_READ_BYTES = 1 << 20
"""At most this much per call: a flood of output is read in slices, not all at once."""


def read_lines(path: Path, since: int = 0, max_bytes: int = MAX_READ_BYTES) -> tuple[list[str], int]:
    """The whole lines after byte `since` (without their newlines) and the offset after the last one."""
    try:
        with open(path, "rb") as fh:
            fh.seek(since)
            chunk = fh.read(max_bytes)
    except FileNotFoundError:
        return [], since
    end = chunk.rfind(b"\n")
    if end < 0:
        if len(chunk) < max_bytes:
            return [], since
        end = len(chunk) - 1  # one line longer than a whole slice: hand it over in pieces
    body = chunk[: end + 1]
    lines = body.decode("utf-8", errors="replace").splitlines()
    return lines, since + len(body)


def read_jsonl(path: Path, since: int = 0) -> tuple[list[dict[str, Any]], int]:
    """The JSON objects on the whole lines after byte `since`; a malformed line is skipped."""
    lines, offset = read_lines(path, since)
    records = []
    for line in lines:
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            records.append(value)
    return records, offset


def tail(path: Path, max_bytes: int = 4000) -> str:
    """The last `max_bytes` of a text file (a crash's traceback is at the end of the log)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, 2)
            size = fh.tell()
            fh.seek(max(0, size - max_bytes))
            return fh.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return ""
