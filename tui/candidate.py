"""One candidate as the TUI shows it when it is selected: its code, its diff against its parent, and its
check results; read from the run directory (plain data, no Textual)."""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.runs import RunDir
from targets.base import Interval

VERSION_ORDER = ("design", "reflect1", "reflect2")


@dataclass(frozen=True)
class CheckLine:
    round: int
    """0: the first check; N: after repair N."""
    name: str
    passed: bool
    message: str
    detail: str = ""
    """The offending line or the traceback, for a failure."""


@dataclass(frozen=True)
class CandidateDetail:
    id: str
    name: str
    status: str
    fitness: str
    thought: str
    error: str
    code: str
    parent: str
    """What the diff is against, in words."""
    diff: str
    checks: tuple[CheckLine, ...]
    versions: tuple[str, ...]


def _versions(folder: Path) -> list[str]:
    """The candidate's code files in the order they were written: design, reflections, repairs."""
    names = [v for v in VERSION_ORDER if (folder / f"{v}.py").exists()]
    repairs = sorted(
        (int(m[1]), p.stem) for p in folder.glob("repair*.py") if (m := re.fullmatch(r"repair(\d+)", p.stem))
    )
    return names + [stem for _, stem in repairs]


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError:
        return ""


def _record(run: RunDir, cid: str) -> dict[str, Any]:
    return run.read_candidate_json(cid, "record.json") or {}


def _parent_code(run: RunDir, parent_id: str) -> str | None:
    """A parent's code if this run holds it: another candidate, or a failed version of this one (a repair's
    lesson `<cid>-aN` is the version that check round N judged)."""
    rec = _record(run, parent_id)
    if rec.get("code"):
        return rec["code"]
    m = re.fullmatch(r"(.+)-a(\d+)", parent_id)
    if m is None:
        return None
    folder = run.root / "candidates" / m[1]
    versions = _versions(folder)
    drafts = [v for v in versions if not v.startswith("repair")]
    n = int(m[2])
    name = (drafts[-1] if drafts else None) if n == 0 else f"repair{n}"
    return _read(folder / f"{name}.py") if name and (folder / f"{name}.py").exists() else None


def _earlier_code(run: RunDir, parent_id: str) -> tuple[str, str] | None:
    """A parent from outside this run: (its code, where it was found). First its own run's folder in the
    same data dir (ids are `<run>-NNNN`, a lesson `<run>-NNNN-aN`), then memory, which keeps every
    recorded candidate of every run and every imported archive's."""
    m = re.fullmatch(r"(.+)-\d{4}(?:-a\d+)?", parent_id)
    if m and m[1] != run.run_id and (run.root.parent / m[1] / "candidates").is_dir():
        code = _parent_code(RunDir(run.root.parent / m[1]), parent_id)
        if code is not None:
            return code, f"run {m[1]}"
    memory = run.root.parent.parent / "memory"
    if not memory.is_dir():
        return None
    from memory.store import MemoryStore

    try:
        record = MemoryStore(memory).get(parent_id)  # a read: no embedding, no model loaded
    except Exception:  # a memory another version wrote, or locked: the diff is a courtesy, not a must
        return None
    return (record.code, "memory") if record is not None and record.code else None


def _checks(folder: Path) -> list[CheckLine]:
    out = []
    rounds = sorted(
        (int(m[1]), p) for p in folder.glob("check*.json") if (m := re.fullmatch(r"check(\d+)", p.stem))
    )
    for n, path in rounds:
        try:
            report = json.loads(_read(path) or "{}")
        except ValueError:
            continue
        for c in report.get("checks", []):
            parts = []
            if not c.get("passed"):
                parts = [f"line: {c['line']}" if c.get("line") else "", (c.get("traceback") or "").strip()]
                parts.append(json.dumps(c["numbers"]) if c.get("numbers") else "")
            detail = "\n".join(p for p in parts if p)
            out.append(CheckLine(n, c.get("name", "?"), bool(c.get("passed")), c.get("message", ""), detail))
    return out


def candidate_detail(run: RunDir, cid: str) -> CandidateDetail | None:
    """Everything the candidate screen shows; None when the run has no such candidate."""
    folder = run.root / "candidates" / cid
    if not folder.is_dir():
        return None
    rec = _record(run, cid)
    versions = _versions(folder)
    code = rec.get("code") or (_read(folder / f"{versions[-1]}.py") if versions else "")
    parent, base = "", None
    for pid in rec.get("parent_ids") or []:
        base = _parent_code(run, pid)
        if base is not None:
            parent = pid
            break
    if base is None:
        for pid in rec.get("parent_ids") or []:
            found = _earlier_code(run, pid)
            if found is not None:
                base, parent = found[0], f"{pid} (from {found[1]})"
                break
    if base is None and versions and _read(folder / f"{versions[0]}.py") != code:
        parent, base = f"its first draft ({versions[0]}.py)", _read(folder / f"{versions[0]}.py")
    if base is None:
        outside = ", ".join(rec.get("parent_ids") or [])
        parent = (
            f"{outside} (not found in this data dir or its memory)"
            if outside
            else "nothing: it has no parent"
        )
        diff = ""
    else:
        lines = difflib.unified_diff(
            base.splitlines(keepends=True), code.splitlines(keepends=True), parent, cid, n=3
        )
        diff = "".join(lines) or "(no change)"
    return CandidateDetail(
        id=cid,
        name=rec.get("name", ""),
        status=rec.get("status", "in progress"),
        fitness=Interval.model_validate(rec["fitness"]).text() if rec.get("fitness") else "",
        thought=rec.get("thought", ""),
        error=rec.get("error") or "",
        code=code,
        parent=parent,
        diff=diff,
        checks=tuple(_checks(folder)),
        versions=tuple(versions),
    )
