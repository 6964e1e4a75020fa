"""`disco sandbox doctor`: what each backend really achieves here, measured by a probe run.

A backend's own claims (`Sandbox.doctor`) are checked against a small program run inside it: it tries
to reach a listener that this process opens on loopback and on the host's address, to write outside
its work dir, to list host directories that no sandbox should show (/srv, /opt, /home, /root, /run,
/mnt, /var/lib: a listing equal to the host's is the host's), and reads its limits. Where the
measurement and the claim differ, the measurement wins and a warning says so.
"""

from __future__ import annotations

import json
import os
import socket
from contextlib import ExitStack
from typing import Any

from sandbox.models import BackendReport, SandboxLimits, SandboxRequest
from sandbox.registry import SandboxUnavailable, backend_names, get_sandbox

HOST_DIRS = ("/srv", "/opt", "/home", "/root", "/run", "/mnt", "/var/lib")
"""Directories of the host that hold data or secrets: a sandbox that lists them as the host does shows
the host's file system."""

PROBE = r"""
import json, os, resource, socket
out = {"uid": os.getuid()}
def reach(host, port):
    try:
        socket.create_connection((host, port), timeout=1).close()
        return True
    except OSError:
        return False
targets = json.loads(os.environ["DISCO_PROBE_TARGETS"])
out["network"] = any(reach(h, p) for h, p in targets)
wrote = False
for path in ("/etc/disco-probe", "/usr/disco-probe", "/disco-probe"):
    try:
        with open(path, "w") as fh:
            fh.write("x")
        os.remove(path)
        wrote = True
    except OSError:
        pass
out["fs_writable"] = wrote
seen = {}
for path in json.loads(os.environ["DISCO_PROBE_DIRS"]):
    try:
        seen[path] = sorted(os.listdir(path))
    except OSError:
        pass
out["dirs"] = seen
names = {"cpu": resource.RLIMIT_CPU, "address space": resource.RLIMIT_AS,
         "file size": resource.RLIMIT_FSIZE, "open files": resource.RLIMIT_NOFILE,
         "processes": resource.RLIMIT_NPROC}
out["rlimits"] = [k for k, v in names.items() if resource.getrlimit(v)[0] != resource.RLIM_INFINITY]
print(json.dumps(out))
"""


def _host_address() -> str | None:
    """This host's outward address (no packet is sent: UDP connect only picks a route)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.1", 9))
            return s.getsockname()[0]
    except OSError:
        return None


def diagnose(name: str) -> BackendReport:
    """The report for one backend; never raises (an unusable backend is `available=False`)."""
    try:
        sandbox = get_sandbox(name)
    except SandboxUnavailable as exc:
        return BackendReport(backend=name, available=False, detail=str(exc))
    try:
        report = sandbox.doctor()
        if not report.available:
            return report
        with ExitStack() as stack:
            targets = []
            for host in ("127.0.0.1", _host_address()):
                if host is None:
                    continue
                listener = stack.enter_context(socket.create_server((host, 0)))
                targets.append((host, listener.getsockname()[1]))
            request = SandboxRequest(
                code=PROBE,
                env={"DISCO_PROBE_TARGETS": json.dumps(targets), "DISCO_PROBE_DIRS": json.dumps(HOST_DIRS)},
                limits=SandboxLimits(timeout_s=60),
            )
            result = sandbox.run(request)
        if result.status != "ok":
            report.warnings.append(f"the probe run did not succeed ({result.status}: {result.reason})")
            return report
        facts = json.loads(result.stdout.strip().splitlines()[-1])
        return _reconcile(report, facts)
    except SandboxUnavailable as exc:
        return BackendReport(backend=name, available=False, detail=str(exc))
    finally:
        sandbox.close()


def _reconcile(report: BackendReport, facts: dict[str, Any]) -> BackendReport:
    """`facts`: the probe's JSON report, as parsed."""
    measured = {"network_isolated": not facts["network"], "filesystem_readonly": not facts["fs_writable"]}
    for key, value in measured.items():
        if getattr(report, key) != value:
            report.warnings.append(f"{key} claimed {getattr(report, key)} but measured {value}")
            setattr(report, key, value)
    host_seen = sorted(
        path for path, listing in facts.get("dirs", {}).items() if listing and listing == _host_listing(path)
    )
    if host_seen:
        report.warnings.append(f"the sandbox shows the host's {', '.join(host_seen)}")
    report.detail += f" (probe: uid {facts['uid']}, rlimits set: {', '.join(facts['rlimits'])})"
    return report


def _host_listing(path: str) -> list[str] | None:
    try:
        return sorted(os.listdir(path))
    except OSError:
        return None


def diagnose_all() -> list[BackendReport]:
    return [diagnose(name) for name in backend_names()]
