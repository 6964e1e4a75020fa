"""Which process is which: a pid with its start time names a process uniquely (pids are recycled)."""

from __future__ import annotations

from pathlib import Path


def process_start(pid: int) -> int | None:
    """The process's start time in clock ticks (field 22 of /proc/PID/stat); None when it is gone or a
    zombie. With the pid, it names a process uniquely: a recycled pid has another start time."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])
