"""The Target API: `disco targets list|show`, loading a target by builtin name, file, package directory,
`module:factory` or entry point (a real dist-info on sys.path), and one clear sentence for every target
that is unknown or broken."""

from __future__ import annotations

import json
import os
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from agent_helpers import REPO, cli

from targets.base import EvaluatorInfo, describe, evaluators_of, summary_of
from targets.registry import TargetError, TargetLoadError, UnknownTarget, get_target, list_targets, resolve

EXAMPLE = REPO / "examples" / "optimizer_target" / "target.py"

PLUGIN = '''
"""A minimal target, as a plugin author would write one (it declares no summary, baseline or evaluators)."""
from targets.results import CheckReport, CheckResult


class Plain:
    name = "plain"
    description = "Discover a constant. Anything else is detail."
    interface = "def f(): return 1.0"
    rules = ["no imports"]
    fitness_meaning = "the constant; higher is better"

    def __init__(self, options):
        self.options = options

    def policy(self, code):
        return CheckResult(name="policy", passed=True, message="ok")

    def check(self, code):
        return CheckReport.from_checks([])

    def fingerprint(self, code):
        return None

    def evaluate(self, code, name, seeds=None):
        raise NotImplementedError

    def seeds(self):
        return []

    def offline_proposer(self, seed):
        raise NotImplementedError

    def close(self):
        pass


def make_target(options, env):
    return Plain(options)


def other_factory(options, env):
    target = Plain(options)
    target.name = "plain_other"
    return target
'''


@pytest.fixture(autouse=True)
def restore_sys_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loading a file target puts its directory on sys.path: undo it after each test."""
    monkeypatch.setattr(sys, "path", list(sys.path))


@pytest.fixture
def plugin_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A package `disco_plain_plugin` installed as a dist-info with two entry points in `disco.targets`,
    one of them broken, on sys.path (for this process and, through PYTHONPATH, for the CLI)."""
    site = tmp_path / "site"
    (site / "disco_plain_plugin").mkdir(parents=True)
    (site / "disco_plain_plugin" / "__init__.py").write_text(PLUGIN)
    dist = site / "disco_plain_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: disco-plain-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        "[disco.targets]\nplain = disco_plain_plugin:make_target\nghost = no_such_module_xyz:make_target\n"
    )
    monkeypatch.syspath_prepend(str(site))
    yield site
    sys.modules.pop("disco_plain_plugin", None)  # each test's copy lives in its own tmp dir


def _env(site: Path) -> dict[str, str]:
    return os.environ | {"PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}


def test_list_json_shows_builtins_and_entry_points(tmp_path: Path, plugin_dir: Path) -> None:
    proc = cli(tmp_path / "home", "targets", "list", "--json", env=_env(plugin_dir))
    assert proc.returncode == 0, proc.stderr
    rows = {r["spec"]: r for r in json.loads(proc.stdout)}
    assert rows["dpo"]["source"] == "builtin" and "DiscoPOP" in rows["dpo"]["summary"]
    assert rows["plain"]["source"] == "entry_point" and rows["plain"]["summary"] == "Discover a constant."
    assert (
        rows["ghost"]["summary"].startswith("(does not load:")
        and "no_such_module_xyz" in rows["ghost"]["summary"]
    )
    table = cli(tmp_path / "home", "targets", "list", env=_env(plugin_dir))
    assert table.returncode == 0 and "plain" in table.stdout and "entry_point" in table.stdout


def test_show_json_gives_the_full_declaration(tmp_path: Path) -> None:
    dpo = json.loads(cli(tmp_path, "targets", "show", "dpo", "--json").stdout)
    assert dpo["name"] == "dpo" and dpo["baseline"] == "DPO" and dpo["seeds"] == len(dpo["seed_names"]) > 5
    assert [e["name"] for e in dpo["evaluators"]] == ["toy", "real_dpo_job"], "cheap first"
    assert [(e["device"], e["automatic"]) for e in dpo["evaluators"]] == [("cpu", True), ("gpu", False)]
    assert "policy_chosen_logps" in dpo["interface"] and dpo["rules"] and "KL" in dpo["fitness_meaning"]
    proc = cli(tmp_path, "targets", "show", "examples/optimizer_target/target.py", "--json")
    assert proc.returncode == 0, proc.stderr
    opt = json.loads(proc.stdout)
    assert (opt["spec"], opt["source"], opt["name"], opt["baseline"]) == (
        str(EXAMPLE),
        "path",
        "optimizer",
        "Adam",
    )
    assert opt["seed_names"] == ["sgd", "momentum", "nesterov", "rmsprop", "adagrad", "adam"]
    text = cli(tmp_path, "targets", "show", "examples/optimizer_target").stdout
    assert (
        "Baseline: Adam" in text and "cpu_problems" in text and "def adam(self, param, grad, state)" in text
    )


@pytest.mark.parametrize(
    ("spec", "source", "name"),
    [
        ("dpo", "builtin", "dpo"),
        (str(EXAMPLE), "path", "optimizer"),
        (str(EXAMPLE.parent), "path", "optimizer"),  # a directory holding target.py
        ("disco_plain_plugin:other_factory", "module", "plain_other"),
        ("{site}/disco_plain_plugin", "path", "plain"),  # a package directory
        ("plain", "entry_point", "plain"),
    ],
)
def test_a_target_loads_by_every_kind_of_spec(
    tmp_path: Path, plugin_dir: Path, spec: str, source: str, name: str
) -> None:
    spec = spec.format(site=plugin_dir)
    resolved = resolve(spec)
    assert resolved.source == source
    target = get_target(spec, {}, tmp_path / "cache")
    try:
        assert target.name == name
    finally:
        target.close()


def test_a_file_target_is_recorded_by_its_absolute_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    resolved = resolve("examples/optimizer_target/target.py")
    assert resolved.spec == str(EXAMPLE) and resolved.module == "optimizer_target.target"
    assert resolved.root == str(EXAMPLE.parent.parent)


BROKEN_MODULES = {
    "raises_on_import.py": "raise RuntimeError('no GPU here')\n",
    "syntax_error.py": "def make_target(options, env)\n    return 1\n",
    "no_factory.py": "X = 1\n",
    "factory_raises.py": "def make_target(options, env):\n    raise ValueError('needs a data set')\n",
    "not_a_target.py": "def make_target(options, env):\n    return object()\n",
    "bad_option.py": textwrap.dedent("""
        from pydantic import BaseModel
        class Config(BaseModel):
            steps: int = 3
        def make_target(options, env):
            Config.model_validate(options)
    """),
}


@pytest.mark.parametrize(
    ("spec", "error", "fragment"),
    [
        ("chess", UnknownTarget, "unknown target 'chess'; choose one of: dpo"),
        ("missing/target.py", UnknownTarget, "no target file missing/target.py"),
        ("notes.txt", UnknownTarget, "is not a Python file"),
        ("empty_dir", UnknownTarget, "holds no target"),
        ("not..a:module", UnknownTarget, "is not of the form package.module:factory"),
        ("no_such_pkg_xyz.mod:make", TargetLoadError, "does not import: ModuleNotFoundError"),
        ("raises_on_import.py", TargetLoadError, "does not import: RuntimeError: no GPU here"),
        ("syntax_error.py", TargetLoadError, "does not import: SyntaxError"),
        ("no_factory.py", TargetLoadError, "has no factory 'make_target'"),
        ("factory_raises.py", TargetLoadError, "failed to start: ValueError: needs a data set"),
        ("not_a_target.py", TargetLoadError, "lacks name, description"),
        ("bad_option.py", TargetLoadError, "options of target"),
    ],
)
def test_unknown_and_broken_targets_get_one_sentence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, spec: str, error: type, fragment: str
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("not code")
    (tmp_path / "empty_dir").mkdir()
    for file, source in BROKEN_MODULES.items():
        (tmp_path / file).write_text(source)
    options = {"steps": "many"} if spec == "bad_option.py" else {}
    with pytest.raises(error) as caught:
        get_target(spec, options, tmp_path / "cache")
    message = str(caught.value)
    assert fragment in message and "\n" not in message.strip()
    for name in [f.removesuffix(".py") for f in BROKEN_MODULES]:
        sys.modules.pop(name, None)  # the next row re-imports from its own tmp dir


def test_the_cli_refuses_a_broken_target_in_one_sentence(tmp_path: Path) -> None:
    broken = tmp_path / "broken_target.py"
    broken.write_text("import no_such_dependency_xyz\n")
    for args in (["targets", "show", str(broken)], ["run", "--target", str(broken), "--max-candidates", "1"]):
        proc = cli(tmp_path / "home", *args)
        assert proc.returncode == 2, proc.stderr
        assert "no_such_dependency_xyz" in proc.stderr and "Traceback" not in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "home" / "runs").exists() or not any((tmp_path / "home" / "runs").iterdir())


def test_a_target_without_the_optional_declarations_gets_defaults(tmp_path: Path, plugin_dir: Path) -> None:
    target = get_target("plain", None, tmp_path)
    assert summary_of(target) == "Discover a constant."
    assert evaluators_of(target) == [
        EvaluatorInfo(name="evaluate", what="the target's `evaluate`", cost="not declared")
    ]
    info = describe(target, "plain", "entry_point")
    assert info.baseline is None and info.seeds == 0 and info.rules == ["no imports"]
    names = {i.spec for i in list_targets(tmp_path)}
    assert {"dpo", "plain", "ghost"} <= names


def test_a_target_file_may_not_shadow_a_module_already_imported(tmp_path: Path) -> None:
    clash = tmp_path / "json.py"  # `json` is imported already, from the standard library
    clash.write_text("def make_target(options, env):\n    return None\n")
    with pytest.raises(TargetError, match="already imported"):
        get_target(str(clash), None, tmp_path)


def test_package_sources_ship_a_package_or_a_lone_module(tmp_path: Path, plugin_dir: Path) -> None:
    from targets.sources import package_sources

    (plugin_dir / "disco_plain_plugin" / "sub").mkdir()
    (plugin_dir / "disco_plain_plugin" / "sub" / "checks.py").write_text("X = 1\n")
    shipped = package_sources("disco_plain_plugin.sub.checks")
    assert sorted(shipped) == ["disco_plain_plugin/__init__.py", "disco_plain_plugin/sub/checks.py"]
    assert shipped["disco_plain_plugin/sub/checks.py"] == "X = 1\n"
    (plugin_dir / "lone_target_mod.py").write_text("Y = 2\n")
    try:
        assert package_sources("lone_target_mod") == {"lone_target_mod.py": "Y = 2\n"}
    finally:
        sys.modules.pop("lone_target_mod", None)


def test_a_second_package_of_the_same_name_is_refused(tmp_path: Path) -> None:
    for copy in ("a", "b"):
        (tmp_path / copy / "same_pkg_xyz").mkdir(parents=True)
        (tmp_path / copy / "same_pkg_xyz" / "__init__.py").write_text("")
        (tmp_path / copy / "same_pkg_xyz" / "target.py").write_text(PLUGIN)
    try:
        first = get_target(str(tmp_path / "a" / "same_pkg_xyz" / "target.py"), None, tmp_path)
        assert first.name == "plain"
        with pytest.raises(TargetLoadError, match="'same_pkg_xyz' is already imported from"):
            get_target(str(tmp_path / "b" / "same_pkg_xyz"), None, tmp_path)
    finally:
        for name in ("same_pkg_xyz", "same_pkg_xyz.target"):
            sys.modules.pop(name, None)
