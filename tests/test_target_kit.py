"""The target kit (targets/kit.py): a policy's violations as one check, a check run in the real local
sandbox that comes back as a report with its fingerprint (or as a failed `sandbox` check when the run
does not return what it should), defaults that read like a target without the optional members, the
registry's required members taken from the protocol, and the built-in and example targets on the kit."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from agent_helpers import REPO

from sandbox.policy import check_policy
from targets.base import (
    TARGET_MEMBERS,
    Target,
    baseline_of,
    evaluates_seeds_first,
    evaluators_of,
    models_used_of,
    not_ready_of,
    summary_of,
)
from targets.kit import SandboxCaller, TargetKit, policy_result
from targets.registry import REQUIRED, TargetLoadError, get_target
from targets.results import CheckReport

PROBE = '''
import time

from targets.kit import sandboxed_check
from targets.results import CheckReport, CheckResult


def check(code, mode="pass"):
    """Runs in the sandbox, shipped with the request."""
    if mode == "slow":
        time.sleep(30)
    if mode == "garbage":
        return {"report": {"passed": "perhaps"}}
    report = CheckReport.from_checks([CheckResult(name="runs", passed=mode == "pass", message=code)])
    return sandboxed_check(report, [1.0, -2.5])
'''


class Probe(TargetKit):
    """A target on the kit that declares none of the optional members."""

    name = "probe"
    description = "Discover a probe. Anything else is detail."
    interface = "def f(): ..."
    fitness_meaning = "none"

    def __init__(self, sandbox: SandboxCaller | None = None, timeout_s: float = 30.0) -> None:
        super().__init__(sandbox)
        self.rules: list[str] = []
        self.timeout_s = timeout_s

    def policy(self, code: str) -> Any:
        return policy_result(check_policy(code, frozenset({"math"})), "only math")

    def check(self, code: str, mode: str = "pass") -> CheckReport:
        return self.check_in_sandbox(code, "check", self.timeout_s, mode=mode)

    def evaluate(self, code: str, name: str, seeds: list[int] | None = None) -> Any:
        raise AssertionError("a protocol member these tests never call: they test the kit's checks")

    def seeds(self) -> list[Any]:
        return []

    def offline_proposer(self, seed: int) -> Any:
        raise AssertionError("a protocol member these tests never call: they test the kit's checks")


class Bare:
    """The same declarations without the kit: what the protocol's optional readers see by default."""

    description = Probe.description


@pytest.fixture
def probe_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A package outside the repository (hidden inside bubblewrap): only its shipped sources can run."""
    (tmp_path / "kit_probe_pkg").mkdir()
    (tmp_path / "kit_probe_pkg" / "__init__.py").write_text("")
    (tmp_path / "kit_probe_pkg" / "checks.py").write_text(PROBE)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "kit_probe_pkg.checks"
    for name in ("kit_probe_pkg", "kit_probe_pkg.checks"):
        sys.modules.pop(name, None)


def test_policy_result_quotes_the_first_violations_at_the_first_line() -> None:
    code = "x = 1\nimport os\nimport sys\nimport socket\nimport shutil\n"
    result = policy_result(check_policy(code, frozenset({"math"})), "only math")
    assert not result.passed and result.name == "policy" and result.line == 2
    assert "`os`" in result.message and "`socket`" in result.message and "`shutil`" not in result.message
    clean = policy_result(check_policy("import math\n", frozenset({"math"})), "only math")
    assert clean.passed and clean.message == "only math" and clean.line is None


def test_a_check_in_the_sandbox_carries_its_fingerprint(probe_package: str) -> None:
    probe = Probe(SandboxCaller("local", probe_package, ship_sources=True))
    try:
        report = probe.check("the code")
        assert report.passed and report.checks[0].message == "the code"
        assert report.fingerprint == probe.fingerprint("the code") == [1.0, -2.5]
        failed = probe.check("other code", mode="fail")
        assert not failed.passed and failed.fingerprint is None and probe.fingerprint("other code") is None
        garbage = probe.check("third", mode="garbage")
        assert [c.name for c in garbage.failures()] == ["sandbox"]
        assert "returned no valid report" in garbage.checks[0].message
    finally:
        probe.close()
    assert probe.sandbox is not None and probe.sandbox.sandbox is None, "close closes the sandbox"
    try:
        assert probe.check("after close").passed, "a check after close opens a new sandbox"
    finally:
        probe.close()


def test_a_check_that_does_not_return_is_a_failed_sandbox_check(probe_package: str) -> None:
    probe = Probe(SandboxCaller("local", probe_package, ship_sources=True), timeout_s=2.0)
    try:
        report = probe.check("slow code", mode="slow")
    finally:
        probe.close()
    (check,) = report.checks
    assert not report.passed and check.name == "sandbox" and report.fingerprint is None
    assert check.message.startswith("the checks did not complete in the sandbox: timeout")
    assert probe.fingerprint("slow code") is None


def test_without_its_module_shipped_the_sandbox_cannot_import_it(probe_package: str) -> None:
    probe = Probe(SandboxCaller("local", probe_package, ship_sources=False))
    try:
        report = probe.check("code")
    finally:
        probe.close()
    assert [c.name for c in report.failures()] == ["sandbox"] and "kit_probe_pkg" in str(report.checks[0])


def test_the_kits_defaults_read_like_a_target_without_the_optional_members() -> None:
    readers = (summary_of, baseline_of, evaluators_of, not_ready_of, models_used_of, evaluates_seeds_first)
    for reader in readers:
        assert reader(Probe()) == reader(Bare()), reader.__name__
    assert summary_of(Probe()) == "Discover a probe."
    with pytest.raises(RuntimeError, match="no sandbox caller"):
        Probe().check("code")


def test_the_required_members_are_the_protocols(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert REQUIRED == TARGET_MEMBERS
    assert set(TARGET_MEMBERS) == {*Target.__annotations__, "policy", "check", "fingerprint", "evaluate",
                                   "seeds", "offline_proposer", "close"}  # fmt: skip
    monkeypatch.setattr(sys, "path", list(sys.path))
    file = tmp_path / "kit_closeless_target.py"
    file.write_text(
        textwrap.dedent("""
            class Closeless:
                name = description = interface = fitness_meaning = "x"
                rules = []
                def policy(self, code): ...
                def check(self, code): ...
                def fingerprint(self, code): ...
                def evaluate(self, code, name, seeds=None): ...
                def seeds(self): ...
                def offline_proposer(self, seed): ...

            def make_target(options, env):
                return Closeless()
        """)
    )
    try:
        with pytest.raises(TargetLoadError, match="lacks close"):
            get_target(str(file), {}, tmp_path / "cache")
    finally:
        sys.modules.pop("kit_closeless_target", None)


def test_the_dpo_and_example_targets_take_their_plumbing_from_the_kit() -> None:
    """No sandbox, report or fingerprint plumbing of their own (issue 17: none repeated between them)."""
    from targets.agents.target import AgentSystemTarget
    from targets.dpo.target import DPOTarget

    sys.path.insert(0, str(REPO / "examples"))
    try:
        from optimizer_target.target import OptimizerTarget
    finally:
        sys.path.remove(str(REPO / "examples"))
    for cls in (DPOTarget, OptimizerTarget, AgentSystemTarget):
        assert issubclass(cls, TargetKit) and "fingerprint" not in vars(cls), cls
    for path in ("targets/dpo/target.py", "examples/optimizer_target/target.py"):
        source = (REPO / path).read_text(encoding="utf-8")
        for plumbing in ("get_sandbox", "SandboxRequest", "CheckReport.model_validate", "did not complete"):
            assert plumbing not in source, (path, plumbing)
