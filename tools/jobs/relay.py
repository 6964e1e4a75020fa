"""Copy a jailed training child's output and metrics into the job's log and metrics stream, as it trains.

The child may write only its scratch dir, so the trusted worker carries its progress out: every line of
its output into the job's log (the worker's stdout), and every metrics line it streams into the job's
metrics.jsonl, rebuilt from numbers only. What the child writes is candidate-influenced: files are opened
without following links and must be regular files; sizes are capped; a metrics line that is not a
`train` or `summary` record of numbers is dropped (only the worker writes `eval` records: the score).

The relay is a thread of the worker that exists while the child is forked, so it uses plain file
descriptors only (no buffered file objects, no logging, no print), whose locks a fork could copy held.
"""

from __future__ import annotations

import json
import os
import stat
import threading
from pathlib import Path
from typing import Any

MAX_LOG_BYTES = 32 << 20
MAX_METRICS_LINES = 200_000
MAX_LINE_BYTES = 8192
MAX_KEYS = 32
CHILD_KINDS = frozenset({"train", "summary"})
POLL_S = 0.2


def clean_metrics(line: bytes) -> bytes | None:
    """The record on one metrics line rebuilt from numbers only, or None when it is not one."""
    try:
        record = json.loads(line)
    except ValueError:
        return None
    if not isinstance(record, dict) or record.get("kind") not in CHILD_KINDS or len(record) > MAX_KEYS:
        return None
    out: dict[str, Any] = {"kind": record["kind"]}
    for key, value in record.items():
        if key == "kind":
            continue
        if not isinstance(key, str) or len(key) > 64 or not key.isprintable():
            return None
        if value is None or isinstance(value, bool):
            out[key] = value
        elif isinstance(value, int | float):
            out[key] = int(value) if key == "step" and isinstance(value, int) else float(value)
        else:
            return None
    if not isinstance(out.get("step"), int):
        return None
    return json.dumps(out, allow_nan=True).encode() + b"\n"


class _Source:
    """One file of the child's, read from where the last read stopped, through an fd opened once."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd: int | None = None
        self.rejected = False
        self.pending = b""

    def read(self, limit: int) -> bytes:
        if self.rejected or limit <= 0:
            return b""
        if self.fd is None:
            try:
                fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
            except OSError:  # not there yet (or a link: never followed)
                return b""
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                os.close(fd)
                self.rejected = True
                return b""
            self.fd = fd
        chunks = []
        while limit > 0 and (chunk := os.read(self.fd, min(limit, 1 << 20))):
            chunks.append(chunk)
            limit -= len(chunk)
        return b"".join(chunks)

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


class Relay:
    """`with Relay(child_log, log_fd, child_metrics, job_metrics):` copies while the block runs, and what
    is left when it ends."""

    def __init__(self, child_log: Path, log_fd: int, child_metrics: Path, job_metrics: Path) -> None:
        self.log = _Source(child_log)
        self.log_fd = log_fd
        self.metrics = _Source(child_metrics)
        self.job_metrics = job_metrics
        self.log_left = MAX_LOG_BYTES
        self.lines_left = MAX_METRICS_LINES
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="relay", daemon=True)
        self.cut = False
        """True once the child's output passed MAX_LOG_BYTES and the rest was dropped."""

    def __enter__(self) -> Relay:
        self._out = os.open(self.job_metrics, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.pump()  # a metrics line without its newline was cut short: it is dropped
        os.close(self._out)
        self.log.close()
        self.metrics.close()

    def _run(self) -> None:
        while not self._stop.wait(POLL_S):
            self.pump()

    def pump(self) -> None:
        """Copy what is new since the last call."""
        data = self.log.read(self.log_left + 1)
        if data:
            if len(data) > self.log_left:
                data, self.cut = data[: self.log_left], True
            self.log_left -= len(data)
            self._write_log(data)
            if self.cut:
                self._write_log(b"\n[job] the training's output passed its size cap; the rest is not kept\n")
                self.log_left = 0
        data = self.metrics.pending + self.metrics.read(4 << 20)
        lines = data.split(b"\n")
        self.metrics.pending = lines.pop()[:MAX_LINE_BYTES]
        for line in lines:
            if self.lines_left <= 0:
                break
            cleaned = clean_metrics(line) if len(line) <= MAX_LINE_BYTES else None
            if cleaned is not None:
                os.write(self._out, cleaned)
                self.lines_left -= 1

    def _write_log(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self.log_fd, view) :]


def append_metrics(path: Path, record: dict[str, Any]) -> None:
    """One record of the worker's own (e.g. the trusted eval figures) at the end of metrics.jsonl."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    try:
        os.write(fd, json.dumps(record, allow_nan=True).encode() + b"\n")
    finally:
        os.close(fd)
