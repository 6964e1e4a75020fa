"""The README's every command works as written (issue 19, done when): each `disco …` line in its bash
blocks names a real subcommand and only flags that subcommand takes, checked against the real CLI; and
each is run by the test named for it in COVERED_BY (a README command with no test, or a test that was
renamed away, fails here). `make demo` / `make test` are what CI itself runs."""

from __future__ import annotations

import ast
import re
import textwrap
from dataclasses import dataclass

import pytest
import typer.main
from agent_helpers import REPO

from agent.cli import app

COVERED_BY = {  # the README's command → a test that runs it through the real CLI
    "run": "test_agent_cli.py::test_run_uses_the_model_configured_in_the_environment",
    "resume": "test_agent_signals.py::test_a_signal_to_the_process_group_stops_cleanly_and_resume_finishes",
    "runs list": "test_agent_cli.py::test_run_uses_the_model_configured_in_the_environment",
    "runs show": "test_agent_cli.py::test_run_uses_the_model_configured_in_the_environment",
    "runs code": "test_report.py::test_evaluating_on_more_seeds_comes_with_its_command",
    "report": "test_report.py::test_out_dir_gets_the_report_and_relative_figure_links",
    "targets list": "test_targets_api.py::test_list_json_shows_builtins_and_entry_points",
    "targets show": "test_targets_api.py::test_show_json_gives_the_full_declaration",
    "control": "test_agent_cli.py::test_bad_toml_and_bad_control_commands",
    "tui": "test_tui_tmux.py::test_tmux_drives_the_real_tui",
    "chat": "test_tui_tmux.py::test_disco_chat_talks_to_the_model_given_on_its_command_line",
    "jobs submit": "test_jobs_cli.py::test_submit_list_show_logs_cancel",
    "jobs list": "test_jobs_cli.py::test_submit_list_show_logs_cancel",
    "jobs show": "test_jobs_cli.py::test_submit_list_show_logs_cancel",
    "jobs logs": "test_jobs_cli.py::test_submit_list_show_logs_cancel",
    "jobs cancel": "test_jobs_cli.py::test_submit_list_show_logs_cancel",
    "memory import": "test_memory_cli.py::test_import_twice_keeps_one_of_each",
    "memory search": "test_memory_cli.py::test_search_and_show",
    "memory show": "test_memory_cli.py::test_search_and_show",
    "memory novelty": "test_memory_cli.py::test_novelty_json",
    "memory stats": "test_memory_processes.py::test_concurrent_writers_lose_nothing",
    "memory export": "test_memory_cli.py::test_export_import_into_another_home",
    "sandbox doctor": "test_sandbox_cli.py::test_doctor_json_measures_the_local_backend",
    "sandbox run": "test_sandbox_cli.py::test_run_json",
    "losses list": "test_cli_losses.py::test_entry_point_list_json",
    "losses show": "test_cli_losses.py::test_show_prints_the_source_exactly",
    "losses check": "test_cli_losses.py::test_entry_point_check_json_passes_and_exits_0",
    "bench losses": "test_bench_cli.py::test_reports_reward_kl_and_fitness_with_ci_per_loss",
    "models probe": "test_models_probe.py::test_probe_shows_each_fallback",
    "bench sigma": "test_sigma_pilot.py::test_a_pilot_measured_once_is_what_the_race_uses",
}


@dataclass(frozen=True)
class ReadmeCommand:
    line: int
    path: tuple[str, ...]  # the subcommand, e.g. ("memory", "search")
    flags: frozenset[str]


def readme_commands() -> list[ReadmeCommand]:
    """`disco …` lines of the README's bash blocks, continuation lines joined; `a | b ID | c` after a group
    (`disco jobs list | show ID`) is one command per alternative."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    found: list[ReadmeCommand] = []
    for block in re.finditer(r"```bash\n(.*?)```", text, re.S):
        first_line = text[: block.start()].count("\n") + 2
        joined: list[tuple[int, str]] = []
        for offset, raw in enumerate(textwrap.dedent(block.group(1)).splitlines()):
            code = re.split(r"\s#", " " + raw, maxsplit=1)[0].strip()
            if not code:
                continue
            if raw[:1].isspace() and joined:
                joined[-1] = (joined[-1][0], joined[-1][1] + " " + code)
            else:
                joined.append((first_line + offset, code))
        for number, code in joined:
            if code.startswith("disco "):
                found += _parse(number, code)
    return found


def _parse(number: int, code: str) -> list[ReadmeCommand]:
    root = typer.main.get_command(app)
    words = code.split()[1:]
    group, path = root, []
    while words and _is_group(group) and words[0] in group.commands:
        path.append(words.pop(0))
        group = group.commands[path[-1]]
    alternatives = re.split(r"\s*\|\s+", " ".join(words))
    commands = [ReadmeCommand(number, tuple(path), _flags(alternatives[0]))]
    for other in alternatives[1:]:  # `disco jobs list | show ID …`: siblings under the same group
        name, *_ = other.split()
        commands.append(ReadmeCommand(number, (*path[:-1], name), _flags(other)))
    return commands


def _flags(text: str) -> frozenset[str]:
    return frozenset(re.findall(r"(?<![\w-])--[a-z][a-z-]*", text))


def _is_group(command: object) -> bool:
    """Typer vendors its own click: a group is what has subcommands."""
    return isinstance(getattr(command, "commands", None), dict)


def _click_command(path: tuple[str, ...]) -> object | None:
    command = typer.main.get_command(app)
    for name in path:
        if not _is_group(command) or name not in command.commands:
            return None
        command = command.commands[name]
    return command


COMMANDS = readme_commands()


def test_the_readme_shows_the_commands_a_user_needs() -> None:
    """The parser itself can fail: it finds the README's commands, so an empty list is not a pass."""
    paths = {" ".join(c.path) for c in COMMANDS}
    assert {"run", "resume", "report", "memory search", "jobs cancel", "losses check"} <= paths
    assert any(c.path == ("run",) and "--replay" in c.flags for c in COMMANDS)


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: f"L{c.line}-{'-'.join(c.path)}")
def test_each_readme_command_exists_with_the_flags_it_shows(command: ReadmeCommand) -> None:
    found = _click_command(command.path)
    shown = "disco " + " ".join(command.path)
    assert found is not None and command.path, f"README line {command.line}: no `{shown}`"
    assert not _is_group(found), f"README line {command.line}: `{command.path}` needs a subcommand"
    taken = {opt for p in found.params for opt in (*p.opts, *p.secondary_opts)} | {"--help"}
    unknown = sorted(command.flags - taken)
    assert not unknown, f"README line {command.line}: `disco {' '.join(command.path)}` takes no {unknown}"


def test_each_readme_command_is_run_by_a_test() -> None:
    shown = {" ".join(c.path) for c in COMMANDS}
    assert shown <= set(COVERED_BY), f"README commands no test runs: {sorted(shown - set(COVERED_BY))}"
    for path, node in COVERED_BY.items():
        file, name = node.split("::")
        tree = ast.parse((REPO / "tests" / file).read_text(encoding="utf-8"))
        defined = {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
        assert name in defined, f"`disco {path}` is said to be run by {node}, which does not exist"
        source = _with_drivers((REPO / "tests" / file).read_text(encoding="utf-8"))
        assert all(f'"{word}"' in source for word in path.split()), f"{node} never names `{path}`"


def _with_drivers(source: str) -> str:
    """A test's source and the scripts in tests/ that it runs or imports (tmux_tui.py drives the TUI)."""
    named = set(re.findall(r"\b(\w+)\.py\b", source)) | set(re.findall(r"^from (\w+) import", source, re.M))
    drivers = [REPO / "tests" / f"{n}.py" for n in sorted(named)]
    return "\n".join([source, *(d.read_text(encoding="utf-8") for d in drivers if d.is_file())])
