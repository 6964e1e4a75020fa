"""`disco run`, `disco resume`, `disco runs list|show` and `disco control`: the headless meta-agent."""

from __future__ import annotations

import json
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar

import typer

from agent.commands.errors import fail as _fail

if TYPE_CHECKING:
    from agent.events import Event, EvidencePayload
    from agent.leaderboard import Row
    from agent.runs import RunDir

runs_app = typer.Typer(help="List and inspect runs.", no_args_is_help=True)


def _runs_root() -> Path:
    from agent.home import disco_home

    return disco_home() / "runs"


def open_run(run_id: str) -> RunDir:
    from agent.runs import RunDir, RunError

    try:
        return RunDir.open(_runs_root(), run_id)
    except RunError as exc:
        raise _fail(f"{exc}.") from None


class ConsoleProgress:
    """One line per thing worth seeing: each candidate's design, checks, evaluation and verdict, what a long
    step is doing (progress events), and never silence for longer than `quiet_s` while a step runs."""

    STEP_WORDS: ClassVar[dict[str, str]] = {
        "design": "designing",
        "reflect": "reflecting",
        "check": "checking",
        "repair": "repairing",
        "evaluate": "evaluating",
        "confirm": "racing on more seeds",
        "record": "recording",
    }

    def __init__(self, quiet: bool = False, quiet_s: float = 8.0) -> None:
        """`quiet_s` 8: with the 1 s poll and a loaded machine, a person never waits 10 s for a line (a
        first `make demo` measured gaps of up to 11 s with 10)."""
        from rich.console import Console

        self.console = Console(stderr=True)
        self.quiet = quiet
        self.quiet_s = quiet_s
        self._lock = threading.Lock()
        self._last_line = time.monotonic()
        from agent.run_state import RunState

        self.state = RunState()
        """The events seen so far, folded: the step running now and what it is doing."""
        if not quiet:
            threading.Thread(target=self._heartbeat, name="console-heartbeat", daemon=True).start()

    def _print(self, text: str) -> None:
        with self._lock:
            self.console.print(text)
            self._last_line = time.monotonic()

    def _heartbeat(self) -> None:
        """A line when a step has said nothing for `quiet_s`: which step, for how long, doing what."""
        from rich.markup import escape

        while True:
            time.sleep(min(1.0, self.quiet_s / 4))
            with self._lock:
                st, idle = self.state, time.monotonic() - self._last_line
                step = st.in_step and st.node not in (None, "plan") and st.node_candidate and st.node_since
                if not step or idle < self.quiet_s or st.node_since is None:
                    continue
                cid, node, since, doing = _number(st.node_candidate), st.node or "", st.node_since, st.doing
            doing = f": {doing}" if doing else ""
            words = self.STEP_WORDS.get(node, node)
            ran = (datetime.now(UTC) - since).total_seconds()
            self._print(f"  [dim]#{cid} {words}… {ran:.0f} s{escape(doing)}[/]")

    def __call__(self, event: Event) -> None:
        if self.quiet:
            return
        from rich.markup import escape

        from agent.events import (
            BudgetPayload,
            CandidatePayload,
            CheckPayload,
            ErrorPayload,
            EvaluationPayload,
            EvidencePayload,
            HumanPayload,
            NodePayload,
            ProgressPayload,
        )
        from targets.base import Interval

        with self._lock:
            self.state.apply(event)
        data, cid = event.data, _number(event.candidate)
        match data:
            case ProgressPayload():
                self._print(f"  [dim]#{cid} {escape(data.what)}[/]")
            case NodePayload(node="design", phase="") if data.name:
                self._print(f"[bold]#{cid}[/] designed [cyan]{escape(data.name)}[/] ({data.model})")
            case CheckPayload():
                failures = escape("; ".join(data.failures)[:160])
                verdict = "[green]checks pass[/]" if data.passed else f"[red]checks fail[/]: {failures}"
                self._print(
                    f"  #{cid} {verdict}" + (f" (after repair {data.repairs})" if data.repairs else "")
                )
            case EvaluationPayload():
                text = f"screen fitness {data.fitness.text()}" if data.fitness else data.reason
                self._print(f"  #{cid} evaluated in {data.seconds:.0f} s: {escape(text)}")
            case EvidencePayload():
                self._print(f"  #{cid} {_evidence_line(data)}")
            case CandidatePayload():
                vs, against = data.vs_baseline, data.baseline or "baseline"
                score = ""
                if vs:
                    interval = Interval(value=vs.diff, ci_low=vs.ci_low, ci_high=vs.ci_high).text()
                    score = f", vs {against} {interval} on {vs.n_seeds} fresh seeds"
                self._print(f"  #{cid} recorded: {data.status}{escape(score)}")
            case ErrorPayload(endpoint=str() as endpoint) if endpoint:
                self._print(f"[yellow]model endpoint {endpoint}[/]: {escape(data.message)}")
            case ErrorPayload() | BudgetPayload():
                text = data.reason if isinstance(data, BudgetPayload) else data.message
                self._print(f"[yellow]{event.kind}[/]: {escape(text)}")
            case HumanPayload() if data.message:
                self._print(f"[yellow]human[/]: {escape(data.message)}")


def _number(cid: str | None) -> str:
    """`run-0003` → `0003`: how the console names a candidate."""
    return (cid or "").rsplit("-", 1)[-1]


def _evidence_line(p: EvidencePayload) -> str:
    """The comparison with the incumbent in one line (docs/evidence.md): the race's p of no better, or the
    bootstrap's P(better)."""
    if p.verdict == "first":
        return "evidence: first (the run's first incumbent)"
    incumbent = (p.incumbent or "").rsplit("-", 1)[-1]
    state = "" if p.final else ", more seeds"
    if not p.diff:
        why = p.reason or "no common seeds"
        return (
            f"evidence vs #{incumbent}: {p.verdict}{state} ({why})"
            if incumbent
            else f"evidence: {p.verdict} ({why})"
        )
    p_text = f"P(better) {p.p_better:.2f}" if p.p_better is not None else f"p(no better) {p.p_value or 0:.2g}"
    seeds = p.seeds
    on = f"on {len(seeds)} seeds {seeds}"
    return f"evidence vs #{incumbent}: {p.diff.text()}, {p_text} {on} → {p.verdict}{state}"


def print_leaderboard(run: RunDir, limit: int = 15) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from agent.leaderboard import candidate_rows, ranked

    rows = ranked(candidate_rows(run))
    status = run.status()
    table = Table(
        title=f"run {run.run_id}: {status.state}" + (f" ({status.reason})" if status.reason else "")
    )
    base = _baseline_name(run)
    costed = any(r.inner_calls is not None for r in rows)
    fresh = not costed or any(r.vs_baseline is not None for r in rows)  # an agent system has no such seeds
    columns = ("#", "candidate", "status") + ((f"vs {base}, fresh seeds [95% CI]", "n", f"vs {base}") if fresh
               else ()) + ("verdict", "screen fitness" if fresh else "fitness", "repairs")  # fmt: skip
    if costed:  # an agent system: what its accuracy cost in its inner model
        columns += ("inner calls", "inner tokens", "$")
    versus = any(r.cot_sc_diff is not None for r in rows)
    if versus:  # and CoT-SC with the chains those tokens pay for
        columns += ("vs CoT-SC at its cost [95% CI]", "vs CoT-SC")
    for col in columns:
        table.add_column(col)
    for r in rows[:limit]:
        fit = f"{r.fitness:+.3f}" if r.fitness is not None else ""
        vs = f"{r.vs_baseline:+.3f} [{r.vs_low:+.3f}, {r.vs_high:+.3f}]" if r.vs_baseline is not None else ""
        verdict = ("★ " if r.verdict and r is rows[0] else "") + (r.verdict or "")  # ★ the incumbent
        n = str(r.vs_n) if r.vs_n else ""
        cells = [str(r.index), escape(r.name), r.status]
        cells += [vs, n, r.vs_verdict or ""] if fresh else []
        cells += [verdict, fit, str(r.repairs)]
        if costed:
            usd = f"{r.inner_usd:.4f}" if r.inner_usd else ""
            cells += [_count(r.inner_calls), _count(r.inner_tokens), usd]
        if versus:
            cells += [_cot_sc_cell(r), r.cot_sc_verdict or ""]
        table.add_row(*cells)
    console = Console(width=max(Console().width, 130))
    console.print(table)
    if any(r.vs_baseline is not None for r in rows):
        console.print(
            f"vs {base}: the difference on seeds that chose nothing, with n; 'better' by Benjamini–Hochberg "
            "at FDR 0.1 over the run. Screen fitness: on the seeds that chose β (in-sample, not a score)."
        )
    if versus:
        console.print(
            "vs CoT-SC: the agent's score (points) less CoT-SC's with the chains (×n) its tokens per item "
            "pay for, paired by item; 'better' by Benjamini–Hochberg at FDR 0.1 over the run, at no more "
            "tokens."
        )
    if len(rows) > limit:
        console.print(f"… and {len(rows) - limit} more (`disco runs show {run.run_id}`)")


def _cot_sc_cell(r: Row) -> str:
    if r.cot_sc_diff is None:
        return ""
    return f"{r.cot_sc_diff:+.1f} [{r.cot_sc_low:+.1f}, {r.cot_sc_high:+.1f}] ×{r.cot_sc_chains}"


def _count(n: int | None) -> str:
    return "" if n is None else f"{n:,}"


def _execute(runner: Any, run: RunDir) -> None:
    status = runner.execute()
    print_leaderboard(run)
    typer.echo(f"run {run.run_id}: {status.state} — {status.reason}", err=True)
    if status.state in ("stopped", "paused"):
        typer.echo(f"continue it with: disco resume {run.run_id}", err=True)
    if status.state == "failed":
        raise typer.Exit(1)


UNSAFE_HELP = (
    "Run candidate code even where this host refuses the sandbox's namespaces or seccomp, with weaker "
    "isolation (logged in the run). Never with a secret in reach."
)


def run(
    target: Annotated[
        str | None, typer.Option(help="What to discover (`disco targets list`); default dpo.")
    ] = None,
    model: Annotated[
        str | None, typer.Option(help="Model name on the OpenAI-compatible endpoint, or `offline`.")
    ] = None,
    base_url: Annotated[
        str | None, typer.Option(help="OpenAI-compatible endpoint (else OPENAI_BASE_URL).")
    ] = None,
    structured: Annotated[
        str | None,
        typer.Option(
            help="How to get JSON from the model: auto (probe the server once, then fall back as it refuses),"
            " json_schema, json_object, function_calling or prompt. Else $DISCO_STRUCTURED."
        ),
    ] = None,
    timeout: Annotated[
        float | None,
        typer.Option(
            help="Seconds with no token from the model before a call counts as stalled, not its length "
            "(else $DISCO_TIMEOUT_S; 120)."
        ),
    ] = None,
    reply_tokens: Annotated[
        int | None,
        typer.Option(help="Cap on the tokens of one model answer (else $DISCO_REPLY_TOKENS; 4096)."),
    ] = None,
    context_tokens: Annotated[
        int | None,
        typer.Option(
            help="The server's context window, prompt and reply (else $DISCO_CONTEXT_TOKENS; else what the "
            "server says): prompts show fewer past attempts to fit it."
        ),
    ] = None,
    inner_model: Annotated[
        str | None, typer.Option(help="The inner agents' model (ADAS), else $DISCO_INNER_MODEL.")
    ] = None,
    inner_base_url: Annotated[
        str | None, typer.Option(help="The inner agents' endpoint, else $DISCO_INNER_BASE_URL.")
    ] = None,
    max_candidates: Annotated[
        int | None, typer.Option(help="Stop after this many candidates (10 when no budget is given at all).")
    ] = None,
    hours: Annotated[float | None, typer.Option(help="Stop after this much wall clock.")] = None,
    max_tokens: Annotated[int | None, typer.Option(help="Stop after this many model tokens.")] = None,
    max_usd: Annotated[float | None, typer.Option(help="Stop after this much model cost.")] = None,
    max_cpu_hours: Annotated[
        float | None, typer.Option(help="Stop after this much evaluation CPU time (evaluators, CPU jobs).")
    ] = None,
    max_gpu_hours: Annotated[
        float | None, typer.Option(help="Stop after this much GPU time of the run's jobs (time × GPUs).")
    ] = None,
    preset: Annotated[
        str | None, typer.Option(help="The target's evaluation preset (dpo: default | quick | tiny).")
    ] = None,
    run_id: Annotated[
        str | None, typer.Option("--run-id", help="Name of the run (default: time-based).")
    ] = None,
    replay: Annotated[
        str | None, typer.Option(help="Reproduce RUN's model answers from its recording, with no model.")
    ] = None,
    config_file: Annotated[Path | None, typer.Option("--config", help="TOML config file.")] = None,
    quiet: Annotated[bool, typer.Option(help="No progress lines.")] = False,
    unsafe_sandbox: Annotated[bool, typer.Option(help=UNSAFE_HELP)] = False,
) -> None:
    """Run the meta-agent headless: design, reflect, check, repair, evaluate and record candidates.

    Budgets: the ones you give (flags, or the budget table of the config file) bind and no other does:
    --hours 8 alone runs for eight hours. Only with no budget at all does a run stop after 10 candidates.
    Each budget is a positive number. Before its first candidate the run checks the data dir, the target
    and the model endpoints, and prints the budgets that bind."""
    _allow_unsafe_sandbox(unsafe_sandbox)
    from agent.config import ConfigError, find_config_file, load_config, meta_model_overrides
    from agent.home import disco_home
    from agent.models import ModelConfigError
    from agent.preflight import PreflightError, check_data_dir, check_endpoints, only_model
    from agent.runner import Runner
    from agent.runs import RunError, check_run_id, create_run, new_run_id

    overrides: dict[str, Any] = {}
    if target:
        overrides["target"] = target
    overrides |= meta_model_overrides(
        model,
        base_url,
        structured=structured,
        timeout_s=timeout,
        reply_tokens=reply_tokens,
        context_tokens=context_tokens,
        inner_model=inner_model,
        inner_base_url=inner_base_url,
    )
    budget = {
        "max_candidates": max_candidates,
        "hours": hours,
        "max_tokens": max_tokens,
        "max_usd": max_usd,
        "max_cpu_hours": max_cpu_hours,
        "max_gpu_hours": max_gpu_hours,
    }
    check_budget_flags(budget)
    if any(v is not None for v in budget.values()):
        overrides["budget"] = {k: v for k, v in budget.items() if v is not None}
    notes: list[str] = []
    try:
        if run_id is not None:
            check_run_id(run_id)
        config_path = find_config_file(config_file, disco_home())
        config = load_config(config_path, overrides)
        if base_url and not model and config.models.meta.offline and not replay:
            # `--base-url` alone: the server's model when it has one, said aloud; else one sentence.
            picked = only_model(config.models.meta)
            overrides.setdefault("models", {}).setdefault("meta", {})["model"] = picked
            config = load_config(config_path, overrides)
            notes.append(f"--base-url without --model: using the server's only model, {picked}")
        if preset:
            opts = config.targets.setdefault(config.target, {})
            opts["preset"] = preset
        check_data_dir(disco_home())
        roles = _validate_target(config, ready=True)
        if not config.models.meta.offline and not replay:
            config.models.meta.check_usable()
        check_endpoints(config.models, roles, probe_meta=not replay)
        replay_dir = open_run(replay) if replay else None
        run_dir = create_run(_runs_root(), config, run_id or new_run_id(), replay_of=replay)
    except (ConfigError, ModelConfigError, RunError, PreflightError) as exc:
        raise _fail(f"{exc}.") from None
    for note in notes:
        typer.echo(note, err=True)
    typer.echo(f"run {run_dir.run_id} in {run_dir.root}", err=True)
    typer.echo(f"budgets: {config.budget.describe()}", err=True)
    _execute(Runner(run_dir, config, replay_of=replay_dir, progress=ConsoleProgress(quiet)), run_dir)


BUDGET_FLAGS = {
    "max_candidates": "--max-candidates",
    "hours": "--hours",
    "max_tokens": "--max-tokens",
    "max_usd": "--max-usd",
    "max_cpu_hours": "--max-cpu-hours",
    "max_gpu_hours": "--max-gpu-hours",
}


def check_budget_flags(budget: dict[str, float | int | None]) -> None:
    """A budget flag is a positive number (zero or less would stop the run before it starts, or never)."""
    for key, value in budget.items():
        if value is not None and not value > 0:
            raise _fail(
                f"{BUDGET_FLAGS[key]} must be a positive number (leave it out for no limit), not {value:g}"
            )


def _allow_unsafe_sandbox(unsafe: bool) -> None:
    """The weaker mode is the person's explicit choice: an environment variable every sandbox and training
    process reads (so it reaches spawned workers), said on the console and recorded in the run's events."""
    import os

    if unsafe:
        os.environ["DISCO_UNSAFE_SANDBOX"] = "1"
    if os.environ.get("DISCO_UNSAFE_SANDBOX") == "1":
        typer.echo("WARNING: --unsafe-sandbox: candidate code may run with weaker isolation", err=True)


def _validate_target(config: Any, ready: bool = False) -> tuple[str, ...]:
    """Load the target once (a bad spec, module or option is one sentence now, not a failed run) and
    record a file target by its absolute path, its options moving with it, so that resume finds it.
    With `ready`, the target must also be able to run (agent.preflight). Returns the model roles the
    target calls itself, whose endpoints the preflight probes."""
    from agent.config import ConfigError, target_env
    from agent.home import cache_dir
    from agent.preflight import check_target
    from targets.base import models_used_of
    from targets.registry import TargetError, canonical_spec, get_target

    try:
        spec = canonical_spec(config.target)
        if spec != config.target and config.target in config.targets:
            config.targets[spec] = config.targets.pop(config.target) | config.targets.get(spec, {})
        config.target = spec
        target = get_target(spec, config.targets.get(spec), target_env(config, cache_dir()))
    except TargetError as exc:
        raise ConfigError(str(exc)) from None
    try:
        if ready:
            check_target(target)
        return models_used_of(target)
    finally:
        target.close()


def resume_summary(run: RunDir) -> str:
    """What `disco resume` picks up, in one line: the run's state, what is recorded, where it stopped."""
    from agent.events import read_events
    from agent.run_state import RunState

    status = run.status()
    recorded = len(list((run.root / "candidates").glob("*/record.json")))
    at = RunState.of(read_events(run.events_path)).resumes_at
    why = f": {status.reason}" if status.reason else ""
    where = f"; #{at[0].rsplit('-', 1)[-1]} goes on from its {at[1]} step" if at else ""
    noun = "candidate" if recorded == 1 else "candidates"
    return f"resuming run {run.run_id} ({status.state}{why}): {recorded} {noun} recorded{where}"


def _baseline_name(run: RunDir) -> str:
    """What the run's target pairs its candidates against (`baseline` in its declaration)."""
    from targets.registry import TargetError, declared_baseline

    try:
        return declared_baseline(run.meta().target) or "baseline"
    except TargetError:
        return "baseline"


def resume(
    run_id: Annotated[str, typer.Argument(help="The run to continue.")],
    quiet: Annotated[bool, typer.Option(help="No progress lines.")] = False,
    unsafe_sandbox: Annotated[bool, typer.Option(help=UNSAFE_HELP)] = False,
) -> None:
    """Continue a run after a crash, a kill or a stop: nothing recorded is lost or done twice."""
    _allow_unsafe_sandbox(unsafe_sandbox)
    run_dir = open_run(run_id)
    typer.echo(resume_summary(run_dir), err=True)  # at once: the imports and checks below take a while

    from agent.config import ConfigError, RunConfig
    from agent.models.settings import models_from_env
    from agent.runner import Runner
    from agent.runs import RunError

    meta = run_dir.meta()
    config = RunConfig.model_validate(meta.config)
    import os

    config.models = models_from_env(config.models, os.environ)
    from agent.home import disco_home
    from agent.preflight import PreflightError, check_data_dir, check_endpoints

    try:
        check_data_dir(disco_home())
        roles = _validate_target(config, ready=True)
        check_endpoints(config.models, roles, probe_meta=not meta.replay_of)
    except (ConfigError, PreflightError) as exc:
        raise _fail(f"{exc}.") from None
    replay_dir = open_run(meta.replay_of) if meta.replay_of else None
    status = run_dir.status()
    if status.state == "finished":
        typer.echo(
            f"run {run_id} had finished ({status.reason}); raise its budget to go on, e.g. "
            f"`disco control {run_id} budget candidates=N`, then resume.",
            err=True,
        )
    try:
        _execute(Runner(run_dir, config, replay_of=replay_dir, progress=ConsoleProgress(quiet)), run_dir)
    except RunError as exc:
        raise _fail(f"{exc}.") from None


@runs_app.command("list")
def list_runs(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Every run under the data dir, with its state."""
    from rich.console import Console
    from rich.table import Table

    from agent.fresh import fresh_text, read_fresh
    from agent.runs import list_runs as all_runs

    items, shown = [], []
    for r in all_runs(_runs_root()):
        meta, status = r.meta(), r.status()
        state = r.display_state(status)
        fresh = read_fresh(r, status.best_id)  # the incumbent's score: on seeds that chose nothing
        in_sample = f"~{status.best_fitness:+.3f}" if status.best_fitness is not None else ""
        shown.append(fresh_text(fresh) if fresh else in_sample)
        items.append(
            {
                "run_id": r.run_id,
                "target": meta.target,
                "model": meta.model,
                "state": state,
                "reason": status.reason,
                "candidates": status.candidates,
                "best_id": status.best_id,
                "best_vs_baseline": fresh.model_dump(mode="json") if fresh else None,
                "best_fitness": status.best_fitness,
                "created_at": meta.created_at.isoformat(),
            }
        )
    if as_json:
        typer.echo(json.dumps(items, indent=2))
        return
    table = Table(title=f"runs in {_runs_root()}")
    for col in ("run", "target", "model", "state", "candidates", "best: vs baseline, fresh seeds"):
        table.add_column(col)
    for i, best in zip(items, shown, strict=True):
        table.add_row(i["run_id"], i["target"], i["model"], i["state"], str(i["candidates"]), best)
    Console().print(table)
    if any(b.startswith("~") for b in shown):
        typer.echo("~: the best's screen fitness (in-sample): it has no fresh-seed difference to a baseline")


@runs_app.command("show")
def show_run(
    run_id: Annotated[str, typer.Argument(help="The run.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """A run's candidates with their status and fitness."""
    from agent.leaderboard import candidate_rows

    run_dir = open_run(run_id)
    if as_json:
        doc = {
            "run": run_dir.meta().model_dump(mode="json", exclude={"config"}),
            "status": run_dir.status().model_dump(mode="json"),
            "candidates": [r.model_dump() for r in candidate_rows(run_dir)],
        }
        typer.echo(json.dumps(doc, indent=2))
        return
    print_leaderboard(run_dir, limit=10_000)


@runs_app.command("code")
def candidate_code(
    run_id: Annotated[str, typer.Argument(help="The run.")],
    candidate: Annotated[str, typer.Argument(help="The candidate: its id, or its number in the run (3).")],
) -> None:
    """Print a candidate's final code (after its repairs), e.g. to re-evaluate it with `bench losses`."""
    run_dir = open_run(run_id)
    cid = f"{run_id}-{int(candidate):04d}" if candidate.isdigit() else candidate
    code = ""
    if cid.startswith(f"{run_id}-") and "/" not in cid and ".." not in cid:  # a name, never a path
        try:
            path = run_dir.root / "candidates" / cid / "record.json"
            code = json.loads(path.read_text(encoding="utf-8")).get("code") or ""
        except (OSError, ValueError):
            code = ""
    if not code:
        raise _fail(
            f"run {run_id} has no recorded candidate {candidate} with code (`disco runs show {run_id}`)."
        )
    typer.echo(code.rstrip("\n"))


def control(
    run_id: Annotated[str, typer.Argument(help="The run to steer.")],
    action: Annotated[
        str, typer.Argument(help="pause | resume | stop | hint | pin | veto | approve | deny | budget")
    ],
    arg: Annotated[
        list[str] | None, typer.Argument(help="The hint's text, a candidate id, or KEY=VALUE …")
    ] = None,
) -> None:
    """Send a command to a run; the runner applies it at its next step boundary."""
    from agent.control import ControlError, check_candidate, parse_command, send
    from agent.home import disco_home

    run_dir = open_run(run_id)
    try:
        command = parse_command(action, " ".join(arg or []))
        check_candidate(_runs_root(), run_id, command, disco_home() / "memory")
    except ControlError as exc:
        raise _fail(f"{exc}.") from None
    send(run_dir.control_path, command)
    where = (
        "the runner applies it at its next step boundary"
        if run_dir.runner_alive()
        else ("no runner is active: it is applied when the run is resumed")
    )
    typer.echo(f"sent {action} to {run_id} ({where})")
    sys.stdout.flush()
