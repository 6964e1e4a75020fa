"""Attacks on disco's process boxes (issue 15, items 4 and 8): every row of tests/escapes/jail_attacks.py
against the in-place jail (a plain Python "zygote" forks a child per row and jails it), as root and as
an unprivileged user, and against the bubblewrap sandbox (`LocalSandbox().run`).

A row passes when the attack fails and the host is unchanged: the bait's key appears in no output, no
listener saw a connection, no file appeared outside scratch, nothing outlived the run, and the jail or
sandbox itself reports every guarantee (no "NOT ..." line).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import json
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from escapes import jail_attacks
from escapes.jail_attacks import ATTACKS, Attack, accepted
from escapes.table import sandbox_processes

from sandbox import seccomp
from sandbox.isolation import REPO_ROOT, TMP_MB, allow_list, python_paths
from sandbox.jail import JailRefused, JailSpec, enter_jail, probe_jail
from sandbox.local import LocalSandbox
from sandbox.models import SandboxLimits, SandboxRequest, SandboxResult
from sandbox.pool import sandbox_root

RUNNER = Path(jail_attacks.__file__)
NOBODY = 65534
MODES = ["root", f"uid {NOBODY}"] if os.geteuid() == 0 else ["caller"]
"""As root (CI): the jail as root, and again as an unprivileged user; otherwise as the caller."""


@dataclass
class Bait:
    canary: str
    params: dict[str, Any]
    outside: list[Path]


def _allowed_top(exec_dirs: bool, writable: list[Path]) -> list[str]:
    binds = allow_list(writable=writable, exec_dirs=exec_dirs)
    return sorted({Path(b.dest).parts[1] for b in binds} | {"dev", "proc", "tmp", "etc"})


@pytest.fixture(scope="module")
def bait() -> Iterator[Bait]:
    """Secrets where a careless sandbox would show them, all readable by any uid: a config with an
    api_key under /srv, files in home directories, a file in the checkout's .disco; and paths outside
    scratch that must stay absent."""
    tag = secrets.token_hex(4)
    canary = f"sk-canary-{secrets.token_hex(8)}"
    # /srv and /home need root; a non-root run puts the same bait where it can (still outside any box)
    root = os.geteuid() == 0
    srv = Path(f"/srv/disco-bait-{tag}" if root else f"/var/tmp/disco-bait-srv-{tag}")
    home = Path(f"/home/disco-bait-{tag}" if root else f"/var/tmp/disco-bait-home-{tag}")
    disco_dir = REPO_ROOT / ".disco"
    made_disco = not disco_dir.exists()
    files = {
        srv / "config.toml": f'[models]\napi_key = "{canary}"\n',
        Path.home() / f".disco-bait-{tag}": canary,
        home / ".netrc": f"machine api password {canary}\n",
        disco_dir / f"disco-bait-{tag}": canary,
    }
    for path, text in files.items():
        path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        path.chmod(0o644)
    outside = [
        Path(f"/tmp/disco-escape-{tag}"),
        REPO_ROOT / f".disco-escape-{tag}",
        Path(f"/etc/disco-escape-{tag}"),
    ]
    params = {
        "canary": canary,
        "home_baits": [str(Path.home() / f".disco-bait-{tag}"), str(home / ".netrc")],
        "srv_config": str(srv / "config.toml"),
        "srv_dir": str(srv),
        "disco_bait": str(disco_dir / f"disco-bait-{tag}"),
        "checkout_files": [str(REPO_ROOT / n) for n in ("README.md", "pyproject.toml", "agent/__init__.py")],
        "repo_root": str(REPO_ROOT),
        "shared_dir": str(REPO_ROOT.parent / "shared"),
        "outside_paths": [str(p) for p in outside],
    }
    try:
        yield Bait(canary, params, outside)
    finally:
        shutil.rmtree(srv, ignore_errors=True)
        shutil.rmtree(home, ignore_errors=True)
        for path in [*files, *outside]:
            path.unlink(missing_ok=True)
        if made_disco:
            with contextlib.suppress(OSError):
                disco_dir.rmdir()  # only if nothing else landed there meanwhile


def _reachable_argv(workroot: Path) -> list[str]:
    """Run the harness as uid 65534: in a mount namespace of its own where the interpreter, the venv and
    the checkout are reachable (a tmpfs over a 0700 ancestor such as /root, the paths bound back)."""
    stage = Path(tempfile.mkdtemp(prefix="stage-", dir=workroot))
    lines, tops, moves = ["set -e"], set(), []
    for i, path in enumerate(sorted({*python_paths(), REPO_ROOT})):
        blocked = next(
            (p for p in reversed([path, *path.parents]) if p.is_dir() and not p.stat().st_mode & 1), None
        )
        if blocked is None:
            continue
        lines += [f"mkdir -p {stage}/{i}", f"mount --bind {shlex.quote(str(path))} {stage}/{i}"]
        tops.add(blocked)
        moves.append((i, path))
    lines += [f"mount -t tmpfs -o mode=0755 tmpfs {shlex.quote(str(top))}" for top in sorted(tops)]
    for i, path in moves:
        lines += [f"mkdir -p {shlex.quote(str(path))}", f"mount --move {stage}/{i} {shlex.quote(str(path))}"]
    lines.append(f'exec setpriv --reuid={NOBODY} --regid={NOBODY} --clear-groups -- "$@"')
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", "\n".join(lines), "sh"]


@pytest.fixture(scope="module")
def jail_runs(bait: Bait) -> Iterator[dict[str, dict[str, Any]]]:
    """The whole table once per mode, each run in a fresh harness process whose environment holds the
    bait key (as a zygote started with the user's environment would)."""
    runs = {}
    for mode in MODES:
        workroot = Path(tempfile.mkdtemp(prefix="disco-jail-attacks-"))
        try:
            argv: list[str] = []
            if mode.startswith("uid"):
                workroot.chmod(0o711)
                argv = _reachable_argv(workroot)
                scratch = workroot / "rows"
                scratch.mkdir()
                os.chown(scratch, NOBODY, NOBODY)
            else:
                scratch = workroot
            setup = {
                "repo_root": str(REPO_ROOT),
                "workroot": str(scratch),
                "params": {**bait.params, "allowed_top": _allowed_top(False, [scratch])},
            }
            env = {**os.environ, "OPENAI_API_KEY": bait.canary, "PYTHONDONTWRITEBYTECODE": "1"}
            proc = subprocess.run(
                [*argv, sys.executable, str(RUNNER), json.dumps(setup)],
                capture_output=True, text=True, env=env, timeout=180, check=False,
            )  # fmt: skip
            assert proc.returncode == 0, f"the {mode} harness failed: {proc.stderr[-3000:]}"
            runs[mode] = json.loads(proc.stdout.strip().splitlines()[-1])
        finally:
            shutil.rmtree(workroot, ignore_errors=True)
    yield runs


def _jail_problems(attack: Attack, row: dict[str, Any], canary: str) -> list[str]:
    problems = list(row["host"])
    if canary in json.dumps(row):
        problems.append("the bait key reached the output")
    outcome = row["outcome"]
    if outcome is not None:
        if outcome["escaped"]:
            problems.append(f"the attack got out: {outcome['how']}")
        problems += [f"the jail reports {line}" for line in outcome["said"] if line.startswith("NOT ")]
    if attack.ends == "returns" and (row["exit_code"] != 0 or outcome is None):
        problems.append(
            f"the attack did not run to its end: exit {row['exit_code']}, log {row['log'][-500:]}"
        )
    if attack.ends == "killed" and (outcome is not None or row["exit_code"] == 0):
        problems.append("the attack was not stopped")
    if "JAIL REFUSED" in row["log"]:
        problems.append(row["log"])
    return problems


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("attack", ATTACKS, ids=[f"{a.cls}-{a.name}" for a in ATTACKS])
def test_jail_contains_the_attack(jail_runs: dict[str, Any], bait: Bait, mode: str, attack: Attack) -> None:
    run = jail_runs[mode]
    assert run["uid"] == (NOBODY if mode.startswith("uid") else os.getuid())
    row = run["rows"][attack.name]
    assert _jail_problems(attack, row, bait.canary) == [], row
    if attack.name == "cpu":  # the soft limit's SIGXCPU ended it, well before the harness's 30 s
        assert row["exit_code"] in (128 + signal.SIGXCPU, 128 + signal.SIGKILL) and not row["timed_out"]
    if attack.name == "wall":  # killing the caller's child took the whole jail with it
        assert row["timed_out"] and not row["host"]


# ------------------------------------------------------------------------------ the bubblewrap sandbox
BWRAP_MAIN = """
import json, os
import jail_attacks
params = json.load(open("params.json"))
params["scratch"] = os.getcwd()
print("RESULT " + json.dumps(jail_attacks.run_attack(params["attack"], params)))
"""
BWRAP_ATTACKS = [a for a in ATTACKS if a.bwrap]


@pytest.fixture(scope="module")
def bwrap_box() -> Iterator[LocalSandbox]:
    box = LocalSandbox(warm=1)
    yield box
    box.close()


@pytest.fixture(scope="module")
def host_side(bait: Bait) -> Iterator[dict[str, Any]]:
    """Listeners on this host (loopback, the outward address, an abstract unix socket) and a sentinel."""
    listeners, net = jail_attacks._listeners()
    sentinel = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
    try:
        yield {"listeners": listeners, "net": net, "sentinel": sentinel}
    finally:
        sentinel.kill()
        sentinel.wait()
        for listener in listeners:
            listener.close()


def _bwrap_request(attack: Attack, params: dict[str, Any]) -> SandboxRequest:
    limits = SandboxLimits(
        timeout_s=attack.timeout_s,
        cpu_s=1 if attack.name == "cpu" else None,
        memory_mb=512,
        max_processes=16,
        max_file_mb=2,
    )
    files = {"jail_attacks.py": RUNNER.read_text(encoding="utf-8"), "params.json": json.dumps(params)}
    return SandboxRequest(code=BWRAP_MAIN, files=files, limits=limits)


def _bwrap_problems(attack: Attack, result: SandboxResult, bait: Bait, host: dict[str, Any]) -> list[str]:
    problems = accepted(host["listeners"])
    problems += [f"{path} appeared on the host" for path in bait.outside if path.exists()]
    if host["sentinel"].poll() is not None:
        problems.append("the host sentinel was killed")
    if os.geteuid() == 0 and (left := sandbox_processes()):
        problems.append(f"processes of a sandbox uid outlived the run: {left[:5]}")
    if bait.canary in result.stdout + result.stderr:
        problems.append("the bait key reached the output")
    lines = [ln for ln in result.stdout.splitlines() if ln.startswith("RESULT ")]
    outcome = json.loads(lines[-1][7:]) if lines else None
    if outcome is not None and outcome["escaped"]:
        problems.append(f"the attack got out: {outcome['how']}")
    if attack.ends == "returns" and (result.status != "ok" or outcome is None):
        problems.append(
            f"the attack did not run to its end: {result.status} {result.reason} {result.stderr[-800:]}"
        )
    if attack.ends == "killed" and (outcome is not None or result.status not in ("timeout", "killed")):
        problems.append(f"the attack was not stopped: {result.status} {result.reason}")
    return problems


@pytest.mark.parametrize("attack", BWRAP_ATTACKS, ids=[f"{a.cls}-{a.name}" for a in BWRAP_ATTACKS])
def test_bubblewrap_contains_the_attack(
    bwrap_box: LocalSandbox, bait: Bait, host_side: dict[str, Any], attack: Attack
) -> None:
    workroot = sandbox_root()
    params = {
        **bait.params, **host_side["net"], "attack": attack.name, "parent_pid": os.getpid(),
        "sentinel_pid": host_side["sentinel"].pid, "ns_fds": {}, "max_processes": 16, "max_file_mb": 2,
        "tmp_mb": TMP_MB, "memory_limit_mb": 512, "allowed_top": _allowed_top(True, [workroot]),
    }  # fmt: skip
    result = bwrap_box.run(_bwrap_request(attack, params))
    assert _bwrap_problems(attack, result, bait, host_side) == [], result.model_dump(exclude={"files"})
    assert not any(line.startswith("NOT ") for line in result.isolation)


# ----------------------------------------------------------------------------- the jail's own checks
def test_seccomp_numbers_match_libseccomp() -> None:
    """The hand-written syscall tables against libseccomp's (for the calls it knows)."""
    lib = ctypes.CDLL(ctypes.util.find_library("seccomp") or "libseccomp.so.2")
    lib.seccomp_syscall_resolve_name_arch.argtypes = [ctypes.c_uint32, ctypes.c_char_p]
    checked = 0
    for name, numbers in {**seccomp.DENIED, **seccomp.SPECIAL}.items():
        for arch, nr in zip((seccomp.AUDIT_ARCH_X86_64, seccomp.AUDIT_ARCH_AARCH64), numbers, strict=True):
            known = lib.seccomp_syscall_resolve_name_arch(arch, name.encode())
            if known >= 0:
                assert nr == known, (name, hex(arch), nr, known)
                checked += 1
            elif nr is not None and known == -1:
                assert nr >= 424, f"libseccomp does not know {name}, which is not a recent call"
    assert checked > 80
    required = {"setns", "unshare", "mount", "umount2", "pivot_root", "ptrace", "process_vm_readv",
                "process_vm_writev", "bpf", "keyctl"}  # fmt: skip
    assert required <= set(seccomp.deny_list())


def _in_child(fn: Any) -> tuple[int, str]:
    """Run `fn` in a forked child; its exit status and what it wrote to a pipe."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(read)
            os.write(write, str(fn()).encode())
            code = 0
        except BaseException as exc:
            os.write(write, f"{type(exc).__name__}: {exc}".encode())
        finally:
            os._exit(code)
    os.close(write)
    with os.fdopen(read, "rb") as fh:
        text = fh.read().decode()
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), text


def _refused_host(unsafe: bool) -> list[str]:
    """A host that refuses namespaces (as some containers do): the seccomp filter itself says no."""
    seccomp.install()
    return enter_jail(JailSpec(unsafe=unsafe))


def test_a_host_that_refuses_namespaces_is_one_sentence_or_the_users_choice() -> None:
    assert probe_jail() == (True, "")
    code, text = _in_child(lambda: _refused_host(unsafe=False))
    assert code == 1 and text.startswith("JailRefused: the host refused to jail candidate code (")
    assert text.endswith(
        "opt in with --unsafe-sandbox, `[sandbox] unsafe = true` in the config or DISCO_UNSAFE_SANDBOX=1"
    )
    code, text = _in_child(lambda: _refused_host(unsafe=True))
    assert code == 0 and "NOT unshare(" in text and "seccomp: " in text, text
    assert issubclass(JailRefused, RuntimeError)
