"""The DPO target's own `disco` commands, registered by the CLI through the registry (targets/commands.py):
`disco losses list | show | check` (the baseline zoo and the validity checks for a loss file) and
`disco bench losses` (train and score losses on the toy task and print the reward–KL table) / `disco bench
sigma` (measure a preset's σ per seed, the pilot the race rests on).

torch is imported only inside the commands that train or check, so `disco --help`, `losses list` and
`losses show` stay instant.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from targets.commands import CommandContext, FingerprintCall, TargetCommands

if TYPE_CHECKING:
    from targets.results import CheckReport

err = Console(stderr=True)


def register(cli: CommandContext) -> None:
    """`disco losses …` and `disco bench losses | sigma`, bound to the CLI's services."""
    commands = _Commands(cli)
    losses = typer.Typer(
        help="Baseline DPO losses (the zoo) and validity checks for candidate loss files.",
        no_args_is_help=True,
    )
    losses.command("list")(commands.list_losses)
    losses.command("show")(commands.show_loss)
    losses.command("check")(commands.check_loss)
    cli.root.add_typer(losses, name="losses")
    cli.bench.command("losses")(commands.bench_losses)
    cli.bench.command("sigma")(commands.bench_sigma)


COMMANDS = TargetCommands(
    register=register,
    archive_fingerprint=FingerprintCall(
        call="targets.dpo.fingerprint:loss_fingerprint",
        preload=("torch", "targets.dpo.fingerprint"),
        length=351,  # fingerprint.DIM, not imported here: it would import torch (a test keeps them equal)
    ),
)
"""What the registry hands the CLI for the target `dpo`."""


class _Commands:
    """The commands, each a method so that it reaches the CLI's services without importing the CLI."""

    def __init__(self, cli: CommandContext) -> None:
        self.cli = cli

    def list_losses(
        self,
        as_json: Annotated[
            bool, typer.Option("--json", help="Print a JSON list instead of a table.")
        ] = False,
    ) -> None:
        """List the zoo's losses with their citations."""
        from targets.dpo.zoo import list_zoo

        losses = list_zoo()
        if as_json:
            rows = [z.model_dump(exclude={"code"}) for z in losses]
            typer.echo(json.dumps(rows, indent=2, ensure_ascii=False))
            return
        table = Table(title="disco loss zoo")
        table.add_column("name", style="bold")
        table.add_column("loss")
        table.add_column("citation")
        for z in losses:
            table.add_row(z.name, z.title, z.citation)
        Console().print(table)

    def show_loss(self, name: Annotated[str, typer.Argument(help="A zoo loss name, e.g. lrml.")]) -> None:
        """Print a zoo loss's source exactly as stored (nothing else on stdout)."""
        from targets.dpo.zoo import UnknownZooLoss, get_zoo_loss

        try:
            loss = get_zoo_loss(name)
        except UnknownZooLoss as exc:
            raise self.cli.fail(f"{exc}.") from None
        sys.stdout.write(loss.code)

    def check_loss(
        self,
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
            raise self.cli.fail(f"cannot read {file}: no such file.") from None
        except IsADirectoryError:
            raise self.cli.fail(f"cannot read {file}: it is a directory, not a Python file.") from None
        except PermissionError:
            raise self.cli.fail(f"cannot read {file}: permission denied.") from None
        except UnicodeDecodeError:
            raise self.cli.fail(f"cannot read {file}: it is not UTF-8 text.") from None
        except OSError as exc:
            raise self.cli.fail(f"cannot read {file}: {exc.strerror or exc}.") from None

        backend = self.cli.sandbox_name(sandbox)
        if backend == "none":
            from targets.dpo.checks import check_candidate

            report = check_candidate(code, time_budget_s=time_budget)
        else:
            report = self._check_in_sandbox(code, time_budget, backend)
        if as_json:
            typer.echo(report.model_dump_json(indent=2))
        else:
            _print_report(file, report)
        raise typer.Exit(0 if report.passed else 1)

    def _check_in_sandbox(self, code: str, time_budget: float, backend: str) -> CheckReport:
        """`check_candidate` run inside the sandbox; a run that does not return a report (killed, out of
        memory) becomes a failed `sandbox` check that says why."""
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
            sandbox = self.cli.open_sandbox(backend)
            try:
                result = sandbox.run(request)
            finally:
                sandbox.close()
        except SandboxUnavailable as exc:
            raise self.cli.fail(f"{exc}.") from None
        if result.status == "ok" and isinstance(result.value, dict):
            return CheckReport.model_validate(result.value)
        message = f"the checks did not complete in the sandbox: {result.status}, {result.reason}"
        failed = CheckResult(name="sandbox", passed=False, message=message, traceback=result.stderr or None)
        return CheckReport.from_checks([failed])

    def bench_losses(
        self,
        losses: Annotated[
            str, typer.Option(help="Zoo names or candidate .py files, comma-separated.")
        ] = "dpo,ipo,slic,lrml",
        betas: Annotated[
            str | None,
            typer.Option(help="β values, comma-separated (default: the agent's screen, 0.5 and 1)."),
        ] = None,
        seeds: Annotated[
            int, typer.Option(min=1, help="Scoring seeds per loss (per β with --protocol in-sample).")
        ] = 2,
        protocol: Annotated[
            str,
            typer.Option(
                help="fresh: β chosen on screening seeds, scored at it on other seeds, vs DPO with a "
                "verdict; in-sample: max over β on the seeds that score it (the former protocol; overstates "
                "a loss)."
            ),
        ] = "fresh",
        screen_seeds: Annotated[
            int, typer.Option(min=1, help="Screening seeds per β that choose each loss's β (fresh protocol).")
        ] = 2,
        full_grid: Annotated[bool, typer.Option("--full-grid", help="The paper's β grid 0.01 … 5.")] = False,
        kl_penalty: Annotated[float | None, typer.Option(help="λ of the fitness r − λ·KL.")] = None,
        aggregate: Annotated[
            str, typer.Option(help="Over β: max (each loss at its best β) or mean (good at every β).")
        ] = "max",
        workers: Annotated[
            int | None, typer.Option(min=1, help="Worker processes (default: up to 2).")
        ] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")] = False,
        out: Annotated[
            Path | None, typer.Option(help="Write runs.csv, summary.json and frontier.png here.")
        ] = None,
    ) -> None:
        """Train each loss at each (β, seed) on the toy task; report reward, KL, status and fitness ± 95% CI."""  # noqa: E501
        from targets.dpo.bench import run_bench, write_outputs
        from targets.dpo.fitness import FULL_BETA_GRID, SCREEN_BETAS
        from targets.dpo.sweep import SweepSpec

        chosen = resolve_losses(losses)
        spec = SweepSpec(betas=list(SCREEN_BETAS), seeds=list(range(seeds)))
        if full_grid:
            spec.betas = list(FULL_BETA_GRID)
        if betas:
            spec.betas = _parse_floats(betas, "--betas")
        if kl_penalty is not None:
            spec.fitness.kl_penalty = kl_penalty
        if aggregate not in ("max", "mean"):
            raise typer.BadParameter("--aggregate is max or mean")
        if protocol not in ("fresh", "in-sample"):
            raise typer.BadParameter("--protocol is fresh or in-sample")
        spec.fitness.aggregate = aggregate
        if workers is not None:
            spec.workers = workers

        n_losses = len(chosen) + ("dpo" not in chosen)
        if protocol == "in-sample":
            n_jobs = n_losses * len(spec.betas) * len(spec.seeds)
        else:
            screening = len(spec.betas) * screen_seeds if len(spec.betas) > 1 else 0
            n_jobs = n_losses * (screening + len(spec.seeds))
        with _training_bar(n_jobs, enabled=not as_json or sys.stderr.isatty()) as progress:
            report = run_bench(
                chosen,
                spec,
                self.cli.cache_dir(),
                progress=progress,
                protocol=protocol,
                screen_seeds=screen_seeds,
            )

        written = write_outputs(report, out) if out else []
        if as_json:
            typer.echo(json.dumps(report.summary(), indent=2))
            return
        console = Console()
        console.print(run_table(report))
        console.print(fitness_table(report))
        console.print(
            f"{len(report.runs)} runs in {report.seconds:.0f} s "
            f"({report.seconds_per_loss:.0f} s per loss on {spec.workers} worker(s))."
        )
        for path in written:
            console.print(f"wrote {path}")

    def bench_sigma(
        self,
        preset: Annotated[
            str, typer.Option(help="The DPO target's preset: default, quick or tiny.")
        ] = "default",
        seeds: Annotated[int, typer.Option(min=2, help="Fresh seeds each pilot loss is trained on.")] = 16,
        samples_per_prompt: Annotated[
            int, typer.Option(min=1, max=16, help="Completions sampled per held-out prompt at evaluation.")
        ] = 1,
        workers: Annotated[
            int | None, typer.Option(min=1, help="Worker processes (default: up to 2).")
        ] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")] = False,
    ) -> None:
        """Measure σ per seed for a preset (DPO, cDPO, SLiC, IPO on fresh seeds) and keep it in the data dir:
        the agent's race uses it for every later run of that preset and setting."""
        from targets.dpo.pilot import PILOT_LOSSES, run_pilot
        from targets.dpo.sigma import pilot_path
        from targets.dpo.sweep import sweep_spec

        if preset not in ("default", "quick", "tiny"):
            raise typer.BadParameter(f"--preset is default, quick or tiny, not {preset!r}")
        spec = sweep_spec(preset, workers, samples_per_prompt)
        screening = len(spec.betas) * len(spec.seeds) if len(spec.betas) > 1 else 0
        total = len(PILOT_LOSSES) * (screening + seeds)
        losses = ", ".join(PILOT_LOSSES)
        err.print(f"σ pilot for preset {preset}: {losses} × {seeds} seeds ({total} training runs)")
        with _training_bar(total, enabled=not as_json or sys.stderr.isatty()) as progress:
            pilot = run_pilot(spec, self.cli.cache_dir(), n_seeds=seeds, progress=progress)
        if as_json:
            typer.echo(
                json.dumps(
                    pilot.model_dump(mode="json") | {"path": str(pilot_path(self.cli.cache_dir(), spec))}
                )
            )
            return
        typer.echo(
            f"σ per seed {pilot.sigma:.4f} (90% upper bound {pilot.sigma_upper:.4f}, the race uses it; dof "
            f"{pilot.dof}) for preset {preset}, samples per prompt {samples_per_prompt}: "
            f"{pilot.n_seeds} seeds, {pilot.failed_runs} failed run(s), {pilot.seconds:.0f} s. "
            f"Kept in {pilot_path(self.cli.cache_dir(), spec)}."
        )


def _parse_floats(text: str, flag: str) -> list[float]:
    try:
        values = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise typer.BadParameter(f"{flag} takes numbers separated by commas, e.g. 0.1,0.5") from None
    if not values or any(v <= 0 for v in values):
        raise typer.BadParameter(f"{flag} needs at least one positive number")
    return values


def resolve_losses(spec: str) -> dict[str, str]:
    """Names from the zoo, or paths to candidate files: name → code. Each input keeps its own row: a
    file is named by its stem, and by as much of its folder as tells it apart from the other inputs
    (`c0001/design`, `c0002/design`), from the zoo names given and from the baseline `dpo`."""
    from targets.dpo.zoo import get_zoo_loss, list_zoo

    zoo: dict[str, str] = {}
    files: list[Path] = []
    order: list[str | Path] = []  # the rows in the order given
    for item in (s.strip() for s in spec.split(",")):
        if not item:
            continue
        if item.endswith(".py"):
            path = Path(item)
            if not path.is_file():
                raise typer.BadParameter(f"no candidate file at {item}")
            if path.resolve() not in files:
                files.append(path.resolve())
                order.append(path.resolve())
            continue
        try:
            zoo[item] = get_zoo_loss(item).code
            order.append(item)
        except KeyError:
            names = ", ".join(z.name for z in list_zoo())
            raise typer.BadParameter(
                f"unknown loss {item!r}; known: {names} (or give a path to a .py file)"
            ) from None
    named = file_labels(files, taken={*zoo, "dpo"})
    out = {
        named[x] if isinstance(x, Path) else x: x.read_text() if isinstance(x, Path) else zoo[x]
        for x in order
    }
    if not out:
        raise typer.BadParameter("--losses is empty")
    return out


def file_labels(paths: list[Path], taken: set[str]) -> dict[Path, str]:
    """A distinct row name per file: the stem, then `parent/stem`, `grandparent/parent/stem` … for the
    files whose shorter name another file (or a name in `taken`) has too."""
    depth = dict.fromkeys(paths, 1)

    def label(path: Path) -> str:
        parts = path.with_suffix("").parts
        return "/".join(parts[-depth[path] :]).lstrip("/") or str(path)

    while True:
        names = [label(p) for p in paths]
        clash = [p for p, n in zip(paths, names, strict=True) if n in taken or names.count(n) > 1]
        longer = [p for p in clash if depth[p] < len(p.with_suffix("").parts)]
        if not longer:
            return {p: label(p) for p in paths}
        for p in longer:
            depth[p] += 1


@contextmanager
def _training_bar(total: int, enabled: bool) -> Iterator[Callable[..., None]]:
    """A progress bar on stderr over `total` training runs; yields the sweep's progress callback."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err, disable=not enabled, transient=True) as bar:
        task_id = bar.add_task("training runs", total=total)

        def progress(run: Any, done: int, _total: int) -> None:
            what = f"{run.loss} β={run.beta:g} seed={run.seed}: {run.status}"
            bar.update(task_id, completed=done, description=what)

        yield progress


def run_table(report) -> Table:
    where = "screening seeds" if report.screen_seeds else "seeds"
    table = Table(title=f"Reward and KL per β (mean over the {where})")
    table.add_column("loss")
    for beta in report.spec.betas:
        table.add_column(f"β={beta:g}\nreward / KL", justify="right")
    for name in report.losses:
        cells = []
        for point in report.fitness[name].frontier:
            if point.reward is None:
                cells.append(f"[red]{'/'.join(sorted(set(point.statuses)))}[/]")
            else:
                failed = f" [red]({point.n_failed} failed)[/]" if point.n_failed else ""
                cells.append(f"{point.reward:+.3f} / {point.kl:.2f}{failed}")
        table.add_row(name, *cells)
    return table


def fitness_table(report) -> Table:
    if report.protocol == "in-sample":
        return _in_sample_table(report)
    race = report.race
    table = Table(
        title=f"Fitness = reward − {report.spec.fitness.kl_penalty:g}·KL at each loss's β (chosen on "
        f"screening seeds), on {len(report.spec.seeds)} other seed(s) ({race.confidence:.0%} CI)",
        caption=next(iter(report.vs_dpo.values())).tested_at if report.vs_dpo else None,
    )
    for col in ("loss", "β", "fitness", "CI", "vs dpo", "CI of diff", "n", "verdict"):
        table.add_column(col, justify="right" if col != "loss" else "left")
    ranked = sorted(report.losses, key=lambda n: -report.fitness[n].fitness.value)
    colour = {"better": "green", "worse": "red", "not_separated": "yellow"}
    for name in ranked:
        fit, vs = report.fitness[name], report.vs_dpo.get(name)
        table.add_row(
            name,
            f"{report.chosen_beta.get(name, 0):g}",
            f"{fit.fitness.value:+.4f}",
            f"[{fit.fitness.ci_low:+.4f}, {fit.fitness.ci_high:+.4f}]",
            f"{vs.diff:+.4f}" if vs else "—",
            f"[{vs.ci_low:+.4f}, {vs.ci_high:+.4f}]" if vs else "—",
            str(vs.n_seeds) if vs else str(len(report.spec.seeds)),
            f"[{colour[vs.verdict]}]{vs.verdict}[/]" if vs else "baseline",
        )
    return table


def _in_sample_table(report) -> Table:
    over = "at the best β" if report.spec.fitness.aggregate == "max" else "mean over β"
    table = Table(
        title=f"Fitness = reward − {report.spec.fitness.kl_penalty:g}·KL, {over}, in-sample (95% CI)",
        caption="in-sample: β chosen on the seeds that score it, which overstates a loss",
    )
    for col in ("loss", "fitness", "95% CI", "vs dpo", "95% CI of diff", "separated"):
        table.add_column(col, justify="right" if col != "loss" else "left")
    ranked = sorted(report.losses, key=lambda n: -report.fitness[n].fitness.value)
    for name in ranked:
        fit = report.fitness[name]
        vs = fit.vs_baseline
        table.add_row(
            name,
            f"{fit.fitness.value:+.4f}",
            f"[{fit.fitness.ci_low:+.4f}, {fit.fitness.ci_high:+.4f}]",
            f"{vs.diff.value:+.4f}" if vs else "—",
            f"[{vs.diff.ci_low:+.4f}, {vs.diff.ci_high:+.4f}]" if vs else "—",
            ("yes" if vs.separated else "no") if vs else "baseline",
        )
    return table


def _print_report(file: Path, report: CheckReport) -> None:
    from rich.markup import escape

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
