"""`disco losses`: the baseline zoo and the validity checks for a loss file.

torch is imported only by `check`, so `list` and `show` stay instant.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from agent.commands.errors import fail as _fail

if TYPE_CHECKING:
    from targets.results import CheckReport

losses_app = typer.Typer(
    help="Baseline DPO losses (the zoo) and validity checks for candidate loss files.",
    no_args_is_help=True,
)


@losses_app.command("list")
def list_losses(
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list instead of a table.")] = False,
) -> None:
    """List the zoo's losses with their citations."""
    from targets.dpo.zoo import list_zoo

    losses = list_zoo()
    if as_json:
        rows = [z.model_dump(exclude={"code"}) for z in losses]
        typer.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="disco loss zoo")
    table.add_column("name", style="bold")
    table.add_column("loss")
    table.add_column("citation")
    for z in losses:
        table.add_row(z.name, z.title, z.citation)
    Console().print(table)


@losses_app.command("show")
def show_loss(name: Annotated[str, typer.Argument(help="A zoo loss name, e.g. lrml.")]) -> None:
    """Print a zoo loss's source exactly as stored (nothing else on stdout)."""
    from targets.dpo.zoo import UnknownZooLoss, get_zoo_loss

    try:
        loss = get_zoo_loss(name)
    except UnknownZooLoss as exc:
        raise _fail(f"{exc}.") from None
    sys.stdout.write(loss.code)


@losses_app.command("check")
def check_loss(
    file: Annotated[Path, typer.Argument(help="A Python file holding one candidate loss function.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    time_budget: Annotated[float, typer.Option(help="Seconds for all checks together.")] = 10.0,
    sandbox: Annotated[
        str | None,
        typer.Option(
            "--sandbox",
            help="local | docker | e2b (default: $DISCO_SANDBOX or local); `none` runs the checks in "
            "this process, unisolated.",
        ),
    ] = None,
) -> None:
    """Run the validity checks on a loss file (in the sandbox). Exit 0 when it passes, 1 when not, 2 when
    unreadable or when the sandbox is unavailable."""
    try:
        code = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise _fail(f"cannot read {file}: no such file.") from None
    except IsADirectoryError:
        raise _fail(f"cannot read {file}: it is a directory, not a Python file.") from None
    except PermissionError:
        raise _fail(f"cannot read {file}: permission denied.") from None
    except UnicodeDecodeError:
        raise _fail(f"cannot read {file}: it is not UTF-8 text.") from None
    except OSError as exc:
        raise _fail(f"cannot read {file}: {exc.strerror or exc}.") from None

    from agent.commands.sandbox import backend_name

    backend = backend_name(sandbox)
    if backend == "none":
        from targets.dpo.checks import check_candidate

        report = check_candidate(code, time_budget_s=time_budget)
    else:
        report = _check_in_sandbox(code, time_budget, backend)
    if as_json:
        typer.echo(report.model_dump_json(indent=2))
    else:
        _print_report(file, report)
    raise typer.Exit(0 if report.passed else 1)


def _check_in_sandbox(code: str, time_budget: float, backend: str) -> CheckReport:
    """`check_candidate` run inside the sandbox; a run that does not return a report (killed, out of
    memory) becomes a failed `sandbox` check that says why."""
    from agent.commands.sandbox import open_backend
    from sandbox.models import SandboxLimits, SandboxRequest
    from sandbox.registry import SandboxUnavailable
    from targets.results import CheckReport, CheckResult

    request = SandboxRequest(
        call="targets.dpo.checks:check_candidate",
        kwargs={"code": code, "time_budget_s": time_budget},
        preload=("torch", "targets.dpo.checks"),
        # The checks bound themselves (time_budget); the sandbox's clock is the backstop, with room for
        # a cold start's imports.
        limits=SandboxLimits(timeout_s=time_budget + 60, cpu_s=time_budget + 60, memory_mb=4096),
    )
    try:
        sandbox = open_backend(backend)
        try:
            result = sandbox.run(request)
        finally:
            sandbox.close()
    except SandboxUnavailable as exc:
        raise _fail(f"{exc}.") from None
    if result.status == "ok" and isinstance(result.value, dict):
        return CheckReport.model_validate(result.value)
    message = f"the checks did not complete in the sandbox: {result.status}, {result.reason}"
    failed = CheckResult(name="sandbox", passed=False, message=message, traceback=result.stderr or None)
    return CheckReport.from_checks([failed])


def _print_report(file: Path, report: CheckReport) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=f"checks: {file}")
    table.add_column("check", style="bold")
    table.add_column("verdict")
    table.add_column("line", justify="right")
    table.add_column("message")
    for c in report.checks:
        if c.passed:
            verdict = "[green]pass[/]"
        elif c.level == "error":
            verdict = "[red]FAIL[/]"
        elif c.level == "warning":
            verdict = "[yellow]warn[/]"
        else:
            verdict = "[dim]skip[/]"
        table.add_row(c.name, verdict, str(c.line or ""), escape(c.message))
    console = Console()
    console.print(table)
    for c in report.failures():
        if c.traceback:
            console.print(f"[bold]{c.name}[/] traceback:\n{escape(c.traceback)}")
    console.print("[green]passed[/]" if report.passed else "[red]failed[/]")
