"""`disco memory`: the candidate store shared by all runs (stats, search, show, import, export, novelty).

The store lives at `<data dir>/memory`. Only `search`, `import` and `novelty` embed text, so only they
load the embedding model; chromadb itself is imported inside the commands, never by `disco --help`.
Text embeddings: the offline MiniLM, or an OpenAI-compatible endpoint with
DISCO_EMBEDDINGS_BACKEND=openai (DISCO_EMBEDDINGS_MODEL, DISCO_EMBEDDINGS_BASE_URL, OPENAI_API_KEY).

An archive's code is as untrusted as a model's: behavioural fingerprints (`import`, `novelty`) are
computed in the sandbox ($DISCO_SANDBOX, default local), one fresh sandboxed process per candidate, and
this process only reads back a list of numbers. It never executes candidate code; without a sandbox the
candidates are judged by text alone.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from agent.commands.errors import fail as _fail
from agent.session import open_store

if TYPE_CHECKING:
    from memory.records import CandidateRecord
    from memory.store import MemoryStore
    from sandbox.base import Sandbox

memory_app = typer.Typer(
    help="The candidate memory shared by all runs: search, novelty, import and export.",
    no_args_is_help=True,
)
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]


@contextmanager
def _user_errors() -> Iterator[None]:
    """Turn the errors a person can cause or fix into one sentence and exit code 2."""
    from pydantic import ValidationError

    from memory.archive import ArchiveError
    from memory.embeddings import EmbeddingError

    try:
        yield
    except (ArchiveError, EmbeddingError) as exc:
        raise _fail(str(exc)) from None
    except ValidationError as exc:
        first = exc.errors()[0]
        raise _fail(f"bad embeddings setting {'.'.join(map(str, first['loc']))}: {first['msg']}") from None
    except PermissionError as exc:
        raise _fail(
            f"cannot write to the memory at {exc.filename or 'the data dir'}: permission denied"
        ) from None


class SandboxFingerprinter:
    """A target's behavioural fingerprint of archive code, computed in the sandbox, never here, as the
    target declares it (`TargetCommands.archive_fingerprint`, targets/commands.py; none: always None).

    Each candidate runs in its own fresh sandboxed process (the local backend's workers run one job each),
    so one archive item cannot change another's numbers. What comes back is checked as data: a list of
    `length` finite numbers, else None. A candidate that cannot be fingerprinted (breaks the policy, does
    not load, raises, too slow) gets None and is judged by its text alone; so does every candidate when no
    sandbox is available (`unavailable` says why).
    """

    def __init__(self, target: str, backend: str | None = None) -> None:
        from agent.commands.sandbox import backend_name
        from targets.registry import archive_fingerprint

        self.spec = archive_fingerprint(target)
        self.backend = backend_name(backend)
        self.unavailable: str | None = None
        self.failed = 0
        self._box: Sandbox | None = None

    def _sandbox(self) -> Sandbox | None:
        if self._box is None and self.unavailable is None:
            from sandbox.registry import SandboxUnavailable, get_sandbox

            try:
                self._box = (
                    get_sandbox(self.backend, warm=1)
                    if self.backend == "local"
                    else get_sandbox(self.backend)
                )
            except SandboxUnavailable as exc:
                self.unavailable = str(exc)
        return self._box

    def __call__(self, code: str) -> list[float] | None:
        if self.spec is None:
            return None
        box = self._sandbox()
        if box is None:
            return None
        from sandbox.models import SandboxLimits, SandboxRequest
        from sandbox.registry import SandboxUnavailable

        request = SandboxRequest(
            call=self.spec.call,
            kwargs={"code": code},
            preload=self.spec.preload,
            limits=SandboxLimits(timeout_s=60, cpu_s=60, memory_mb=4096),
        )
        try:
            result = box.run(request)
        except SandboxUnavailable as exc:
            self.unavailable = str(exc)
            return None
        value = result.value if result.status == "ok" else None
        if (
            isinstance(value, list)
            and len(value) == self.spec.length
            and all(
                isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in value
            )
        ):
            return [float(v) for v in value]
        self.failed += 1
        return None

    def close(self) -> None:
        if self._box is not None:
            self._box.close()
            self._box = None


@contextmanager
def fingerprinters() -> Iterator[dict[str, SandboxFingerprinter]]:
    """target -> its sandboxed fingerprinter, made on first use (`_fingerprint`) and closed at the end."""
    made: dict[str, SandboxFingerprinter] = {}
    try:
        yield made
    finally:
        for fp in made.values():
            fp.close()


def _fingerprint(made: dict[str, SandboxFingerprinter], target: str, code: str) -> list[float] | None:
    if target not in made:
        made[target] = SandboxFingerprinter(target)
    return made[target](code)


def _with_baselines(store: MemoryStore, target: str) -> None:
    """The target's published methods into memory first, as a run puts them (memory/baselines.py): plain
    DPO is a known loss even in a data dir where no run has started yet. A target that cannot be loaded
    here (a user's, by path) has none to add."""
    from agent.home import cache_dir
    from memory.baselines import seed_baselines
    from targets.registry import TargetError, get_target

    try:
        loaded = get_target(target, None, cache_dir())
    except TargetError:
        return
    baselines = getattr(loaded, "baselines", None)
    if baselines is not None:
        seed_baselines(store, target, baselines())


def _say_unavailable(made: dict[str, SandboxFingerprinter]) -> None:
    for fp in made.values():
        if fp.unavailable:
            typer.echo(f"no behavioural fingerprints: {fp.unavailable} (judged by text alone)", err=True)


@memory_app.command("stats")
def stats(as_json: JsonFlag = False) -> None:
    """How many candidates memory holds, by target and status."""
    with _user_errors():
        st = open_store().stats()
    if as_json:
        typer.echo(st.model_dump_json(indent=2))
        return
    typer.echo(f"memory: {st.path}\ncandidates: {st.total}")
    for title, counts in (("by target", st.by_target), ("by status", st.by_status), ("spaces", st.spaces)):
        if counts:
            typer.echo(f"{title}: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))


@memory_app.command("search")
def search(
    query: Annotated[str, typer.Argument(help="Text or code to find similar candidates to.")],
    k: Annotated[int, typer.Option("-k", min=1, max=100, help="How many results.")] = 5,
    target: Annotated[str | None, typer.Option(help="Only this target, e.g. dpo.")] = None,
    space: Annotated[str, typer.Option(help="code, meaning (name + thought) or both.")] = "both",
    as_json: JsonFlag = False,
) -> None:
    """The candidates most similar to a text or code."""
    if space not in ("code", "meaning", "both"):
        raise _fail(f"--space must be code, meaning or both, not {space!r}")
    with _user_errors():
        hits = open_store().search(query, k=k, target=target, space=space)
    if as_json:
        rows = [{"id": h.id, "similarity": h.similarity, "space": h.space, **_brief(h.record)} for h in hits]
        typer.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    if not hits:
        typer.echo("no candidates in memory match")
    for h in hits:
        b = _brief(h.record)
        typer.echo(f"{h.similarity:.3f} {h.space:<7} {h.id}  {b['name']}  [{b['target']}, {b['status']}]")


def _brief(rec: CandidateRecord) -> dict[str, Any]:
    fit = rec.fitness.value if rec.fitness else None
    return {
        "name": rec.name,
        "target": rec.target,
        "status": rec.status,
        "run_id": rec.run_id,
        "fitness": fit,
    }


@memory_app.command("show")
def show(
    candidate_id: Annotated[str, typer.Argument(metavar="ID", help="A candidate id.")],
    as_json: JsonFlag = False,
) -> None:
    """One candidate: its record and code."""
    with _user_errors():
        rec = open_store().get(candidate_id)
    if rec is None:
        raise _fail(f"no candidate {candidate_id!r} in memory", code=1)
    if as_json:
        typer.echo(rec.model_dump_json(indent=2))
        return
    fit = (
        f"{rec.fitness.value:.4g} [{rec.fitness.ci_low:.4g}, {rec.fitness.ci_high:.4g}]"
        if rec.fitness
        else "-"
    )
    typer.echo(f"{rec.id}  {rec.name}  target {rec.target}  run {rec.run_id or '-'}  status {rec.status}")
    typer.echo(f"fitness {fit}  repairs {rec.repair_count}  parents {', '.join(rec.parent_ids) or '-'}")
    if vs := rec.vs_baseline:
        typer.echo(
            f"vs the baseline on fresh seeds {vs.diff:+.4f} [{vs.ci_low:+.4f}, {vs.ci_high:+.4f}]"
            f", n {vs.n_seeds}"
        )
    if rec.error or rec.failure_text():
        typer.echo(f"error: {rec.failure_text()}")
    if rec.thought:
        typer.echo(f"thought: {rec.thought}")
    typer.echo(rec.code)


_IMPORT_TARGET_HELP = "Target of the imported candidates (default: dpo for DiscoPOP, agents for ADAS)."


@memory_app.command("import")
def import_archive(
    file: Annotated[Path, typer.Argument(help="A DiscoPOP or ADAS JSON archive, or a disco JSONL export.")],
    target: Annotated[str | None, typer.Option(help=_IMPORT_TARGET_HELP)] = None,
    as_json: JsonFlag = False,
) -> None:
    """Add an archive's candidates to memory (importing the same archive twice keeps one of each)."""
    from memory.archive import read_archive

    with _user_errors(), fingerprinters() as made:
        items = read_archive(file, target=target)
        fps: list[list[float] | None] = []
        for item in items:
            fp = item.fingerprint
            if fp is None:  # computed in the sandbox: archive code never runs in this process
                fp = _fingerprint(made, item.record.target, item.record.code)
            fps.append(fp)
        _say_unavailable(made)
        store = open_store()
        before = store.count()
        store.record_many([i.record for i in items], fps)
        added = store.count() - before
    summary = {"read": len(items), "added": added, "fingerprinted": sum(f is not None for f in fps)}
    if as_json:
        typer.echo(json.dumps(summary))
    else:
        typer.echo(f"read {summary['read']} candidates from {file}: {added} new, "
                   f"{summary['fingerprinted']} with a behavioural fingerprint")  # fmt: skip


@memory_app.command("export")
def export(
    file: Annotated[Path, typer.Argument(help="Where to write disco's JSONL export.")],
    as_json: JsonFlag = False,
) -> None:
    """Write every candidate (with its fingerprint) as JSONL, one record per line."""
    if file.is_dir():
        raise _fail(f"cannot write {file}: it is a directory")
    if not file.parent.exists():
        raise _fail(f"cannot write {file}: the folder {file.parent} does not exist")
    with _user_errors():
        n = open_store().export_jsonl(file)
    typer.echo(
        json.dumps({"exported": n, "file": str(file)}) if as_json else f"exported {n} candidates to {file}"
    )


@memory_app.command("novelty")
def novelty(
    file: Annotated[Path, typer.Argument(help="A Python file holding one candidate.")],
    target: Annotated[str, typer.Option(help="The candidate's target.")] = "dpo",
    fingerprint: Annotated[
        bool, typer.Option(help="Use the behavioural fingerprint when the target has one.")
    ] = True,
    as_json: JsonFlag = False,
) -> None:
    """Is this candidate new, or a duplicate of one in memory? Exit 0 when novel, 1 when a duplicate."""
    try:
        code = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise _fail(f"cannot read {file}: no such file") from None
    except IsADirectoryError:
        raise _fail(f"cannot read {file}: it is a directory, not a Python file") from None
    except UnicodeDecodeError:
        raise _fail(f"cannot read {file}: it is not UTF-8 text") from None
    except OSError as exc:
        raise _fail(f"cannot read {file}: {exc.strerror or exc}") from None
    with _user_errors(), fingerprinters() as made:
        fp = _fingerprint(made, target, code) if fingerprint else None
        _say_unavailable(made)
        store = open_store()
        _with_baselines(store, target)
        verdict = store.novelty(code, target=target, fingerprint=fp)
    typer.echo(json.dumps(verdict.summary()) if as_json else verdict.message)
    raise typer.Exit(0 if verdict.novel else 1)
