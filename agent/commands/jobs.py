"""`disco jobs`: DPO training jobs — submit a SPEC.toml, list, show, follow the log, cancel.

Jobs live in `<data dir>/jobs` (a SQLite database plus one folder per job) and keep running after the
command exits; any later `disco jobs` command picks their results up. `--backend ray` sends a job to the
Ray cluster at `--address` (else $DISCO_RAY_ADDRESS, else the address stored by an earlier submit).
Only `submit` imports torch (to validate the training config); the other commands stay quick.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from agent.commands.errors import fail as _fail

if TYPE_CHECKING:
    from tools.jobs import Job, JobQueue

jobs_app = typer.Typer(
    help="DPO training jobs: submit a SPEC.toml, list, show, logs, cancel.", no_args_is_help=True
)
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]
IdArg = Annotated[str, typer.Argument(metavar="ID", help="A job id, or a unique prefix of one.")]
STATE_STYLE = {"succeeded": "green", "running": "cyan", "queued": "yellow", "cancelled": "dim"}


@contextmanager
def _user_errors() -> Iterator[None]:
    from tools.jobs import JobError

    try:
        yield
    except JobError as exc:
        raise _fail(str(exc)) from None
    except PermissionError as exc:
        raise _fail(f"cannot write to {exc.filename or 'the data dir'}: permission denied") from None


def open_queue(backend: str = "local", **config: Any) -> JobQueue:
    from agent.home import disco_home
    from tools.jobs import JobQueue

    return JobQueue(disco_home() / "jobs", backend, **config)


def _brief(job: Job) -> dict[str, Any]:
    """A job without its code and training config (list --json)."""
    data = job.model_dump(mode="json")
    data["spec"] = {k: v for k, v in data["spec"].items() if k not in ("candidate_code", "train")}
    return data


def _when(stamp: float | None) -> str:
    if not stamp:
        return "—"
    moment = datetime.fromtimestamp(stamp)
    return moment.strftime("%H:%M:%S" if moment.date() == datetime.now().date() else "%m-%d %H:%M")


def _duration(job: Job) -> str:
    seconds = job.seconds
    if seconds is None:
        return "—"
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def _state(job: Job) -> str:
    style = STATE_STYLE.get(job.state, "red")
    return f"[{style}]{job.state}[/]"


@jobs_app.command("submit")
def submit(
    spec_file: Annotated[
        Path, typer.Argument(metavar="SPEC.toml", help="The job spec (see tools/jobs/specfile.py).")
    ],
    backend: Annotated[
        str | None, typer.Option(help="local or ray (default: the spec's, else local).")
    ] = None,
    address: Annotated[
        str | None, typer.Option(help="Ray cluster address (host:port) for --backend ray.")
    ] = None,
    cpu_slots: Annotated[
        int | None, typer.Option(min=1, help="Local: CPU cores that CPU jobs may use together.")
    ] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Follow the log until the job ends.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Queue a training job (resubmitting the same spec returns the same job); it runs detached."""
    from tools.jobs.specfile import load_spec_file

    with _user_errors():
        spec = load_spec_file(spec_file)
        name = backend or spec.backend or "local"
        if name not in ("local", "ray"):
            raise _fail(f"--backend must be local or ray, not {name!r}")
        config: dict[str, Any] = {"address": address} if name == "ray" else {}
        if name == "local":
            config = {"cpu_slots": cpu_slots}
        queue = open_queue(name, **config)
        job = queue.submit(spec.model_copy(update={"backend": name}))
    if wait:
        job = _follow(queue, job.id, echo=not as_json)
    if as_json:
        typer.echo(json.dumps(job.model_dump(mode="json"), indent=2))
    else:
        typer.echo(f"{job.id} {job.state} ({job.backend}): {job.spec.candidate_name}")
        if not job.terminal:
            typer.echo(f"follow it with: disco jobs logs {job.id} --follow")
    if wait and job.state != "succeeded":
        raise typer.Exit(1)


@jobs_app.command("list")
def list_jobs(as_json: JsonFlag = False) -> None:
    """Every job, oldest first, with its state."""
    with _user_errors():
        queue = open_queue()
        jobs = queue.list()
    for warning in queue.warnings:
        typer.echo(f"warning: {warning}", err=True)
    if as_json:
        typer.echo(json.dumps([_brief(j) for j in jobs], indent=2))
        return
    if not jobs:
        typer.echo("no jobs yet: submit one with `disco jobs submit SPEC.toml`")
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="disco jobs")
    table.add_column("id", no_wrap=True, min_width=20)
    for col in ("candidate", "backend", "state", "created", "ran"):
        table.add_column(col, no_wrap=col in ("state", "created", "ran"))
    table.add_column("note", overflow="fold")
    for job in jobs:
        loss = job.metrics.get("final_loss")
        note = job.reason or (f"final loss {loss:.4f}" if isinstance(loss, float) else "")
        table.add_row(
            job.id, job.spec.candidate_name, job.backend, _state(job), _when(job.created_at), _duration(job),
            note[:120],
        )  # fmt: skip
    Console().print(table)


@jobs_app.command("show")
def show(job_id: IdArg, as_json: JsonFlag = False) -> None:
    """One job: its spec, state, resources, metrics and files."""
    with _user_errors():
        queue = open_queue()
        job = queue.get(queue.store.resolve(job_id))
    assert job is not None
    if as_json:
        typer.echo(json.dumps(job.model_dump(mode="json"), indent=2))
        return
    from rich.console import Console

    out = Console()
    out.print(f"[bold]{job.id}[/]  {_state(job)}  ({job.backend})")
    if job.reason:
        out.print(f"reason: {job.reason}", markup=False)
    real = job.spec.train
    out.print(
        f"candidate: {job.spec.candidate_name}   model: {real.get('model')}   data: {real.get('dataset')}"
    )
    out.print(
        f"created {_when(job.created_at)}  started {_when(job.started_at)}  finished {_when(job.finished_at)}"
    )
    if job.resources is not None:
        where = ", ".join(job.resources.gpus) or "CPU"
        out.print(f"ran on {job.resources.host}: {where}, {job.resources.cpus} core(s)")
    for key, value in job.metrics.items():
        out.print(f"  {key}: {value:.4g}" if isinstance(value, float) else f"  {key}: {value}", markup=False)
    for name, path in job.artefacts.items():
        out.print(f"  {name}: {path}", markup=False)
    if job.traceback:
        out.print(job.traceback, markup=False, highlight=False)


@jobs_app.command("logs")
def logs(
    job_id: IdArg,
    since: Annotated[
        int, typer.Option(min=0, help="Byte offset to start from (from a previous --json).")
    ] = 0,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing until the job ends.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """The job's log (its output and disco's lifecycle lines)."""
    with _user_errors():
        queue = open_queue()
        job_id = queue.store.resolve(job_id)
        if follow and not as_json:
            _follow(queue, job_id, echo=True, since=since)
            return
        lines, offset = queue.logs(job_id, since)
    if as_json:
        typer.echo(json.dumps({"id": job_id, "lines": lines, "offset": offset}, indent=2))
        return
    for line in lines:
        typer.echo(line)


@jobs_app.command("cancel")
def cancel(job_id: IdArg, as_json: JsonFlag = False) -> None:
    """Stop a queued or running job (its process tree is killed); a finished job stays as it is."""
    with _user_errors():
        queue = open_queue()
        job = queue.cancel(job_id)
    if as_json:
        typer.echo(json.dumps(_brief(job), indent=2))
        return
    typer.echo(f"{job.id} {job.state}" + (f": {job.reason}" if job.reason else ""))


def _follow(queue: JobQueue, job_id: str, echo: bool, since: int = 0) -> Job:
    """Print the log as it grows until the job ends; returns the ended job."""
    from tools.jobs import JobCursor

    cursor = JobCursor(log=since)
    while True:
        update = queue.poll(job_id, cursor)
        if echo:
            for line in update.log_lines:
                typer.echo(line)
        cursor = update.cursor
        if update.job.terminal:
            tail = queue.logs(job_id, cursor.log)[0]
            if echo:
                for line in tail:
                    typer.echo(line)
            return update.job
        time.sleep(0.5)
