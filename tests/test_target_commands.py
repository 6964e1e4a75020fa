"""A target contributes its own `disco` commands and its archive fingerprint through the registry (issue
17.4): the builtin DPO target's `disco losses` / `disco bench losses | sigma`, and an installed package's
through an entry point in `disco.commands` (a real dist-info on sys.path, run by the real CLI). The CLI
still starts without torch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from agent_helpers import REPO, cli

from targets.commands import FingerprintCall, TargetCommands
from targets.registry import TargetLoadError, archive_fingerprint, command_sources, commands_of

PLUGIN = textwrap.dedent(
    '''
    """An installed target's commands: a group of its own and a benchmark under `disco bench`."""
    from typing import Annotated

    import typer

    from targets.commands import CommandContext, FingerprintCall, TargetCommands


    def register(cli: CommandContext) -> None:
        group = typer.Typer(help="The plain target's own commands.", no_args_is_help=True)

        @group.command("greet")
        def greet(name: Annotated[str, typer.Option(help="Whom to greet.")] = "you") -> None:
            """Say hello."""
            if not name:
                raise cli.fail("--name is empty")
            typer.echo(f"hello {name}")

        @cli.bench.command("plain")
        def bench_plain() -> None:
            """Where the plain target would keep its results."""
            typer.echo(f"cache {cli.cache_dir()} sandbox {cli.sandbox_name(None)}")

        cli.root.add_typer(group, name="plain")


    COMMANDS = TargetCommands(
        register=register,
        archive_fingerprint=FingerprintCall(call="disco_cmd_plugin:fp", preload=(), length=3),
    )
    NOT_COMMANDS = {"register": register}
    '''
)


@pytest.fixture
def plugin_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A package `disco_cmd_plugin` installed as a dist-info whose `disco.commands` entry points name a
    good declaration, one of a module that does not exist, one that is not a TargetCommands, and one that
    would take over the builtin `dpo` (on sys.path here and, through PYTHONPATH, for the CLI)."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "disco_cmd_plugin.py").write_text(PLUGIN)
    dist = site / "disco_cmd_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: disco-cmd-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        "[disco.commands]\nplain = disco_cmd_plugin:COMMANDS\nghost = no_such_module_xyz:COMMANDS\n"
        "odd = disco_cmd_plugin:NOT_COMMANDS\ndpo = disco_cmd_plugin:COMMANDS\n"
    )
    monkeypatch.syspath_prepend(str(site))
    yield site
    sys.modules.pop("disco_cmd_plugin", None)  # each test's copy lives in its own tmp dir


def _env(site: Path) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if k != "DISCO_SANDBOX"}
    return clean | {"PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}


def test_an_installed_target_adds_its_commands_and_a_broken_one_is_named(
    tmp_path: Path, plugin_site: Path
) -> None:
    home = tmp_path / "home"
    helped = cli(home, "--help", env=_env(plugin_site) | {"COLUMNS": "200"})
    assert helped.returncode == 0, helped.stderr
    assert "The plain target's own commands." in helped.stdout and "losses" in helped.stdout
    warnings = helped.stderr.strip().splitlines()
    assert len(warnings) == 2 and "Traceback" not in helped.stderr, helped.stderr
    assert "'ghost'" in warnings[0] and "no_such_module_xyz" in warnings[0]
    assert "'odd'" in warnings[1] and "not a TargetCommands" in warnings[1]

    greeted = cli(home, "plain", "greet", "--name", "Ada", env=_env(plugin_site))
    assert (greeted.returncode, greeted.stdout) == (0, "hello Ada\n")
    refused = cli(home, "plain", "greet", "--name", "", env=_env(plugin_site))
    assert refused.returncode == 2 and refused.stderr.strip().endswith("--name is empty.")

    benched = cli(home, "bench", "plain", env=_env(plugin_site))
    assert benched.returncode == 0, benched.stderr
    assert benched.stdout.startswith(f"cache {home.resolve()}") and benched.stdout.endswith("sandbox local\n")


def test_the_builtin_keeps_its_commands_beside_an_installed_target(tmp_path: Path, plugin_site: Path) -> None:
    """An entry point named `dpo` does not take over the builtin's commands."""
    assert command_sources()["dpo"] == "targets.dpo.commands:COMMANDS"
    listed = cli(tmp_path / "home", "losses", "list", "--json", env=_env(plugin_site))
    assert listed.returncode == 0, listed.stderr
    assert "dpo" in [row["name"] for row in json.loads(listed.stdout)]
    assert "plain" not in listed.stdout


def test_the_registry_hands_out_each_targets_declaration(plugin_site: Path) -> None:
    plain = commands_of("plain")
    assert isinstance(plain, TargetCommands) and plain.register is not None
    assert archive_fingerprint("plain") == FingerprintCall(call="disco_cmd_plugin:fp", preload=(), length=3)
    assert commands_of("no-such-target") is None and archive_fingerprint("no-such-target") is None
    with pytest.raises(TargetLoadError, match="NOT_COMMANDS is a dict, not a TargetCommands"):
        commands_of("odd")
    assert archive_fingerprint("ghost") is None  # it does not load: judged by text alone


def test_the_cli_holds_the_dpo_commands_and_starts_without_torch() -> None:
    """`disco --help` stays instant: registering the targets' commands imports no torch, numpy, Chroma or
    target internals (the zoo, the checks, the trainer)."""
    code = (
        "import sys, typer.main, agent.cli;"
        "root = typer.main.get_command(agent.cli.app);"
        "print(sorted(root.commands['losses'].commands), sorted(root.commands['bench'].commands));"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('torch', 'numpy', 'chromadb', 'transformers', 'memory') or m.startswith('targets.dpo.')))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert proc.returncode == 0, proc.stderr
    commands, loaded = proc.stdout.splitlines()
    assert commands == "['check', 'list', 'show'] ['losses', 'sigma']"
    assert loaded == "['targets.dpo.commands']"
