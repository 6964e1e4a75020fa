"""The durable state of the job queue: one SQLite database (WAL) and one folder per job.

Layout under the queue's root (`disco_home()/jobs` for the CLI):

    jobs.sqlite        the jobs table (state, timestamps, where it runs) and the backends' settings
    <job id>/spec.json the spec as submitted (normalized)
    <job id>/log       the job's output and its lifecycle lines, append-only
    <job id>/metrics.jsonl  one JSON object per training log step, append-only
    <job id>/metrics.json   the final figures; result.json: the worker's verdict

Several processes use the store at once — the agent, a CLI, every job's runner — so every
read-modify-write of a job's state is one `BEGIN IMMEDIATE` transaction: the check that a job is still
queued and its move to running happen together, which is what makes a job start at most once.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tools.jobs.models import Assignment, Job, JobError, JobSpec, JobState

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT UNIQUE NOT NULL,
    spec TEXT NOT NULL,
    backend TEXT NOT NULL,
    state TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    traceback TEXT,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    metrics TEXT NOT NULL DEFAULT '{}',
    resources TEXT,
    runner TEXT,
    launches INTEGER NOT NULL DEFAULT 0,
    cancel_requested INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state, backend);
CREATE TABLE IF NOT EXISTS settings (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
ARTEFACTS = ("log", "metrics.jsonl", "metrics.json", "result.json", "spec.json")


class JobStore:
    """Jobs in SQLite plus their folders; safe to use from several threads and processes."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).expanduser().resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(
            self.root / "jobs.sqlite", timeout=60.0, isolation_level=None, check_same_thread=False
        )
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # ------------------------------------------------------------------ folders
    def job_dir(self, job_id: str) -> Path:
        return self.root / job_id

    def log_path(self, job_id: str) -> Path:
        return self.job_dir(job_id) / "log"

    def append_log(self, job_id: str, line: str) -> None:
        """A lifecycle line from disco itself (prefixed, so that it stands out from the job's output)."""
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        with open(self.log_path(job_id), "a", encoding="utf-8") as fh:
            fh.write(f"[disco {stamp}] {line}\n")

    # ------------------------------------------------------------------ transactions
    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """An exclusive write transaction: nobody else changes job states until it ends."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # ------------------------------------------------------------------ jobs
    def insert(self, spec: JobSpec, backend: str) -> tuple[Job, bool]:
        """The job for `spec`, created as queued unless it exists; True when it was created now."""
        job_id = spec.job_id()
        with self.transaction() as db:
            row = db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is not None:
                return self._job(row), False
            folder = self.job_dir(job_id)
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "spec.json").write_text(spec.model_dump_json(indent=2))
            db.execute(
                "INSERT INTO jobs (id, spec, backend, state, created_at) VALUES (?, ?, ?, 'queued', ?)",
                (job_id, spec.model_dump_json(), backend, time.time()),
            )
            row = db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        self.append_log(job_id, f"queued on the {backend} backend ({spec.candidate_name})")
        return self._job(row), True

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return self._job(row) if row is not None else None

    def require(self, job_id: str) -> Job:
        job = self.get(job_id)
        if job is None:
            raise JobError(f"there is no job {job_id!r} in {self.root}")
        return job

    def resolve(self, prefix: str) -> str:
        """The id that `prefix` starts (as git does with commits; `job-` may be left out); one sentence when
        none or several do."""
        tries = (prefix,) if prefix.startswith("job-") else (prefix, "job-" + prefix)
        for attempt in tries:
            escaped = attempt.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            with self._lock:
                rows = self._db.execute(
                    "SELECT id FROM jobs WHERE id LIKE ? ESCAPE '\\' ORDER BY seq", (escaped + "%",)
                ).fetchall()
            ids = [r["id"] for r in rows]
            if attempt in ids or len(ids) == 1:
                return attempt if attempt in ids else ids[0]
            if ids:
                raise JobError(f"{len(ids)} jobs in {self.root} have an id starting with {prefix!r}")
        raise JobError(f"no job in {self.root} has an id starting with {prefix!r}")

    def list(self, states: tuple[str, ...] | None = None, backend: str | None = None) -> list[Job]:
        query, args = "SELECT * FROM jobs WHERE 1=1", []
        if states:
            query += f" AND state IN ({','.join('?' * len(states))})"
            args += list(states)
        if backend:
            query += " AND backend = ?"
            args.append(backend)
        with self._lock:
            rows = self._db.execute(query + " ORDER BY seq", args).fetchall()
        return [self._job(r) for r in rows]

    def runner(self, job_id: str) -> dict[str, Any] | None:
        """How the backend reaches the job's supervisor (a pid, a Ray actor name)."""
        with self._lock:
            row = self._db.execute("SELECT runner FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return json.loads(row["runner"]) if row and row["runner"] else None

    def cancel_requested(self, job_id: str) -> bool:
        with self._lock:
            row = self._db.execute("SELECT cancel_requested FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return bool(row and row["cancel_requested"])

    # Writers below take the open transaction `db`: callers decide what else happens atomically with them.
    @staticmethod
    def mark_running(
        db: sqlite3.Connection, job_id: str, assignment: Assignment, runner: dict[str, Any] | None
    ) -> None:
        db.execute(
            "UPDATE jobs SET state = 'running', started_at = ?, resources = ?, runner = ?, "
            "launches = launches + 1 WHERE id = ?",
            (time.time(), assignment.model_dump_json(), json.dumps(runner) if runner else None, job_id),
        )

    @staticmethod
    def set_runner(db: sqlite3.Connection, job_id: str, runner: dict[str, Any]) -> None:
        db.execute("UPDATE jobs SET runner = ? WHERE id = ?", (json.dumps(runner), job_id))

    @staticmethod
    def set_started(db: sqlite3.Connection, job_id: str, started_at: float) -> None:
        db.execute("UPDATE jobs SET started_at = ? WHERE id = ?", (started_at, job_id))

    @staticmethod
    def request_cancel(db: sqlite3.Connection, job_id: str) -> None:
        db.execute("UPDATE jobs SET cancel_requested = 1 WHERE id = ?", (job_id,))

    def finish(
        self,
        db: sqlite3.Connection,
        job_id: str,
        state: JobState,
        reason: str = "",
        traceback: str | None = None,
        metrics: dict[str, Any] | None = None,
    ) -> bool:
        """Record a final state; False (and nothing changes) when the job already has one."""
        cur = db.execute(
            "UPDATE jobs SET state = ?, reason = ?, traceback = ?, metrics = ?, finished_at = ? "
            "WHERE id = ? AND state IN ('queued', 'running')",
            (state, reason, traceback, json.dumps(metrics or {}), time.time(), job_id),
        )
        if cur.rowcount:
            self.append_log(job_id, f"{state}" + (f": {reason}" if reason else ""))
        return bool(cur.rowcount)

    # ------------------------------------------------------------------ settings
    def get_setting(self, name: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM settings WHERE name = ?", (name,)).fetchone()
        return json.loads(row["value"]) if row else None

    def put_setting(self, name: str, value: dict[str, Any]) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT INTO settings (name, value) VALUES (?, ?) "
                "ON CONFLICT(name) DO UPDATE SET value = excluded.value",
                (name, json.dumps(value, default=str)),
            )

    # ------------------------------------------------------------------ rows
    def _job(self, row: sqlite3.Row) -> Job:
        folder = self.job_dir(row["id"])
        artefacts = {name: str(folder / name) for name in ARTEFACTS if (folder / name).exists()}
        return Job(
            id=row["id"],
            spec=JobSpec.model_validate_json(row["spec"]),
            backend=row["backend"],
            state=row["state"],
            reason=row["reason"],
            traceback=row["traceback"],
            created_at=row["created_at"],
            started_at=row["started_at"],
            finished_at=row["finished_at"],
            metrics=json.loads(row["metrics"]),
            artefacts=artefacts,
            resources=Assignment.model_validate_json(row["resources"]) if row["resources"] else None,
            launches=row["launches"],
        )
