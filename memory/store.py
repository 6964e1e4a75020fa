"""The persistent candidate store: one Chroma directory shared by every run.

Collections (vectors are always computed here and passed in; Chroma never embeds anything):
  `records`         every candidate, the record's JSON as the document and its filter fields as
                    metadata; a 2-d placeholder vector, so that listing, ranking and export never
                    need an embedding model.
  `code.<embedder>` cosine space of code embeddings    } one per text embedder, so that vectors of
  `meaning.<emb.>`  cosine space of name + thought     } different models never mix
  `fp.<target>`     l2 space of behavioural fingerprints, one per target (its own dimension).

Several processes: Chroma caches its system per process and a reader's HNSW index stays stale after
another process writes, even through a new client (STACK-NOTES). Before each vector query the store
compares the database file's stamp with the one it last saw, and on a change clears Chroma's
per-process cache and reopens.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import re
import threading
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel

from memory.archive import export_line
from memory.embeddings import TextEmbedder, make_embedder
from memory.novelty import NoveltyConfig, NoveltyVerdict, cosine_similarity, fingerprint_similarity
from memory.records import FAILED_STATUSES, CandidateRecord, code_hash, normalise_code
from sandbox.redact import redact_obj

RECORDS = "records"
Space = Literal["code", "meaning", "both"]
_generation = 0
"""Bumped whenever a store clears Chroma's per-process cache: every store then reopens its client."""


class Hit(BaseModel):
    """A search result: the record, how similar it is, and in which space."""

    id: str
    similarity: float
    space: str
    record: CandidateRecord


class FailureLesson(BaseModel):
    """A failed attempt, why it failed, and the later candidate that fixed it, if any."""

    candidate: CandidateRecord
    error: str
    fixed_by: CandidateRecord | None = None


class MemoryStats(BaseModel):
    path: str
    total: int
    by_target: dict[str, int]
    by_status: dict[str, int]
    spaces: dict[str, int]


def _slug(name: str) -> str:
    slug = re.sub(r"[^a-zA-Z0-9._-]", "-", name).strip("._-")
    return slug or "x"


def _placeholder(ids: Sequence[str]) -> list[list[float]]:
    """Distinct 2-d vectors from the ids (equal vectors make HNSW insertion degenerate)."""
    out = []
    for i in ids:
        h = hashlib.sha256(i.encode()).digest()
        out.append([int.from_bytes(h[:4], "big") / 2**32, int.from_bytes(h[4:8], "big") / 2**32])
    return out


class MemoryStore:
    """Candidates of all runs in one Chroma directory; safe to open from several processes."""

    def __init__(self, path: Path, embedder: TextEmbedder | None = None) -> None:
        self.path = Path(path)
        self._embedder = embedder
        self._client: Any = None
        self._gen = -1
        self._seen: tuple[int, ...] | None = None
        self._held = threading.local()

    # Plumbing ------------------------------------------------------------------------------------
    @property
    def embedder(self) -> TextEmbedder:
        """Created on first use (the MiniLM weights load only when a text is actually embedded)."""
        if self._embedder is None:
            self._embedder = make_embedder()
        return self._embedder

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Serialise opening and writing across processes: two processes creating a new database at
        once race in Chroma's migrations ("table collections already exists")."""
        if getattr(self._held, "depth", 0):  # re-entered (a write reopening the client): already held
            yield
            return
        self.path.mkdir(parents=True, exist_ok=True)
        with (self.path / "disco-writer.lock").open("a") as handle:
            self._held.depth = 1
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                self._held.depth = 0
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _chroma(self) -> Any:
        if self._client is None or self._gen != _generation:
            import chromadb
            from chromadb.config import Settings

            settings = Settings(anonymized_telemetry=False, allow_reset=False)
            with self._locked():
                self._client = chromadb.PersistentClient(path=str(self.path), settings=settings)
            self._gen = _generation
        return self._client

    def _col(self, name: str, space: str = "cosine", create: bool = True) -> Any:
        if not create and not (self.path / "chroma.sqlite3").exists():
            return None  # reading an empty memory creates nothing on disk
        client = self._chroma()
        if not create:
            try:
                return client.get_collection(name, embedding_function=None)
            except Exception as exc:  # chromadb raises NotFoundError (or ValueError in some versions)
                if "does not exist" in str(exc) or type(exc).__name__ == "NotFoundError":
                    return None
                raise
        config = {"hnsw": {"space": space}}
        return client.get_or_create_collection(name, embedding_function=None, configuration=config)

    def _stamp(self) -> tuple[int, ...]:
        out: list[int] = []
        for suffix in ("", "-wal"):
            try:
                st = (self.path / f"chroma.sqlite3{suffix}").stat()
            except FileNotFoundError:
                continue
            out += [st.st_mtime_ns, st.st_size]
        return tuple(out)

    def refresh(self) -> None:
        """Drop Chroma's per-process cache and reopen, so that other processes' writes are seen."""
        global _generation
        from chromadb.api.shared_system_client import SharedSystemClient

        SharedSystemClient.clear_system_cache()
        _generation += 1
        self._client = None
        self._seen = self._stamp()

    def _fresh(self) -> None:
        """Refresh if someone else wrote since this process last looked (cheap: one or two stats)."""
        stamp = self._stamp()
        if self._seen is None:
            self._seen = stamp
        elif stamp != self._seen:
            self.refresh()

    def _space_name(self, space: str, target: str) -> str:
        """One collection per space, embedder and target: a metadata filter in a Chroma query costs
        time linear in the collection (~3 ms per 1k records here), a separate collection nothing."""
        return f"{space}.{_slug(self.embedder.key)}.{_slug(target)}"

    def _space_names(self, space: str) -> list[str]:
        prefix = f"{space}.{_slug(self.embedder.key)}."
        names = [c if isinstance(c, str) else c.name for c in self._chroma().list_collections()]
        return sorted(n for n in names if n.startswith(prefix))

    # Writing -------------------------------------------------------------------------------------
    def record(self, record: CandidateRecord, fingerprint: Sequence[float] | None = None) -> CandidateRecord:
        """Insert or update one candidate (idempotent by id); returns the record as stored."""
        return self.record_many([record], [fingerprint])[0]

    def record_many(
        self,
        records: Sequence[CandidateRecord],
        fingerprints: Sequence[Sequence[float] | None] | None = None,
        vectors: dict[str, np.ndarray] | None = None,
    ) -> list[CandidateRecord]:
        """Insert or update candidates. Same id twice keeps one record, with its first `created_at`.

        Text is embedded only for records that are new or whose code or thought changed; `vectors`
        (keys `code`, `meaning`: arrays aligned with `records`) skips embedding altogether (bulk loads).
        """
        records = [_redacted(r) for r in records]
        fps = list(fingerprints) if fingerprints is not None else [None] * len(records)
        latest: dict[str, int] = {r.id: i for i, r in enumerate(records)}  # last write of an id wins
        order = sorted(latest.values())
        recs, fps = [records[i] for i in order], [fps[i] for i in order]
        if vectors is not None:
            vectors = {k: np.asarray(v)[order] for k, v in vectors.items()}
        if not recs:
            return []
        with self._locked():
            return self._record_locked(recs, fps, vectors)

    def _record_locked(
        self,
        recs: list[CandidateRecord],
        fps: list[Sequence[float] | None],
        vectors: dict[str, np.ndarray] | None,
    ) -> list[CandidateRecord]:
        self._fresh()
        records_col = self._col(RECORDS, space="l2")
        old = records_col.get(ids=[r.id for r in recs], include=["metadatas"])
        previous = {i: m for i, m in zip(old["ids"], old["metadatas"], strict=True)}
        stored: list[CandidateRecord] = []
        changed: list[int] = []
        for i, rec in enumerate(recs):
            meta = previous.get(rec.id)
            if meta is not None:
                rec = rec.model_copy(update={"created_at": datetime.fromtimestamp(meta["created_at"], UTC)})
            stored.append(rec)
            if meta is None or meta.get("text_hash") != _text_hash(rec) or vectors is not None:
                changed.append(i)
        batch = self._chroma().get_max_batch_size()
        for start in range(0, len(stored), batch):
            part = stored[start : start + batch]
            records_col.upsert(
                ids=[r.id for r in part],
                embeddings=_placeholder([r.id for r in part]),
                documents=[r.model_dump_json() for r in part],
                metadatas=[{**r.filter_fields(), "text_hash": _text_hash(r)} for r in part],
            )
        self._write_text_spaces(stored, changed, vectors, batch)
        self._write_fingerprints(stored, fps, batch)
        self._seen = self._stamp()
        return stored

    def _write_text_spaces(
        self,
        recs: list[CandidateRecord],
        changed: list[int],
        vectors: dict[str, np.ndarray] | None,
        batch: int,
    ) -> None:
        changed_set = set(changed)
        by_target: dict[str, list[int]] = {}
        for i, r in enumerate(recs):
            by_target.setdefault(r.target, []).append(i)
        for target, members in by_target.items():
            for space, text_of in (("code", _code_text), ("meaning", CandidateRecord.meaning_text)):
                col = self._col(self._space_name(space, target))
                todo = [i for i in members if i in changed_set]
                keep = [i for i in members if i not in changed_set]
                if keep:  # a space made by another embedder may lack them: embed those too
                    present = set(col.get(ids=[recs[i].id for i in keep], include=[])["ids"])
                    todo = sorted(set(todo) | {i for i in keep if recs[i].id not in present})
                if not todo:
                    continue
                if vectors is not None and space in vectors:
                    emb = np.asarray(vectors[space], dtype=np.float32)[todo]
                else:
                    emb = self.embedder.embed([text_of(recs[i]) for i in todo])
                for start in range(0, len(todo), batch):
                    idx = todo[start : start + batch]
                    col.upsert(
                        ids=[recs[i].id for i in idx], embeddings=emb[start : start + len(idx)].tolist()
                    )

    def _write_fingerprints(
        self, recs: list[CandidateRecord], fps: list[Sequence[float] | None], batch: int
    ) -> None:
        by_target: dict[str, list[tuple[str, Sequence[float]]]] = {}
        for rec, fp in zip(recs, fps, strict=True):
            if fp is not None:
                by_target.setdefault(rec.target, []).append((rec.id, fp))
        for target, rows in by_target.items():
            col = self._col(f"fp.{_slug(target)}", space="l2")
            for start in range(0, len(rows), batch):
                part = rows[start : start + batch]
                col.upsert(
                    ids=[cid for cid, _ in part],
                    embeddings=[[float(x) for x in fp] for _, fp in part],
                )

    # Reading -------------------------------------------------------------------------------------
    def get(self, candidate_id: str) -> CandidateRecord | None:
        found = self.get_many([candidate_id])
        return found[0] if found else None

    def get_many(self, ids: Sequence[str]) -> list[CandidateRecord]:
        """Records for the ids that exist, in the order asked."""
        col = self._col(RECORDS, space="l2", create=False)
        if col is None or not ids:
            return []
        got = col.get(ids=list(ids), include=["documents"])
        by_id = {
            i: CandidateRecord.model_validate_json(d)
            for i, d in zip(got["ids"], got["documents"], strict=True)
        }
        return [by_id[i] for i in ids if i in by_id]

    def fingerprint_of(self, candidate_id: str, target: str) -> list[float] | None:
        col = self._col(f"fp.{_slug(target)}", space="l2", create=False)
        if col is None:
            return None
        got = col.get(ids=[candidate_id], include=["embeddings"])
        return [float(x) for x in got["embeddings"][0]] if got["ids"] else None

    def count(self, target: str | None = None) -> int:
        """Records in memory, or only those of `target` (what one run's prompts may speak of)."""
        col = self._col(RECORDS, space="l2", create=False)
        if col is None:
            return 0
        if target is None:
            return int(col.count())
        return len(col.get(where={"target": target}, include=[])["ids"])

    def evaluated_code_hashes(self, target: str) -> set[str]:
        """Code hashes of `target`'s evaluated candidates (a seed measured once is not measured again)."""
        where = {"$and": [{"target": target}, {"status": "evaluated"}]}
        return {str(meta["code_hash"]) for _, meta in self._metas(where)}

    def _metas(self, where: dict[str, Any] | None) -> list[tuple[str, dict[str, Any]]]:
        col = self._col(RECORDS, space="l2", create=False)
        if col is None:
            return []
        got = col.get(where=where, include=["metadatas"])
        return list(zip(got["ids"], got["metadatas"], strict=True))

    def iter_records(self, batch: int = 500) -> Iterator[CandidateRecord]:
        """Every record, oldest first (export)."""
        ids = [i for i, _ in sorted(self._metas(None), key=lambda im: (im[1]["created_at"], im[0]))]
        for start in range(0, len(ids), batch):
            yield from self.get_many(ids[start : start + batch])

    def export_jsonl(self, path: Path) -> int:
        """Write every record (with its fingerprint) as disco's JSONL; returns how many."""
        n = 0
        with path.open("w", encoding="utf-8") as f:
            for rec in self.iter_records():
                f.write(export_line(rec, self.fingerprint_of(rec.id, rec.target)) + "\n")
                n += 1
        return n

    def stats(self) -> MemoryStats:
        metas = [m for _, m in self._metas(None)]
        by_target: dict[str, int] = {}
        by_status: dict[str, int] = {}
        for m in metas:
            by_target[m["target"]] = by_target.get(m["target"], 0) + 1
            by_status[m["status"]] = by_status.get(m["status"], 0) + 1
        spaces = {}
        if self.path.exists():
            for col in self._chroma().list_collections():
                name = col if isinstance(col, str) else col.name
                if name != RECORDS:
                    spaces[name] = int(self._chroma().get_collection(name, embedding_function=None).count())
        return MemoryStats(
            path=str(self.path), total=len(metas), by_target=by_target, by_status=by_status, spaces=spaces
        )

    def top_by_score(self, target: str, k: int = 5) -> list[CandidateRecord]:
        """The k best evaluated candidates of a target (the design prompt's "best so far"): those with a
        fresh-seed difference to the baseline by its shrunk estimate (a lucky few seeds do not top it),
        then the rest by fitness (a target without a baseline, records from before fresh seeds)."""
        from targets.racing import shrunk_differences  # scipy: not on the CLI's import path

        metas = self._metas({"$and": [{"target": target}, {"has_fitness": True}]})
        fresh = {i: (m["vs_diff"], m["vs_low"], m["vs_high"]) for i, m in metas if "vs_diff" in m}
        shrunk = shrunk_differences(fresh)
        scored = sorted(shrunk, key=lambda i: (-shrunk[i], i))
        rest = sorted((im for im in metas if im[0] not in shrunk), key=lambda im: (-im[1]["fitness"], im[0]))
        return self.get_many((scored + [i for i, _ in rest])[:k])

    def recent_failures(self, target: str, k: int = 5) -> list[FailureLesson]:
        """The k latest failed attempts of a target, each with its error and the repair that fixed it.

        A repair is a later candidate that names the failed one among its parents and did not fail
        itself (the fittest such child, else the latest).
        """
        where = {"$and": [{"target": target}, {"status": {"$in": list(FAILED_STATUSES)}}]}
        latest = sorted(self._metas(where), key=lambda im: (-im[1]["updated_at"], im[0]))[:k]
        lessons = []
        for rec in self.get_many([i for i, _ in latest]):
            children = self._metas({"parent_ids": {"$contains": rec.id}})
            good = [(i, m) for i, m in children if m["status"] not in FAILED_STATUSES]
            good.sort(key=lambda im: (-im[1].get("fitness", float("-inf")), -im[1]["updated_at"]))
            fixed = self.get(good[0][0]) if good else None
            lessons.append(FailureLesson(candidate=rec, error=rec.failure_text(), fixed_by=fixed))
        return lessons

    def search(self, query: str, k: int = 5, target: str | None = None, space: Space = "both") -> list[Hit]:
        """The k candidates most similar to a text or code, by meaning, by code, or the best of both."""
        as_code = normalise_code(query)  # the code space holds normalised code; prose comes back as is
        texts = {"code": as_code, "meaning": query.strip()}
        spaces = ["code", "meaning"] if space == "both" else [space]
        unique = sorted({texts[name] for name in spaces})
        vectors = dict(zip(unique, self.embedder.embed(unique), strict=True))
        best: dict[str, tuple[float, str]] = {}
        for name in spaces:
            vector = vectors[texts[name]]
            collections = [self._space_name(name, target)] if target else self._space_names(name)
            for collection in collections:
                for cid, sim in self._nearest(collection, vector, k, cosine=True):
                    if cid not in best or sim > best[cid][0]:
                        best[cid] = (sim, name)
        ranked = sorted(best.items(), key=lambda kv: -kv[1][0])[:k]
        records = {r.id: r for r in self.get_many([cid for cid, _ in ranked])}
        return [
            Hit(id=cid, similarity=sim, space=name, record=records[cid])
            for cid, (sim, name) in ranked
            if cid in records
        ]

    def _nearest(
        self, collection: str, vector: Sequence[float], k: int, cosine: bool
    ) -> list[tuple[str, float]]:
        self._fresh()
        col = self._col(collection, space="cosine" if cosine else "l2", create=False)
        if col is None:
            return []
        got = col.query(query_embeddings=[list(map(float, vector))], n_results=k, include=["distances"])
        ids, dists = got["ids"][0], got["distances"][0]
        if cosine:
            return [(i, cosine_similarity(d)) for i, d in zip(ids, dists, strict=True)]
        return [(i, fingerprint_similarity(d, len(vector))) for i, d in zip(ids, dists, strict=True)]

    def novelty(
        self,
        code: str,
        target: str,
        fingerprint: Sequence[float] | None = None,
        config: NoveltyConfig | None = None,
        exclude_id: str | None = None,
        ignore_runs: Sequence[str] = (),
    ) -> NoveltyVerdict:
        """Is this code new for the target? See memory/novelty.py for the order of evidence. `ignore_runs`:
        runs whose candidates (ids `<run>-NNNN…`) do not count, as a replay's own recorded run."""
        config = config or NoveltyConfig()
        ignored = tuple(f"{run}-" for run in ignore_runs)

        def other(i: str) -> bool:
            # Not the candidate itself, nor its own earlier attempts (`<id>-a<n>`, recorded as lessons
            # before each repair): a repair must not be judged a duplicate of the version it repairs.
            if ignored and i.startswith(ignored):
                return False
            return exclude_id is None or (i != exclude_id and not i.startswith(f"{exclude_id}-a"))

        # Filter on the hash alone and check the target here: `$and` scans (14 ms at 10k), one key 1 ms.
        same = [
            i
            for i, meta in self._metas({"code_hash": code_hash(code)})
            if meta["target"] == target and other(i)
        ]
        if same:
            return NoveltyVerdict(novel=False, nearest=sorted(same)[0], similarity=1.0, by="code_hash")
        if self.count() == 0:
            return NoveltyVerdict(novel=True, nearest=None, similarity=0.0, by="empty")
        query = self.embedder.embed([normalise_code(code)])[0]
        k = 2 if exclude_id is None else 6  # room for the candidate's own attempts, filtered out
        k += 6 * bool(ignored)  # and for the ignored run's candidates and attempts
        text = self._nearest(self._space_name("code", target), query, k, cosine=True)
        text = [(i, s) for i, s in text if other(i)][:1]
        fp: list[tuple[str, float]] = []
        if fingerprint is not None:
            fp = self._nearest(f"fp.{_slug(target)}", fingerprint, k, cosine=False)
            fp = [(i, s) for i, s in fp if other(i)][:1]
        t_sim = text[0][1] if text else None
        f_sim = fp[0][1] if fp else None
        common = {"text_similarity": t_sim, "fingerprint_similarity": f_sim}
        if text and fp:
            text_id = text[0][0]
            # A text twin without a fingerprint of its own can only be judged by text.
            if (
                t_sim is not None
                and t_sim >= config.text_threshold
                and self.fingerprint_of(text_id, target) is None
            ):
                return NoveltyVerdict(
                    novel=False,
                    nearest=text_id,
                    similarity=t_sim,
                    by="text",
                    threshold=config.text_threshold,
                    **common,
                )
        if fp:
            fid, sim = fp[0]
            return NoveltyVerdict(
                novel=sim < config.fingerprint_threshold,
                nearest=fid,
                similarity=sim,
                by="fingerprint",
                threshold=config.fingerprint_threshold,
                **common,
            )
        if text:
            tid, sim = text[0]
            return NoveltyVerdict(
                novel=sim < config.text_threshold, nearest=tid, similarity=sim, by="text",
                threshold=config.text_threshold, **common,
            )  # fmt: skip
        return NoveltyVerdict(novel=True, nearest=None, similarity=0.0, by="empty", **common)


def _redacted(record: CandidateRecord) -> CandidateRecord:
    """The record with every string redacted (errors and check messages quote the candidate; memory feeds
    prompts and outlives runs). Its code hash stays that of the code as written, so novelty still works."""
    dumped = record.model_dump()
    cleaned = redact_obj(dumped)
    return record if cleaned == dumped else CandidateRecord.model_validate(cleaned)


def _code_text(record: CandidateRecord) -> str:
    return normalise_code(record.code)


def _text_hash(record: CandidateRecord) -> str:
    return hashlib.sha256(f"{record.code}\0{record.meaning_text()}".encode()).hexdigest()[:16]
