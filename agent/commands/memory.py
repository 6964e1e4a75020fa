"""`disco memory`: the candidate store shared by all runs (stats, search, show, import, export, novelty).

The store lives at `<data dir>/memory`. Only `search`, `import` and `novelty` embed text, so only they
load the embedding model; chromadb itself is imported inside the commands, never by `disco --help`.
Text embeddings: the offline MiniLM, or an OpenAI-compatible endpoint with
DISCO_EMBEDDINGS_BACKEND=openai (DISCO_EMBEDDINGS_MODEL, DISCO_EMBEDDINGS_BASE_URL, OPENAI_API_KEY).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from agent.commands.errors import fail as _fail

if TYPE_CHECKING:
    from memory.records import CandidateRecord
    from memory.store import MemoryStore

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


def open_store() -> MemoryStore:
    """The store of the data dir in force, with the embedder the environment selects."""
    from agent.home import disco_home
    from memory.embeddings import EmbeddingConfig, make_embedder
    from memory.store import MemoryStore

    return MemoryStore(disco_home() / "memory", embedder=make_embedder(EmbeddingConfig.from_env()))


def fingerprinter(target: str) -> Callable[[str], list[float] | None] | None:
    """The target's behavioural fingerprint, None for a target that has none; a loss that cannot be
    fingerprinted (does not load, raises) gets None and is judged by text alone."""
    if target != "dpo":
        return None
    from targets.dpo.fingerprint import FingerprintError, loss_fingerprint

    def fp(code: str) -> list[float] | None:
        try:
            return loss_fingerprint(code)
        except FingerprintError:
            return None

    return fp


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
        hits = open_store().search(query, k=k, target=target, space=space)  # type: ignore[arg-type]
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

    with _user_errors():
        items = read_archive(file, target=target)
        fps: list[list[float] | None] = []
        for item in items:
            fp = item.fingerprint
            make = fingerprinter(item.record.target)
            if fp is None and make is not None:
                fp = make(item.record.code)
            fps.append(fp)
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
    make = fingerprinter(target) if fingerprint else None
    with _user_errors():
        verdict = open_store().novelty(code, target=target, fingerprint=make(code) if make else None)
    typer.echo(json.dumps(verdict.summary()) if as_json else verdict.message)
    raise typer.Exit(0 if verdict.novel else 1)
