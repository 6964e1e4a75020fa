"""The escape suite as data: one row per attack, the status it must end with, and the host-side bait
and checks that tell whether it got out. Shared by tests/test_sandbox_escapes.py and
evals/bench_sandbox.py.

Each attack program (a file beside this one) prints `ESCAPED` when it believes it got out; the verdict
is the host's, though: listeners that must see no connection, a canary key that must not appear in the
output, files that must not appear on the host, a sentinel process that must survive, and no process of
a sandbox uid left behind.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from sandbox.models import SandboxLimits, SandboxRequest, SandboxResult

HERE = Path(__file__).parent
SANDBOX_UIDS = range(61_000, 61_000 + 500 * 64)
"""The uids the local backend hands out (LocalConfig.uid_base onwards) and the image's uid 61000."""


@dataclass(frozen=True)
class Attack:
    name: str
    expected: str
    """The status the run must end with."""
    what: str
    timeout_s: float = 10.0
    memory_mb: int = 1024


ATTACKS: list[Attack] = [
    Attack("net_loopback", "error", "connect to a service on the host's loopback"),
    Attack("net_outside", "error", "connect to the host's address, 1.1.1.1 and pypi.org"),
    Attack("env_secrets", "ok", "read API keys from the environment and other processes' /proc environ"),
    Attack("home_files", "error", "read a file from the host user's home directory"),
    Attack("write_outside", "ok", "write to the host's /tmp, the repository and /etc (host must see none)"),
    Attack("fork_bomb", "timeout", "fork until something stops it", timeout_s=3.0),
    Attack("memory_bomb", "oom", "allocate 64 MB blocks forever", memory_mb=512),
    Attack("cpu_spin", "timeout", "spin on the CPU forever", timeout_s=2.0),
    Attack("sleep_forever", "timeout", "sleep forever", timeout_s=2.0),
    Attack("output_flood", "killed", "write output forever on both streams", timeout_s=20.0),
    Attack("daemon_grandchild", "ok", "double-fork a daemon that tries to outlive the run"),
    Attack("kill_parent", "ok", "SIGKILL the caller, a host sentinel, the parent and kill(-1)"),
    Attack("ignore_sigterm", "timeout", "ignore SIGTERM/SIGINT/SIGHUP and keep running", timeout_s=2.0),
]

_LOSS = """{imports}
def trick_loss(self, policy_chosen_logps, policy_rejected_logps, reference_chosen_logps,
               reference_rejected_logps):
    {body}
    rho = (policy_chosen_logps - reference_chosen_logps) - (policy_rejected_logps - reference_rejected_logps)
    return -F.logsigmoid(self.beta * rho)
"""
LOSS_TRICKS: dict[str, tuple[str, str]] = {
    "import_os": ("import os", "os.system('id')"),
    "import_subprocess": ("import subprocess", "subprocess.run(['id'])"),
    "import_ctypes": ("import ctypes", "ctypes.CDLL(None).system(b'id')"),
    "dunder_import": ("", "__import__('os').system('id')"),
    "getattr_string": ("import torch", "getattr(torch, 'o' + 's').system('id')"),
    "torch_os": ("import torch", "torch.os.system('id')"),
    "typing_sys": ("import typing", "typing.sys.modules['os'].system('id')"),
    "subclasses_walk": ("", "[c for c in ().__class__.__base__.__subclasses__() if c.__name__ == 'Popen']"),
    "importlib": ("import importlib", "importlib.import_module('os').system('id')"),
    "from_torch_multiprocessing": ("from torch import multiprocessing", "multiprocessing.Process()"),
    "eval_string": ("", "eval(\"__import__('os')\").system('id')"),
    "exec_string": ("", "exec('import os')"),
    "compile_code": ("", "compile('import os', 'x', 'exec')"),
    "globals_builtins": ("", "globals()['__builtins__']"),
    "vars_module": ("import torch", "vars(torch)['os']"),
    "format_string_dunder": ("", "'{0.__class__}'.format(1)"),
    "torch_load": ("import torch", "torch.load('/etc/passwd')"),
    "open_file": ("", "open('/etc/passwd').read()"),
    "numpy_through_F": ("", "F.np.fromfile('/etc/passwd')"),
    "frame_walk": ("", "(x for x in ()).gi_frame.f_globals"),
}
"""Ways a loss candidate might reach os / subprocess / ctypes; every one must be refused (`policy`)."""


def loss_trick_code(name: str) -> str:
    imports, body = LOSS_TRICKS[name]
    return _LOSS.format(imports=imports, body=body)


@dataclass
class Bait:
    """What the host sets out for the attacks, and checks afterwards."""

    canary: str
    listeners: list[socket.socket]
    home_canary: Path
    outside_paths: list[Path]
    sentinel: subprocess.Popen[bytes]
    params: dict[str, object] = field(default_factory=dict)

    def request(self, attack: Attack) -> SandboxRequest:
        import json

        code = (HERE / f"{attack.name}.py").read_text(encoding="utf-8")
        limits = SandboxLimits(timeout_s=attack.timeout_s, memory_mb=attack.memory_mb)
        return SandboxRequest(code=code, files={"params.json": json.dumps(self.params)}, limits=limits)

    def problems(self, attack: Attack, result: SandboxResult) -> list[str]:
        """Everything that shows the attack got out or harmed the host (empty: contained)."""
        found = []
        if result.status != attack.expected:
            found.append(f"status {result.status} ({result.reason}), expected {attack.expected}")
        if "ESCAPED" in result.stdout:
            found.append(f"the attack reports: {result.stdout.strip()[-300:]}")
        if self.canary in result.stdout + result.stderr:
            found.append("the canary API key reached the output")
        for listener in self.listeners:
            with contextlib.suppress(BlockingIOError):
                conn, addr = listener.accept()
                conn.close()
                found.append(f"a connection reached the host listener from {addr}")
        for path in [*self.outside_paths]:
            if path.exists():
                found.append(f"{path} was written on the host")
        if self.sentinel.poll() is not None:
            found.append("the host sentinel process was killed")
        if len(result.stdout) > 100_000 or len(result.stderr) > 100_000:
            found.append("the output was not capped")
        left = sandbox_processes()
        if left:
            found.append(f"processes of a sandbox uid outlived the run: {left[:5]}")
        return found


def sandbox_processes(grace_s: float = 3.0) -> list[int]:
    """Host pids that run as a sandbox uid (waits up to `grace_s` for killed ones to vanish)."""
    deadline = time.monotonic() + grace_s
    while True:
        pids = []
        for status in Path("/proc").glob("[0-9]*/status"):
            with contextlib.suppress(OSError):
                uid_line = next(ln for ln in status.read_text().splitlines() if ln.startswith("Uid:"))
                if int(uid_line.split()[1]) in SANDBOX_UIDS:
                    pids.append(int(status.parent.name))
        if not pids or time.monotonic() > deadline:
            return pids
        time.sleep(0.1)


def _outward_address() -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("192.0.2.1", 9))
        return s.getsockname()[0]


@contextlib.contextmanager
def bait() -> Iterator[Bait]:
    """Set the bait on the host (a canary key in our environment, listeners, files) and clean up."""
    canary = "sk-canary-" + secrets.token_hex(8)
    saved = {k: os.environ.get(k) for k in ("OPENAI_API_KEY", "E2B_API_KEY")}
    os.environ.update(OPENAI_API_KEY=canary, E2B_API_KEY=canary)
    loopback = socket.create_server(("127.0.0.1", 0))
    outside = socket.create_server(("0.0.0.0", 0))
    for s in (loopback, outside):
        s.setblocking(False)
    home_canary = Path.home() / f".disco-escape-canary-{secrets.token_hex(4)}"
    home_canary.write_text(canary, encoding="utf-8")
    tag = secrets.token_hex(4)
    outside_paths = [
        Path(tempfile.gettempdir()) / f"disco-escape-{tag}",
        Path(__file__).resolve().parents[2] / f".disco-escape-{tag}",
        Path(f"/etc/disco-escape-{tag}"),
    ]
    sentinel = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(3600)"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield Bait(
            canary, [loopback, outside], home_canary, outside_paths, sentinel,
            params={
                "canary": canary, "host_pid": os.getpid(), "sentinel_pid": sentinel.pid,
                "loopback": list(loopback.getsockname()[:2]),
                "outside": [_outward_address(), outside.getsockname()[1]],
                "home": str(Path.home()), "home_canary": str(home_canary),
                "outside_paths": [str(p) for p in outside_paths],
            },
        )  # fmt: skip
    finally:
        sentinel.kill()
        sentinel.wait()
        loopback.close()
        outside.close()
        home_canary.unlink(missing_ok=True)
        for path in outside_paths:
            path.unlink(missing_ok=True)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
