"""The attack table for disco's process boxes (issue 15, items 4 and 8): one function per attack, run
inside the in-place jail (`sandbox.jail.enter_jail` in a forked child) and inside the bubblewrap sandbox.

Each attack returns {"escaped": bool, "how": str}: what it managed, in its own words. The verdict is the
host's, though (tests/test_attacks_escape.py): the bait's secret must appear in no output, no listener
may see a connection, no file may appear outside scratch and nothing may outlive the run.

Run as a script, this file is the jail's harness: `python jail_attacks.py PARAMS_JSON` forks one child
per row from a plain Python process (the "zygote"), jails it, runs the attack, and prints one JSON line
with every row's outcome and the host's checks. The test runs it as root and as uid 65534. Only the
standard library is imported at the top: the bubblewrap sandbox imports this file from its work dir.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Params = dict[str, Any]
Outcome = dict[str, Any]
CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWNET, CLONE_NEWPID = 0x20000, 0x10000000, 0x40000000, 0x20000000
PTRACE_TRACEME, PTRACE_ATTACH = 0, 16
SYS = {  # x86_64, aarch64: called raw so that no libc wrapper hides what the kernel says
    "clone": (56, 220), "clone3": (435, 435), "pivot_root": (155, 41), "fsopen": (430, 430),
    "process_vm_readv": (310, 270), "setns": (308, 268), "bpf": (321, 280), "keyctl": (250, 219),
}  # fmt: skip


def _nr(name: str) -> int:
    return SYS[name][0 if os.uname().machine == "x86_64" else 1]


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _read(path: str, limit: int = 4096) -> str | None:
    try:
        with open(path, "rb") as fh:
            return fh.read(limit).decode(errors="replace")
    except OSError:
        return None


def _listdir(path: str) -> list[str] | None:
    try:
        return sorted(os.listdir(path))
    except OSError:
        return None


def _result(got: list[str]) -> Outcome:
    return {"escaped": bool(got), "how": "; ".join(got)[:2000] or "nothing"}


# ------------------------------------------------------------------------------------------- secrets
def home_bait(p: Params) -> Outcome:
    """Read bait files in home directories (root's, and a world-readable one) and list their dirs."""
    got = []
    for path in p["home_baits"]:
        if (text := _read(path)) is not None:
            got.append(f"read {path}: {text[:80]}")
        listing = _listdir(os.path.dirname(path)) or []
        if os.path.basename(path) in listing:
            got.append(f"saw {path} in a listing")
    return _result(got)


def srv_config(p: Params) -> Outcome:
    """Read a config.toml with an api_key under /srv."""
    got = []
    if (text := _read(p["srv_config"])) is not None:
        got.append(f"read {p['srv_config']}: {text[:80]}")
    if (listing := _listdir("/srv")) is not None and os.path.basename(p["srv_dir"]) in listing:
        got.append("saw the bait dir in /srv")
    return _result(got)


def environ(p: Params) -> Outcome:
    """Look for the API key in the environment: its own, and every /proc/<pid>/environ it can read (the
    parent's pid included)."""
    canary = p["canary"]
    got = [f"env {k}" for k, v in os.environ.items() if canary in v or "API_KEY" in k]
    pids = {str(p["parent_pid"]), "1", "self", str(os.getppid())}
    pids |= set(filter(str.isdigit, os.listdir("/proc")))
    for pid in sorted(pids):
        text = _read(f"/proc/{pid}/environ", 1 << 20)
        if text is not None and canary in text:
            got.append(f"/proc/{pid}/environ holds the key")
    return _result(got)


def checkout_data(p: Params) -> Outcome:
    """Read the checkout's data dir (.disco: runs, memory, caches), the shared benchmark data beside it,
    and any of the checkout that is not disco's sandboxed packages."""
    got = []
    if (text := _read(p["disco_bait"])) is not None:
        got.append(f"read {p['disco_bait']}: {text[:80]}")
    for path in p["checkout_files"]:
        if _read(path, 64) is not None:
            got.append(f"read {path}")
    for path in (p["repo_root"] + "/.disco", p["shared_dir"]):
        if (listing := _listdir(path)) is not None:
            got.append(f"listed {path}: {listing[:5]}")
    return _result(got)


def list_root(p: Params) -> Outcome:
    """List / and report anything beyond the allow-list (/srv, /opt, /home, /run, /var, /mnt ...)."""
    listing = _listdir("/") or []
    extra = sorted(set(listing) - set(p["allowed_top"]))
    return _result([f"/ shows {extra}"] if extra else [])


# -------------------------------------------------------------------------------------------- escape
def _connect_all(p: Params) -> list[str]:
    got = []
    for host, port in (p["loopback"], p["outward"]):
        try:
            socket.create_connection((host, port), timeout=1).close()
            got.append(f"connected to {host}:{port}")
        except OSError:
            pass
    with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX) as s:
        s.settimeout(1)
        s.connect("\0" + p["abstract"])
        got.append("connected to the host's abstract unix socket")
    return got


def setns_proc(p: Params) -> Outcome:
    """setns() into the parent's namespaces through /proc/<parent pid>/ns/*, then reach the host."""
    libc, got = _libc(), []
    for pid in (p["parent_pid"], 1):
        for ns in ("net", "mnt", "pid", "user", "ipc", "uts"):
            try:
                fd = os.open(f"/proc/{pid}/ns/{ns}", os.O_RDONLY)
            except OSError:
                continue
            if libc.syscall(_nr("setns"), fd, 0) == 0:
                got.append(f"setns into /proc/{pid}/ns/{ns}")
            os.close(fd)
    return _result(got + _connect_all(p))


def setns_fd(p: Params) -> Outcome:
    """setns() through namespace fds of the host that the zygote left open, then reach the host."""
    libc, got = _libc(), []
    for ns, fd in p["ns_fds"].items():
        if libc.syscall(_nr("setns"), fd, 0) == 0:
            got.append(f"setns({ns} fd {fd})")
    return _result(got + _connect_all(p))


def unshare(p: Params) -> Outcome:
    """New namespaces, a user namespace above all (it needs no privilege): unshare(2), clone(2) with
    namespace flags, clone3(2)."""
    libc, got = _libc(), []
    for name, flags in (("user", CLONE_NEWUSER), ("mount", CLONE_NEWNS), ("net", CLONE_NEWNET),
                        ("user+mount", CLONE_NEWUSER | CLONE_NEWNS)):  # fmt: skip
        if libc.unshare(flags) == 0:
            got.append(f"unshare({name})")
    for name, flags in (("user", CLONE_NEWUSER), ("pid", CLONE_NEWPID)):
        pid = libc.syscall(_nr("clone"), flags | signal.SIGCHLD, 0, 0, 0, 0)
        if pid == 0:
            os._exit(0)
        if pid > 0:
            os.waitpid(pid, 0)
            got.append(f"clone(CLONE_NEW{name.upper()})")
    args = (ctypes.c_uint64 * 11)(CLONE_NEWUSER, 0, 0, 0, signal.SIGCHLD, 0, 0, 0, 0, 0, 0)
    pid = libc.syscall(_nr("clone3"), ctypes.byref(args), ctypes.sizeof(args))
    if pid == 0:
        os._exit(0)
    if pid > 0:
        os.waitpid(pid, 0)
        got.append("clone3(CLONE_NEWUSER)")
    return _result(got)


def mount(p: Params) -> Outcome:
    """mount(2) a tmpfs or the host's root, umount /proc, the new mount API, pivot_root and chroot."""
    libc, got = _libc(), []
    libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
    target = "/tmp/disco-mnt"
    with contextlib.suppress(OSError):
        os.makedirs(target, exist_ok=True)
    if libc.mount(b"tmpfs", target.encode(), b"tmpfs", 0, None) == 0:
        got.append("mounted a tmpfs")
    if libc.mount(b"/", target.encode(), None, 4096 | 16384, None) == 0:  # MS_BIND | MS_REC
        got.append("bound / again")
    if libc.umount2(b"/proc", 2) == 0:
        got.append("unmounted /proc")
    if libc.syscall(_nr("fsopen"), b"tmpfs", 0) >= 0:
        got.append("fsopen(tmpfs)")
    if libc.syscall(_nr("pivot_root"), b"/tmp", b"/tmp") == 0:
        got.append("pivot_root")
    try:
        os.chroot("/tmp")
        got.append("chroot")
    except OSError:
        pass
    return _result(got)


def ptrace(p: Params) -> Outcome:
    """Trace or read the memory of PID 1 and of the parent: ptrace, process_vm_readv, /proc/<pid>/mem."""
    libc, got = _libc(), []
    for pid in (1, p["parent_pid"]):
        if libc.ptrace(PTRACE_ATTACH, pid, 0, 0) == 0:
            got.append(f"ptrace attached to {pid}")
        buf = ctypes.create_string_buffer(64)
        local = (ctypes.c_void_p * 2)(ctypes.addressof(buf), 64)
        remote = (ctypes.c_void_p * 2)(0x400000, 64)
        if libc.syscall(_nr("process_vm_readv"), pid, local, 1, remote, 1, 0) > 0:
            got.append(f"process_vm_readv of {pid}")
        try:
            with open(f"/proc/{pid}/mem", "rb") as fh:
                fh.seek(0x400000)
                fh.read(16)
            got.append(f"read /proc/{pid}/mem")
        except OSError:
            pass
    if libc.ptrace(PTRACE_TRACEME, 0, 0, 0) == 0:
        got.append("PTRACE_TRACEME")
    for name in ("bpf", "keyctl"):
        if libc.syscall(_nr(name), 0, 0, 0) >= 0:
            got.append(f"{name} answered")
    return _result(got)


def network(p: Params) -> Outcome:
    """Reach the host: TCP to its loopback and outward address, its abstract unix socket, and AF_VSOCK
    (the hypervisor; not namespaced: the socket must not even be created)."""
    got = _connect_all(p)
    try:
        socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM).close()
        got.append("created an AF_VSOCK socket")
    except OSError:
        pass
    return _result(got)


def write_outside(p: Params) -> Outcome:
    """Write to the host's /tmp, the checkout and /etc (the host checks what landed where)."""
    wrote = []
    for path in p["outside_paths"]:
        with contextlib.suppress(OSError), open(path, "w") as fh:
            fh.write("escaped")
            wrote.append(path)
    # Writing into the sandbox's own private /tmp is allowed; the host's view is what counts.
    return {"escaped": False, "how": f"wrote (in its own view) {wrote}"}


def setuid_root(p: Params) -> Outcome:
    """Become root again: setuid/setresuid/setgid(0), and check what the process holds: capabilities,
    no_new_privs, seccomp."""
    got = []
    tries: list[tuple[str, Callable[[], None]]] = [
        ("setuid(0)", lambda: os.setuid(0)),
        ("setresuid(0,0,0)", lambda: os.setresuid(0, 0, 0)),
        ("setgid(0)", lambda: os.setgid(0)),
        ("setgroups([0])", lambda: os.setgroups([0])),
    ]
    for name, call in tries:
        try:
            call()
            if name != "setgroups([0])" or os.getuid() == 0:
                got.append(name)
        except OSError:
            pass
    lines = (_read("/proc/self/status", 1 << 16) or "").splitlines()
    status = dict(line.split(":", 1) for line in lines if ":" in line)
    for key in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        if int(status.get(key, "0").strip() or "0", 16):
            got.append(f"{key} {status[key].strip()}")
    if status.get("NoNewPrivs", "").strip() != "1":
        got.append("no_new_privs unset")
    if status.get("Seccomp", "").strip() != "2":
        got.append("no seccomp filter")
    if os.getuid() == 0 or os.geteuid() == 0:
        got.append("uid 0")
    return _result(got)


def kill_host(p: Params) -> Outcome:
    """SIGKILL the parent, a host sentinel and then every process it may signal (kill(-1))."""
    for pid in (p["parent_pid"], p["sentinel_pid"]):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(OSError):
        os.kill(-1, signal.SIGKILL)
    time.sleep(0.5)
    return {"escaped": False, "how": "survived kill(-1)"}


# ----------------------------------------------------------------------------------------- resources
def fork_bomb(p: Params) -> Outcome:
    """Fork until refused; every child sleeps. Escaped if more processes than the limit ran."""
    count = 0
    try:
        while count < 4 * p["max_processes"]:
            pid = os.fork()
            if pid == 0:
                time.sleep(60)
                os._exit(0)
            count += 1
    except OSError as exc:
        if exc.errno not in (errno.EAGAIN, errno.ENOMEM):
            raise
    return {"escaped": count >= p["max_processes"], "how": f"forked {count} processes"}


def memory(p: Params) -> Outcome:
    """Allocate (and touch) 32 MB blocks until refused; escaped if it held more than the limit."""
    held, total = [], 0
    try:
        while total < 4 * p["memory_limit_mb"]:
            held.append(bytearray(32 << 20))
            total += 32
    except MemoryError:
        pass
    return {"escaped": total > p["memory_limit_mb"], "how": f"held {total} MB"}


def disk_file(p: Params) -> Outcome:
    """Write one file past the file-size limit into its own scratch dir."""
    path, written = os.path.join(p["scratch"], "big.bin"), 0
    try:
        with open(path, "wb") as fh:
            for _ in range(4 * p["max_file_mb"]):
                fh.write(b"x" * (1 << 20))
                written += 1
    except OSError:
        pass
    size = os.path.getsize(path) >> 20
    return {"escaped": size > p["max_file_mb"], "how": f"wrote {written} MB, the file has {size} MB"}


def disk_tmp(p: Params) -> Outcome:
    """Fill /tmp (a RAM-backed tmpfs) with 1 MB files; escaped if it took more than its size."""
    written = 0
    try:
        while written < 2 * p["tmp_mb"] + 8:
            with open(f"/tmp/fill-{written}", "wb") as fh:
                fh.write(b"x" * (1 << 20))
            written += 1
    except OSError:
        pass
    return {"escaped": written > p["tmp_mb"], "how": f"wrote {written} MB to /tmp"}


def cpu(p: Params) -> Outcome:
    """Spin on the CPU; escaped if it is still running after 15 CPU seconds."""
    while time.process_time() < 15:
        pass
    return {"escaped": True, "how": "spun for 15 CPU seconds"}


def wall(p: Params) -> Outcome:
    """Sleep forever, ignoring SIGTERM: only the supervisor's kill ends it."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    time.sleep(3600)
    return {"escaped": True, "how": "slept an hour"}


def daemon(p: Params) -> Outcome:
    """Double-fork a daemon in a new session that tries to outlive the run (the host checks)."""
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            time.sleep(60)
        os._exit(0)
    time.sleep(0.2)
    return {"escaped": False, "how": "started a daemon"}


@dataclass(frozen=True)
class Attack:
    name: str
    cls: str
    fn: Callable[[Params], Outcome]
    jail: dict[str, Any] = field(default_factory=dict)
    """JailSpec fields for this row."""
    ends: str = "returns"
    """returns: the attack runs to its end and says what it got; killed: a limit or the supervisor ends it;
    any: either (kill(-1) may or may not reach the attacker itself first)."""
    timeout_s: float = 10.0
    bwrap: bool = True
    """Also run in the bubblewrap sandbox (an fd cannot be handed into it)."""


ATTACKS = [
    Attack("home_bait", "secrets", home_bait),
    Attack("srv_config", "secrets", srv_config),
    Attack("environ", "secrets", environ),
    Attack("checkout_data", "secrets", checkout_data),
    Attack("list_root", "secrets", list_root),
    Attack("setns_proc", "escape", setns_proc),
    Attack("setns_fd", "escape", setns_fd, bwrap=False),
    Attack("unshare", "escape", unshare),
    Attack("mount", "escape", mount),
    Attack("ptrace", "escape", ptrace),
    Attack("network", "escape", network),
    Attack("write_outside", "escape", write_outside),
    Attack("setuid_root", "escape", setuid_root),
    Attack("kill_host", "escape", kill_host, ends="any"),
    Attack("fork_bomb", "resources", fork_bomb, {"max_processes": 16}),
    Attack("memory", "resources", memory),
    Attack("disk_file", "resources", disk_file, {"max_file_mb": 2}),
    Attack("disk_tmp", "resources", disk_tmp, {"tmp_mb": 16}),
    Attack("cpu", "resources", cpu, {"cpu_s": 1}, ends="killed", timeout_s=30.0),
    Attack("wall", "resources", wall, ends="killed", timeout_s=1.5),
    Attack("daemon", "resources", daemon),
]
BY_NAME = {a.name: a for a in ATTACKS}
RESULT = "result.json"


def run_attack(name: str, params: Params) -> Outcome:
    return BY_NAME[name].fn(params)


# ------------------------------------------------------------------------------ the jail's harness
def _vm_size_mb() -> int:
    for line in (_read("/proc/self/status", 1 << 16) or "").splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) >> 10
    return 0


def _leftovers(keep: int, grace_s: float = 1.0) -> list[int]:
    """Live children of this process but `keep`: jail processes that outlived their namespace would be
    reparented here (the harness is a child subreaper); killed ones are reaped for `grace_s`."""
    deadline = time.monotonic() + grace_s
    while True:
        text = _read(f"/proc/self/task/{os.getpid()}/children") or ""
        alive = []
        for pid in (int(c) for c in text.split() if int(c) != keep):
            with contextlib.suppress(ChildProcessError):
                if os.waitpid(pid, os.WNOHANG)[0] == 0:
                    alive.append(pid)
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.05)


def _in_jail(attack: Attack, params: Params, spec_fields: dict[str, Any], scratch: str) -> None:
    from sandbox.jail import JailRefused, JailSpec, enter_jail  # imported by main() before the fork

    code = 1
    try:
        log = os.open(os.path.join(scratch, "log.txt"), os.O_WRONLY | os.O_CREAT, 0o600)
        os.dup2(log, 1)
        os.dup2(log, 2)
        said = enter_jail(JailSpec(writable=[scratch], **spec_fields))
        entered = time.perf_counter()
        outcome = attack.fn({**params, "scratch": scratch})
        outcome.update(said=said, entered_at=entered)
        with open(os.path.join(scratch, RESULT), "w", encoding="utf-8") as fh:
            json.dump(outcome, fh)
        code = 0
    except JailRefused as exc:
        os.write(2, f"JAIL REFUSED: {exc}\n".encode())
        code = 97
    except BaseException as exc:  # the attack's own failure: reported through the log and status
        os.write(2, f"{type(exc).__name__}: {exc}\n".encode())
    finally:
        os._exit(code)


def _listeners() -> tuple[list[socket.socket], Params]:
    loopback = socket.create_server(("127.0.0.1", 0))
    outward = socket.create_server(("0.0.0.0", 0))
    abstract = socket.socket(socket.AF_UNIX)
    name = f"disco-bait-{os.getpid()}-{time.monotonic_ns()}"
    abstract.bind("\0" + name)
    abstract.listen()
    for s in (loopback, outward, abstract):
        s.setblocking(False)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("192.0.2.1", 9))  # no packet: picks the outward address
        host = s.getsockname()[0]
    return [loopback, outward, abstract], {
        "loopback": ["127.0.0.1", loopback.getsockname()[1]],
        "outward": [host, outward.getsockname()[1]],
        "abstract": name,
    }


def accepted(listeners: list[socket.socket]) -> list[str]:
    """Connections the listeners saw (each one is an escape)."""
    got = []
    for listener in listeners:
        with contextlib.suppress(BlockingIOError):
            conn, addr = listener.accept()
            conn.close()
            got.append(f"a connection reached the host listener {listener.getsockname()!r} from {addr!r}")
    return got


def main() -> None:
    """Run every row in a jailed fork of this process; print {"rows": {...}} as one JSON line."""
    setup = json.loads(sys.argv[1])
    sys.path.insert(0, setup["repo_root"])
    import sandbox.jail  # noqa: F401 - warm, like the zygote: a child pays the fork, not the imports

    _libc().prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER: leftovers of a jail would land here
    listeners, net = _listeners()
    sentinel = os.fork()
    if sentinel == 0:
        time.sleep(3600)
        os._exit(0)
    rows: dict[str, Any] = {}
    for attack in ATTACKS:
        scratch = os.path.join(setup["workroot"], attack.name)
        os.mkdir(scratch, 0o700)
        ns_fds = {ns: os.open(f"/proc/self/ns/{ns}", os.O_RDONLY) for ns in ("net", "mnt", "user")}
        params = {**setup["params"], **net, "parent_pid": os.getpid(), "sentinel_pid": sentinel,
                  "ns_fds": ns_fds, "max_processes": 16, "max_file_mb": 2, "tmp_mb": 16}  # fmt: skip
        spec = dict(attack.jail)
        if attack.name == "memory":
            spec["memory_mb"] = params["memory_limit_mb"] = _vm_size_mb() + 256
        started = time.perf_counter()
        pid = os.fork()
        if pid == 0:
            _in_jail(attack, params, spec, scratch)
        for fd in ns_fds.values():
            os.close(fd)
        deadline, status, timed_out = started + attack.timeout_s, None, False
        while status is None:
            done, st = os.waitpid(pid, os.WNOHANG)
            if done:
                status = st
            elif time.perf_counter() > deadline:
                os.kill(pid, signal.SIGKILL)
                status, timed_out = os.waitpid(pid, 0)[1], True
            else:
                time.sleep(0.01)
        seconds = time.perf_counter() - started
        leftovers = _leftovers(sentinel)
        for child in leftovers:
            with contextlib.suppress(OSError):
                os.kill(child, signal.SIGKILL)
                os.waitpid(child, 0)
        outcome = json.loads(_read(os.path.join(scratch, RESULT), 1 << 20) or "null")
        rows[attack.name] = {
            "exit_code": os.waitstatus_to_exitcode(status),
            "timed_out": timed_out,
            "seconds": round(seconds, 4),
            "outcome": outcome,
            "log": (_read(os.path.join(scratch, "log.txt"), 1 << 20) or "")[-3000:],
            "jail_ms": round((outcome["entered_at"] - started) * 1000, 2) if outcome else None,
            "host": accepted(listeners)
            + [f"{path} appeared on the host" for path in params["outside_paths"] if os.path.exists(path)]
            + ([f"processes outlived the jail: {leftovers}"] if leftovers else [])
            + ([] if _alive(sentinel) else ["the host sentinel was killed"]),
        }
    os.kill(sentinel, signal.SIGKILL)
    os.waitpid(sentinel, 0)
    print(json.dumps({"uid": os.getuid(), "rows": rows}))


def _alive(pid: int) -> bool:
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return False
    return done == 0


if __name__ == "__main__":
    main()
