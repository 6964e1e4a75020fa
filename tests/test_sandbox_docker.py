"""Docker backend specifics against a real engine (podman's Docker API here; see tests/sandbox_backends.py).
The shared escape suite runs on it in tests/test_sandbox_escapes.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sandbox_backends import DOCKER_HOST, ENGINE_UNENFORCED, needs_containing_engine, open_sandbox

from sandbox.base import Sandbox
from sandbox.docker_backend import unenforced_limits
from sandbox.models import SandboxLimits, SandboxRequest
from sandbox.registry import SandboxUnavailable, get_sandbox
from targets.dpo.zoo import get_zoo_loss

pytestmark = pytest.mark.skipif(
    not DOCKER_HOST, reason="DISCO_DOCKER_HOST is unset (run `make sandbox-deps` to start podman)"
)


@pytest.fixture(scope="module")
def docker_sandbox() -> Iterator[Sandbox]:
    yield from open_sandbox("docker")


def test_an_engine_that_cannot_enforce_limits_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """The engine here: refused with the limits it would drop unless the person accepts it (then its
    doctor says which are not enforced); or, where it enforces them all, opened with all of them."""
    monkeypatch.delenv("DISCO_UNSAFE_SANDBOX", raising=False)
    if ENGINE_UNENFORCED:
        with pytest.raises(SandboxUnavailable, match=r"cannot enforce the memory, pids, cpu share limits"):
            get_sandbox("docker", base_url=DOCKER_HOST)
        monkeypatch.setenv("DISCO_UNSAFE_SANDBOX", "1")
    sandbox = get_sandbox("docker", base_url=DOCKER_HOST)
    try:
        report = sandbox.doctor()
    finally:
        sandbox.close()
    every = {"wall clock", "memory", "cpu share", "pids", "open files", "cpu seconds", "file size", "output"}
    assert set(report.limits_enforced) == every - set(ENGINE_UNENFORCED)
    assert ("NOT enforced" in report.detail) == bool(ENGINE_UNENFORCED)


@pytest.mark.parametrize(
    ("info", "dropped"),
    [
        ({"CgroupVersion": "1", "SecurityOptions": ["name=seccomp,profile=default", "name=rootless"]},
         ["memory", "pids", "cpu share"]),  # rootless podman or Docker on cgroup v1
        ({"CgroupVersion": "2", "SecurityOptions": ["name=rootless"], "PidsLimit": True}, []),
        ({"CgroupVersion": "1", "SecurityOptions": ["name=seccomp"], "MemoryLimit": True}, []),
        ({"CgroupVersion": "2", "MemoryLimit": True, "PidsLimit": False, "CpuCfsQuota": True}, ["pids"]),
        # podman 4 as a user: its Docker answer claims every limit; its libpod answer says rootless, v1
        ({"CgroupVersion": "1", "SecurityOptions": ["name=seccomp"], "MemoryLimit": True, "PidsLimit": True,
          "host": {"security": {"rootless": True}, "cgroupVersion": "v1"}}, ["memory", "pids", "cpu share"]),
    ],
)  # fmt: skip
def test_unenforced_limits_read_from_the_engine_info(info: dict, dropped: list[str]) -> None:
    assert unenforced_limits(info) == dropped


@needs_containing_engine
def test_container_is_unprivileged_and_read_only(docker_sandbox: Sandbox) -> None:
    code = (
        "import os\n"
        "print(os.getuid(), open('/proc/self/status').read().split('CapEff:')[1].split()[0])\n"
        "open('written.txt', 'w').write('ok')\n"
        "try:\n    open('/usr/x', 'w')\nexcept OSError as exc:\n    print(exc.strerror)\n"
    )
    result = docker_sandbox.run(SandboxRequest(code=code, return_files=["*.txt"]))
    assert result.status == "ok", result.stderr
    assert result.stdout.split("\n")[:2] == ["61000 0000000000000000", "Read-only file system"]
    assert result.files == {"written.txt": b"ok"}


@needs_containing_engine
def test_memory_limit_is_the_engines(docker_sandbox: Sandbox) -> None:
    code = "hog = []\nwhile True:\n    hog.append(bytearray(64 << 20))"
    result = docker_sandbox.run(SandboxRequest(code=code, limits=SandboxLimits(memory_mb=256)))
    assert result.status == "oom", result.reason
    assert result.peak_memory_mb is None or result.peak_memory_mb <= 300


@needs_containing_engine
def test_container_mounts_nothing_of_the_host_but_the_code(docker_sandbox: Sandbox) -> None:
    """No checkout (its .disco holds runs, memory, caches), no home, no /srv; no capability at all,
    no_new_privs and a seccomp filter."""
    from sandbox.isolation import REPO_ROOT

    code = (
        "import json, os\n"
        "status = dict(l.split(':', 1) for l in open('/proc/self/status').read().splitlines() if ':' in l)\n"
        f"seen = {{p: sorted(os.listdir(p)) for p in ({str(REPO_ROOT)!r}, '/root', '/srv', '/home') "
        "if os.path.isdir(p)}\n"
        "print(json.dumps({'seen': seen, **{k: status[k].strip() for k in "
        "('CapBnd', 'CapEff', 'CapPrm', 'NoNewPrivs', 'Seccomp')}}))\n"
    )
    result = docker_sandbox.run(SandboxRequest(code=code))
    assert result.status == "ok", result.stderr
    facts = json.loads(result.stdout)
    assert set(facts["seen"].get(str(REPO_ROOT), [])) <= {"sandbox", "targets", "memory", ".venv"}
    for path in ("/root", "/srv", "/home"):
        try:
            host = sorted(os.listdir(path)) if os.path.isdir(path) else []
        except PermissionError:  # as a user, /root is closed to us: what we cannot list we cannot compare
            host = []
        assert not host or facts["seen"].get(path, []) != host, f"the container shows the host's {path}"
    assert facts["CapBnd"] == facts["CapEff"] == facts["CapPrm"] == "0000000000000000"
    assert (facts["NoNewPrivs"], facts["Seccomp"]) == ("1", "2")


@needs_containing_engine
def test_loss_check_runs_in_a_container(docker_sandbox: Sandbox) -> None:
    request = SandboxRequest(
        call="targets.dpo.checks:check_candidate",
        kwargs={"code": get_zoo_loss("ipo").code, "time_budget_s": 20},
        preload=("torch",),
        limits=SandboxLimits(timeout_s=120, memory_mb=4096),
    )
    result = docker_sandbox.run(request)
    assert result.status == "ok", result.stderr
    assert result.value["passed"] is True and result.value["checks"][0]["name"] == "policy"


def test_unreachable_engine_is_one_clear_error() -> None:
    with pytest.raises(SandboxUnavailable, match=r"no Docker engine answers at unix:///nonexistent\.sock"):
        get_sandbox("docker", base_url="unix:///nonexistent.sock")


def test_missing_image_says_how_to_build_it() -> None:
    with pytest.raises(SandboxUnavailable, match=r"build it with `python sandbox/image/build\.py`"):
        get_sandbox("docker", base_url=DOCKER_HOST, image="disco-sandbox:missing")


@needs_containing_engine
def test_losses_check_cli_through_docker(tmp_path: Path) -> None:
    file = tmp_path / "dpo.py"
    file.write_text(get_zoo_loss("dpo").code, encoding="utf-8")
    disco = Path(sys.executable).with_name("disco")
    proc = subprocess.run(
        [str(disco), "losses", "check", str(file), "--json", "--sandbox", "docker"],
        capture_output=True, text=True, timeout=180, cwd=tmp_path, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["passed"] is True
