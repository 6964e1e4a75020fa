"""The sandbox interface on the local backend: results, limits, files, calls, threads, async, cancel."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Iterator

import pytest
from pydantic import ValidationError

from sandbox.base import Sandbox, arun
from sandbox.isolation import probe
from sandbox.local import LocalSandbox
from sandbox.models import SandboxLimits, SandboxRequest
from sandbox.registry import SandboxUnavailable, backend_names, get_sandbox
from targets.dpo.policy import LOSS_ALLOWED_IMPORTS


@pytest.fixture(scope="module")
def local() -> Iterator[LocalSandbox]:
    sandbox = LocalSandbox()
    yield sandbox
    sandbox.close()


def quick(**limits: float) -> SandboxLimits:
    return SandboxLimits(**{"timeout_s": 5.0, **limits})


def test_local_satisfies_the_protocol(local: LocalSandbox) -> None:
    assert isinstance(local, Sandbox)


@pytest.mark.parametrize(
    ("code", "status", "exit_code"),
    [
        ("print('hi')", "ok", 0),
        ("raise ValueError('bad candidate')", "error", 1),
        ("raise SystemExit(3)", "error", 3),
        ("import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)", "killed", -11),
        ("import time\ntime.sleep(60)", "timeout", -9),
    ],
    ids=["ok", "exception", "exit-3", "segv", "sleep"],
)
def test_statuses(local: LocalSandbox, code: str, status: str, exit_code: int) -> None:
    result = local.run(SandboxRequest(code=code, limits=quick(timeout_s=1.5)))
    assert (result.status, result.exit_code) == (status, exit_code), result.reason
    assert result.backend == "local" and result.reason and result.isolation
    assert result.peak_memory_mb is not None and result.peak_memory_mb > 1


def test_traceback_names_the_code_not_the_worker(local: LocalSandbox) -> None:
    result = local.run(SandboxRequest(code="x = 1\nraise ValueError('bad candidate')", limits=quick()))
    assert 'main.py", line 2' in result.stderr and "ValueError: bad candidate" in result.stderr
    assert "sandbox/worker.py" not in result.stderr


def test_output_keeps_head_and_tail(local: LocalSandbox) -> None:
    code = "for i in range(20000):\n    print(f'line {i}')"
    result = local.run(SandboxRequest(code=code, limits=quick(max_output_bytes=4096)))
    assert result.status == "ok"
    assert result.stdout.startswith("line 0\n") and result.stdout.endswith("line 19999\n")
    assert "bytes dropped by the sandbox" in result.stdout and len(result.stdout) < 4096 + 100


def test_files_in_and_out_and_env(local: LocalSandbox) -> None:
    code = (
        "import os, helper\n"
        "open('out/result.txt', 'w').write(helper.VALUE + os.environ['GREETING'])\n"
        "open('skip.bin', 'wb').write(b'x')"
    )
    request = SandboxRequest(
        code=code,
        files={"helper.py": "VALUE = 'from a file, '", "out/.keep": b""},
        env={"GREETING": "hello"},
        return_files=["out/*.txt"],
        limits=quick(),
    )
    result = local.run(request)
    assert result.status == "ok", result.stderr
    assert result.files == {"out/result.txt": b"from a file, hello"}


def test_command_request(local: LocalSandbox) -> None:
    result = local.run(SandboxRequest(command=["sh", "-c", "echo $HOME; id -u"], limits=quick()))
    assert result.status == "ok", result.stderr
    home, uid = result.stdout.split()
    assert home.startswith(f"/tmp/disco-sandbox-{os.geteuid()}/")
    assert int(uid) >= 61_000 if os.geteuid() == 0 else int(uid) == os.geteuid()  # non-root: its own uid


def test_missing_command_is_an_error(local: LocalSandbox) -> None:
    result = local.run(SandboxRequest(command=["no-such-binary-xyz"], limits=quick()))
    assert (result.status, result.exit_code) == ("error", 127)
    assert "cannot execute 'no-such-binary-xyz'" in result.stderr


def test_call_returns_a_json_value(local: LocalSandbox) -> None:
    request = SandboxRequest(call="json:dumps", kwargs={"obj": [1, 2], "indent": None}, limits=quick())
    result = local.run(request)
    assert (result.status, result.value) == ("ok", "[1, 2]")


def test_cpu_limit_ends_a_spin_before_the_wall_clock(local: LocalSandbox) -> None:
    result = local.run(SandboxRequest(code="while True: pass", limits=quick(timeout_s=20, cpu_s=1)))
    assert result.status == "timeout" and "CPU-time limit" in result.reason
    assert result.duration_s < 10


def test_file_size_limit(local: LocalSandbox) -> None:
    code = "open('big', 'wb').write(b'x' * (3 << 20))"
    result = local.run(SandboxRequest(code=code, limits=quick(max_file_mb=1)))
    assert result.status == "error" and "File too large" in result.stderr


def test_policy_refusal_names_the_line_and_runs_nothing(local: LocalSandbox) -> None:
    code = "import torch\n\nx = torch.zeros(2)\nimport os\n"
    result = local.run(SandboxRequest(code=code, allowed_imports=LOSS_ALLOWED_IMPORTS))
    assert result.status == "policy" and result.exit_code is None
    assert result.policy[0].line == 4 and "line 4: importing `os` is not allowed" in result.reason


def test_many_threads_at_once(local: LocalSandbox) -> None:
    results: dict[int, str] = {}

    def one(i: int) -> None:
        results[i] = local.run(SandboxRequest(code=f"print({i} * {i})", limits=quick(timeout_s=30))).stdout

    threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {i: f"{i * i}\n" for i in range(8)}


def test_cancel_from_another_thread(local: LocalSandbox) -> None:
    cancel = threading.Event()
    threading.Timer(0.5, cancel.set).start()
    started = time.monotonic()
    result = local.run(SandboxRequest(code="import time\ntime.sleep(60)", limits=quick(timeout_s=30)), cancel)
    assert result.status == "killed" and "cancelled" in result.reason
    assert time.monotonic() - started < 5


def test_async_run_and_cancellation(local: LocalSandbox) -> None:
    async def scenario() -> tuple[str, float]:
        ok = await arun(local, SandboxRequest(code="print('async')", limits=quick()))
        task = asyncio.create_task(
            arun(local, SandboxRequest(code="while True: pass", limits=quick(timeout_s=30)))
        )
        await asyncio.sleep(0.5)
        started = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return ok.stdout, time.monotonic() - started

    stdout, cancel_s = asyncio.run(scenario())
    assert stdout == "async\n" and cancel_s < 5


def test_warm_worker_has_the_preload_imported(local: LocalSandbox) -> None:
    code = "import sys\nprint('json' in sys.modules, 'decimal' in sys.modules)"
    local.prewarm(("decimal",))
    result = local.run(SandboxRequest(code=code, preload=("decimal",), limits=quick()))
    assert result.stdout == "True True\n"  # json: the worker's own; decimal: preloaded before the job


def test_request_validation() -> None:
    with pytest.raises(ValidationError, match="exactly one of"):
        SandboxRequest(code="x", command=["y"])
    with pytest.raises(ValidationError, match="inside the work dir"):
        SandboxRequest(code="x", files={"../escape": "x"})
    with pytest.raises(ValidationError, match="module:function"):
        SandboxRequest(call="json.dumps")


def test_registry_names_the_valid_backends() -> None:
    assert backend_names() == ["local", "docker", "e2b"]
    with pytest.raises(SandboxUnavailable, match="choose one of: local, docker, e2b"):
        get_sandbox("lxc")


@pytest.mark.parametrize("level", ["unshare", "none"])
def test_weaker_levels_are_refused_without_the_opt_in(level: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DISCO_UNSAFE_SANDBOX", raising=False)
    sandbox = LocalSandbox(isolation=level, warm=0)  # type: ignore[arg-type]
    try:
        refusal = r"opt in with --unsafe-sandbox, .*DISCO_UNSAFE_SANDBOX=1$"
        with pytest.raises(SandboxUnavailable, match=refusal):
            sandbox.run(SandboxRequest(code="print('hi')", limits=quick()))
    finally:
        sandbox.close()


@pytest.mark.parametrize("level", ["unshare", "none"])
def test_weaker_levels_still_bound_the_run(level: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if not probe()[level][0]:  # type: ignore[index]
        pytest.fail(f"{level} should work on a host where bubblewrap works: {probe()[level]}")  # type: ignore[index]
    monkeypatch.setenv("DISCO_UNSAFE_SANDBOX", "1")
    sandbox = LocalSandbox(isolation=level, warm=0)  # type: ignore[arg-type]
    try:
        ok = sandbox.run(SandboxRequest(code="print('hi')", limits=quick()))
        spin = sandbox.run(SandboxRequest(code="while True: pass", limits=quick(timeout_s=1)))
        report = sandbox.doctor()
    finally:
        sandbox.close()
    assert (ok.status, spin.status) == ("ok", "timeout")
    assert f"level: {level}" in ok.isolation
    assert "WARNING: weaker isolation accepted by the user (--unsafe-sandbox)" in ok.isolation
    assert report.network_isolated is (level == "unshare") and report.filesystem_readonly is False
    if level == "none":
        assert "network: NOT isolated (no namespaces on this host)" in ok.isolation


def test_a_preload_that_fails_is_one_clear_error() -> None:
    sandbox = LocalSandbox(warm=0)
    with pytest.raises(SandboxUnavailable, match=r"\(ModuleNotFoundError: No module named 'no_such_mod'\)$"):
        sandbox.run(SandboxRequest(code="pass", preload=("no_such_mod",)))
    sandbox.close()
