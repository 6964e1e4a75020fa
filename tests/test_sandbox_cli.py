"""`disco sandbox run|doctor` and `disco losses check` through the sandbox, via the real entry point."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from escapes.table import loss_trick_code

from targets.dpo.zoo import get_zoo_loss

DISCO = Path(sys.executable).with_name("disco")


def disco(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run(
        [str(DISCO), *args], capture_output=True, text=True, timeout=180, cwd=cwd, env=full_env, check=False
    )


@pytest.mark.parametrize(
    ("code", "status", "rc"),
    [("print('hello')", "ok", 0), ("import time\ntime.sleep(30)", "timeout", 1)],
    ids=["ok", "timeout"],
)
def test_run_json(tmp_path: Path, code: str, status: str, rc: int) -> None:
    file = tmp_path / "prog.py"
    file.write_text(code, encoding="utf-8")
    proc = disco("sandbox", "run", str(file), "--json", "--timeout", "1", "--memory-mb", "256", cwd=tmp_path)
    assert proc.returncode == rc, proc.stderr
    result = json.loads(proc.stdout)
    assert set(result) == {
        "status",
        "exit_code",
        "stdout",
        "stderr",
        "duration_s",
        "peak_memory_mb",
        "reason",
    }
    assert result["status"] == status
    if status == "ok":
        assert result["stdout"] == "hello\n" and result["exit_code"] == 0


def test_run_human_output_and_missing_file(tmp_path: Path) -> None:
    file = tmp_path / "prog.py"
    file.write_text("print('out')\nraise SystemExit(2)", encoding="utf-8")
    proc = disco("sandbox", "run", str(file), cwd=tmp_path)
    assert proc.returncode == 1 and proc.stdout == "out\n"
    assert "[local] error: exited with status 2" in proc.stderr
    missing = disco("sandbox", "run", str(tmp_path / "nope.py"), cwd=tmp_path)
    assert missing.returncode == 2 and missing.stderr.startswith(f"cannot read {tmp_path / 'nope.py'}")


def test_unknown_backend_is_one_sentence(tmp_path: Path) -> None:
    file = tmp_path / "prog.py"
    file.write_text("print(1)", encoding="utf-8")
    proc = disco("sandbox", "run", str(file), "--backend", "lxc", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "unknown sandbox backend 'lxc'; choose one of: local, docker, e2b."


def test_doctor_json_measures_the_local_backend(tmp_path: Path) -> None:
    proc = disco("sandbox", "doctor", "--json", cwd=tmp_path, env={"E2B_API_KEY": ""})
    assert proc.returncode == 0, proc.stderr
    reports = {r["backend"]: r for r in json.loads(proc.stdout)}
    assert set(reports) == {"local", "docker", "e2b"}
    local = reports["local"]
    assert local["available"] and local["network_isolated"] and local["filesystem_readonly"]
    assert "probe: uid" in local["detail"]
    # As a user, the one note is that the code keeps the caller's uid (inside a user namespace).
    user_note = "not root: the code runs as the caller's uid inside a user namespace"
    expected = [] if os.geteuid() == 0 else [user_note]
    assert local["warnings"] == expected
    assert reports["e2b"]["available"] is False and "E2B_API_KEY" in reports["e2b"]["detail"]


def test_losses_check_runs_in_the_sandbox_by_default(tmp_path: Path) -> None:
    file = tmp_path / "dpo.py"
    file.write_text(get_zoo_loss("dpo").code, encoding="utf-8")
    proc = disco("losses", "check", str(file), "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["passed"] is True


@pytest.mark.parametrize("sandbox", ["local", "none"])
def test_losses_check_refuses_an_import_trick(tmp_path: Path, sandbox: str) -> None:
    file = tmp_path / "trick.py"
    file.write_text(loss_trick_code("getattr_string"), encoding="utf-8")
    proc = disco("losses", "check", str(file), "--json", "--sandbox", sandbox, cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    policy = json.loads(proc.stdout)["checks"][0]
    assert (
        policy["name"] == "policy"
        and not policy["passed"]
        and "`getattr` is not allowed" in policy["message"]
    )


def test_losses_check_unavailable_backend_is_one_sentence(tmp_path: Path) -> None:
    file = tmp_path / "dpo.py"
    file.write_text(get_zoo_loss("dpo").code, encoding="utf-8")
    proc = disco("losses", "check", str(file), "--sandbox", "e2b", cwd=tmp_path, env={"E2B_API_KEY": ""})
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip() == "the e2b sandbox needs an API key: set E2B_API_KEY."
