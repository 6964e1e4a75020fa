"""Cache directories that are built once, never seen half-written, and never used once changed.

A builder writes into a private temp dir beside the final one, a marker file written last says the
content is complete, and a rename publishes it. A file lock makes concurrent builders on one machine
wait for the first instead of building twice; the rename keeps a builder on another machine safe.

Scoring trusts these artefacts (the SFT model, the task's pairs, the reference log-probs), so each
directory carries the sha256 of every file (`DIGESTS`), written by the builder and checked on every
load: a file that changed afterwards is named in a warning and the directory is rebuilt, never used.
Small JSON artefacts that only the trusted parent writes (DPO's baseline runs, the run cache, chosen β)
are sealed with an HMAC whose key only the parent can read (`write_sealed` / `read_sealed`).
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import logging
import os
import secrets
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger("disco.cache")
DIGESTS = "DIGESTS.json"
SEAL_KEY = ".seal-key"


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

    `build` must write `marker` last: a directory without it is incomplete and is rebuilt, and so is one
    whose files no longer match their digests.
    """
    if verified_dir(final, marker):
        return False
    final.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(final.parent / f".{final.name}.lock"):
        if verified_dir(final, marker):  # another process finished while we waited
            return False
        if final.exists():  # tampered with, or left by a process killed mid-rename
            shutil.rmtree(final)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
        try:
            build(tmp)
            write_digests(tmp)
            try:
                tmp.rename(final)
            except OSError:
                if (final / marker).exists():  # a builder that did not take our lock won
                    return False
                raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return True


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.name != DIGESTS)


def write_digests(root: Path) -> None:
    """Record the sha256 of every file under `root` (called by the builder, last)."""
    digests = {str(p.relative_to(root)): _sha256(p) for p in _files(root)}
    (root / DIGESTS).write_text(json.dumps(digests, indent=1, sort_keys=True))


def digest_mismatch(root: Path) -> str | None:
    """The first file under `root` that differs from its recorded digest (or is extra, missing, a link),
    or None when all match."""
    try:
        recorded: dict[str, str] = json.loads((root / DIGESTS).read_text())
    except (OSError, ValueError):
        return DIGESTS
    present = {str(p.relative_to(root)) for p in _files(root)}
    for name in sorted(present | set(recorded)):
        path = root / name
        if (
            name not in recorded
            or name not in present
            or path.is_symlink()
            or _sha256(path) != recorded[name]
        ):
            return name
    return None


def verified_dir(final: Path, marker: str) -> bool:
    """True when `final` is complete and unchanged since it was built; a changed one is named and removed
    (so that the caller rebuilds it)."""
    if not (final / marker).exists():
        return False
    bad = digest_mismatch(final)
    if bad is None:
        return True
    log.warning(
        "cache artefact %s does not match its digest (changed after it was built): rebuilding", final / bad
    )
    with file_lock(final.parent / f".{final.name}.lock"):
        if final.exists() and digest_mismatch(final) is not None:
            shutil.rmtree(final, ignore_errors=True)
    return False


def _seal_key(cache_dir: Path) -> bytes:
    """The parent's HMAC key, made on first use, readable by its owner only."""
    path = cache_dir / SEAL_KEY
    try:
        return path.read_bytes()
    except FileNotFoundError:
        cache_dir.mkdir(parents=True, exist_ok=True)
        key = secrets.token_bytes(32)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it first
            return path.read_bytes()
        with os.fdopen(fd, "wb") as fh:
            fh.write(key)
        return key


def write_sealed(path: Path, cache_dir: Path, text: str) -> None:
    """Write `text` with an HMAC of it (atomically): only a holder of the parent's key can forge it."""
    mac = hmac.new(_seal_key(cache_dir), text.encode(), hashlib.sha256).hexdigest()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"hmac": mac, "text": text}), encoding="utf-8")
    tmp.replace(path)


def read_sealed(path: Path, cache_dir: Path) -> str | None:
    """The text of a sealed file, or None when it is missing; a file whose seal does not verify is named in
    a warning, removed and treated as missing (so it is computed again, never used)."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        text, mac = doc["text"], doc["hmac"]
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        text, mac = "", ""
    want = hmac.new(_seal_key(cache_dir), str(text).encode(), hashlib.sha256).hexdigest()
    if isinstance(text, str) and isinstance(mac, str) and hmac.compare_digest(mac, want):
        return text
    log.warning("cache artefact %s is not sealed by this data dir (forged or damaged): recomputing it", path)
    path.unlink(missing_ok=True)
    return None
