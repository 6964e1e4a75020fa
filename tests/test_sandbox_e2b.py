"""The E2B backend at its boundary (E2B is unreachable here): clear errors, and the translation of
requests into E2B cells and of E2B's executions into results, with E2B's own model classes."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from e2b_code_interpreter.models import Execution, ExecutionError, Logs

from sandbox.base import finish
from sandbox.e2b_backend import VALUE_MARKER, execution_outcome, to_python
from sandbox.models import SandboxLimits, SandboxRequest, SandboxResult
from sandbox.registry import SandboxUnavailable, get_sandbox
from targets.dpo.policy import LOSS_ALLOWED_IMPORTS


def test_no_key_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("E2B_API_KEY", raising=False)
    with pytest.raises(SandboxUnavailable, match=r"^the e2b sandbox needs an API key: set E2B_API_KEY$"):
        get_sandbox("e2b")


def test_unreachable_endpoint_is_one_clear_error() -> None:
    sandbox = get_sandbox("e2b", api_key="e2b_test", api_url="http://127.0.0.1:9")
    started = time.monotonic()
    with pytest.raises(SandboxUnavailable, match=r"^cannot create an E2B sandbox at http://127\.0\.0\.1:9"):
        sandbox.run(SandboxRequest(code="print(1)"))
    assert time.monotonic() - started < 30


def test_policy_is_checked_before_contacting_e2b() -> None:
    sandbox = get_sandbox("e2b", api_key="e2b_test", api_url="http://127.0.0.1:9")
    result = sandbox.run(SandboxRequest(code="import os", allowed_imports=LOSS_ALLOWED_IMPORTS))
    assert (result.status, result.backend) == ("policy", "e2b")


def _finish(execution: Execution) -> SandboxResult:
    return finish(execution_outcome(execution, 0.5, 4096), SandboxLimits(), "e2b", [])


def test_successful_execution() -> None:
    result = _finish(Execution(logs=Logs(stdout=["a\n", "b\n"], stderr=["warn\n"])))
    assert (result.status, result.exit_code, result.stdout, result.stderr) == ("ok", 0, "a\nb\n", "warn\n")


def test_error_execution_keeps_the_traceback() -> None:
    error = ExecutionError(name="ValueError", value="bad", traceback="Traceback ...\n  line 3")
    result = _finish(Execution(logs=Logs(stdout=["partial\n"]), error=error))
    assert (result.status, result.exit_code) == ("error", 1)
    assert "line 3" in result.stderr and "ValueError: bad" in result.stderr


def test_system_exit_is_an_exit_status() -> None:
    result = _finish(Execution(error=ExecutionError(name="SystemExit", value="3", traceback="")))
    assert (result.status, result.exit_code) == ("error", 3)


def test_call_cell_runs_and_its_value_comes_back() -> None:
    """The generated cell, run by a local Python, prints the marked value that the translation reads."""
    request = SandboxRequest(call="json:dumps", kwargs={"obj": {"x": 1}})
    cell = to_python(request).replace("/home/user/work", ".")
    out = subprocess.run([sys.executable, "-c", cell], capture_output=True, text=True, check=True).stdout
    assert out.startswith(VALUE_MARKER)
    result = _finish(Execution(logs=Logs(stdout=[out])))
    assert (result.status, result.value, result.stdout) == ("ok", '{"x": 1}', "")
