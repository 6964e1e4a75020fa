"""The Docker backend (docker-py): one container per run, no network, read-only root, no capabilities.

Works against Docker or against podman's Docker-compatible API (see sandbox/image/podman-service.sh).
The image (`sandbox/image/build.py` or `sandbox/Dockerfile`) holds only system libraries; the Python
install, the venv and disco's packages (`sandbox/`, `targets/`, `memory/`: not the checkout) are
mounted read-only at their host paths, and a private host dir is the work dir (a bind, not a tmpfs,
because files must go in before and come out after the run). Nothing else of the host is mounted (but a
request's shared dirs, e.g. the ADAS proxy's socket dir). The container runs as an unprivileged uid
with no capabilities, no-new-privileges, the engine's seccomp profile, no network, a pids and a memory
limit, a read-only root and a size-capped tmpfs /tmp.
The same `sandbox.worker` as the local backend runs the job inside, reading it from the work dir.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import docker
import docker.errors
import requests.exceptions
from docker.types import DeviceRequest, Ulimit
from pydantic import BaseModel

from sandbox.base import (
    OutputCapture,
    RawOutcome,
    collect_files,
    finish,
    job_payload,
    policy_refusal,
    signal_code,
    write_files,
)
from sandbox.isolation import REPO_ROOT, UNSAFE_HINT, code_paths, unsafe_opted_in
from sandbox.models import RESULT_FILE, BackendReport, SandboxRequest, SandboxResult
from sandbox.pool import SAFE_ENV, sandbox_root
from sandbox.registry import SandboxUnavailable

SANDBOX_UID = 61000
"""The image's unprivileged user (sandbox/image/build.py)."""
JOB_FILE = ".disco-job.json"
_BOOT = "import sys; sys.path.insert(0, {root!r}); from sandbox.worker import main; main()"
ISOLATION = [
    "network: none (network_mode=none)",
    "file system: read-only root, tmpfs /tmp, private work dir",
    "processes: own PID namespace, pids limit",
    f"uid: {SANDBOX_UID}, all capabilities dropped, no-new-privileges",
    "limits: memory, CPU, pids, open files, CPU seconds, file size",
    "environment: scrubbed",
]


def _kill(container: Any, within_s: float = 90.0) -> None:
    """SIGKILL the container and wait until it has stopped. An engine may be slow to confirm: rootless
    podman under a fork bomb answered 500 ("timed out waiting for file …/exits"); ask again until it
    has stopped, for at most `within_s`."""
    end = time.monotonic() + within_s
    while True:
        with contextlib.suppress(docker.errors.APIError):  # also: it has stopped already (409)
            container.kill()
        try:
            container.wait(timeout=30)
            return
        except (docker.errors.APIError, requests.exceptions.RequestException):
            if time.monotonic() > end:
                raise


def hand_to_sandbox_user(workdir: Path) -> None:
    """Let the container's user (uid SANDBOX_UID) read and write the job folder. Root hands it over;
    anyone else cannot chown (and under rootless podman that uid is a subordinate one), so the folder is
    opened to all instead: it sits in the caller's private sandbox root under a random name."""
    paths = [workdir, *workdir.rglob("*")]
    if os.geteuid() == 0:
        for path in paths:
            os.lchown(path, SANDBOX_UID, SANDBOX_UID)
        return
    for path in paths:
        if not path.is_symlink():
            path.chmod(0o777 if path.is_dir() else 0o666)


def unenforced_limits(info: dict[str, Any]) -> list[str]:
    """The limits an engine would silently drop, from its `/info` answer. A rootless engine on cgroup v1
    has no cgroup of its own to write: podman then ignores the memory, pids and CPU limits (seen here:
    a fork bomb ran on, took both cores and the engine's kill needed 14.6 s for a 3 s limit). Docker
    also says per limit whether the kernel supports it (MemoryLimit, PidsLimit, CpuCfsQuota)."""
    options = " ".join(str(o) for o in info.get("SecurityOptions") or [])
    host = info.get("host") or {}  # podman's own /libpod/info (engine_info): its compat answer omits rootless
    rootless = "name=rootless" in options or bool((host.get("security") or {}).get("rootless"))
    cgroup_v1 = str(info.get("CgroupVersion", "")) == "1" or host.get("cgroupVersion") == "v1"
    if rootless and cgroup_v1:
        return ["memory", "pids", "cpu share"]
    flags = {"MemoryLimit": "memory", "PidsLimit": "pids", "CpuCfsQuota": "cpu share"}
    return [name for key, name in flags.items() if info.get(key) is False]


def engine_info(client: Any) -> dict[str, Any]:
    """The engine's `/info`, with podman's libpod `host` section added: podman 4's Docker-compatible answer
    does not say that it runs rootless (found here: rootless podman on cgroup v1 reported every limit)."""
    info = dict(client.info())
    components = client.version().get("Components") or []
    podman = next((c for c in components if c.get("Name") == "Podman Engine"), None)
    if podman is not None:
        version = (podman.get("Details") or {}).get("MinAPIVersion") or "4.0.0"
        answer = client.api._get(client.api.base_url + f"/v{version}/libpod/info")
        if answer.ok:
            info["host"] = answer.json().get("host") or {}
    return info


class DockerConfig(BaseModel):
    """Settings of the Docker backend."""

    base_url: str | None = None
    """Engine socket; default $DISCO_DOCKER_HOST, then $DOCKER_HOST, then docker-py's default."""
    image: str = "disco-sandbox:latest"
    cpus: float = 1.0
    """CPU share of each container (nano_cpus)."""
    python: str | None = None
    """The interpreter inside a self-contained image (sandbox/Dockerfile: "python"). None: the image
    holds only libraries (sandbox/image/build.py) and this host's interpreter, venv and repository are
    mounted read-only at their own paths."""


class DockerSandbox:
    """One container per request; thread-safe (docker-py's client is)."""

    name = "docker"

    def __init__(self, config: DockerConfig | None = None, **settings: Any) -> None:
        self.config = config or DockerConfig(**settings)
        url = self.config.base_url or os.environ.get("DISCO_DOCKER_HOST") or os.environ.get("DOCKER_HOST")
        self.url = url or "the default Docker socket"
        try:
            self.client = docker.DockerClient(base_url=url) if url else docker.from_env()
            self.client.ping()
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            where = url or "the default Docker socket"
            raise SandboxUnavailable(
                f"no Docker engine answers at {where} ({type(exc).__name__}); start one, e.g. with "
                "sandbox/image/podman-service.sh, and set DISCO_DOCKER_HOST"
            ) from None
        try:
            self.client.images.get(self.config.image)
        except docker.errors.ImageNotFound:
            raise SandboxUnavailable(
                f"the image {self.config.image} is missing; build it with `python sandbox/image/build.py` "
                "(podman) or `docker build -f sandbox/Dockerfile .`"
            ) from None
        self.unenforced = unenforced_limits(engine_info(self.client))
        if self.unenforced and not unsafe_opted_in():
            raise SandboxUnavailable(
                f"the Docker engine at {self.url} cannot enforce the {', '.join(self.unenforced)} limits "
                "(a rootless engine on cgroup v1 ignores them): a fork or memory bomb would take the "
                "machine; use the local backend, a rootful engine or a cgroup v2 host, or accept it with "
                + UNSAFE_HINT
            )

    def run(self, request: SandboxRequest, cancel: threading.Event | None = None) -> SandboxResult:
        refused = policy_refusal(request, self.name)
        if refused is not None:
            return refused
        # In this user's private sandbox root (0711: others may pass, not list), so that a non-root
        # caller's world-writable job folder below is out of other users' sight.
        workdir = Path(tempfile.mkdtemp(prefix="docker-", dir=sandbox_root()))
        try:
            write_files(workdir, request)
            (workdir / JOB_FILE).write_text(json.dumps(job_payload(request)), encoding="utf-8")
            hand_to_sandbox_user(workdir)
            raw = self._run_container(workdir, request, cancel)
            raw.files = collect_files(workdir, request.return_files, request.limits.max_output_bytes * 16)
            result_file = workdir / RESULT_FILE
            if request.kind == "call" and result_file.is_file() and not result_file.is_symlink():
                try:
                    raw.value = json.loads(result_file.read_text(encoding="utf-8"))
                except (ValueError, UnicodeDecodeError):
                    raw.value = None
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        return finish(raw, request.limits, self.name, list(ISOLATION))

    def _run_container(
        self, workdir: Path, request: SandboxRequest, cancel: threading.Event | None
    ) -> RawOutcome:
        limits = request.limits
        spec = {"preload": list(request.preload), "workdir": "/work", "uid": None, "job": f"/work/{JOB_FILE}"}
        if self.config.python is None:
            # The allow-list's code part only: never the checkout (its .disco holds runs, memory, caches).
            volumes = {str(p.resolve()): {"bind": str(p), "mode": "ro"} for p in code_paths()}
            argv = [sys.executable, "-I", "-c", _BOOT.format(root=str(REPO_ROOT)), json.dumps(spec)]
        else:
            volumes = {}
            argv = [self.config.python, "-I", "-m", "sandbox.worker", json.dumps(spec)]
        volumes[str(workdir)] = {"bind": "/work", "mode": "rw"}
        for path in request.shared_dirs:  # e.g. a proxy's Unix socket in the caller's process
            volumes[path] = {"bind": path, "mode": "rw"}
        env = {**SAFE_ENV, "HOME": "/work", "TMPDIR": "/tmp", **request.env}
        gpus = [DeviceRequest(count=limits.gpus, capabilities=[["gpu"]])] if limits.gpus else None
        begin = time.monotonic()
        container = self.client.containers.run(
            self.config.image,
            argv,
            detach=True,
            user=f"{SANDBOX_UID}:{SANDBOX_UID}",
            working_dir="/work",
            environment=env,
            volumes=volumes,
            # podman's Docker API ignores network_disabled (the escape suite reached the internet
            # through it); network_mode="none" is what both engines honour.
            network_mode="none",
            network_disabled=True,
            read_only=True,
            tmpfs={"/tmp": "rw,size=64m,mode=1777"},
            mem_limit=f"{limits.memory_mb}m",
            memswap_limit=f"{limits.memory_mb}m",
            nano_cpus=int(self.config.cpus * 1e9),
            pids_limit=limits.max_processes,
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            ulimits=[
                Ulimit(name="nofile", soft=limits.max_open_files, hard=limits.max_open_files),
                Ulimit(name="nproc", soft=4096, hard=4096),
            ],
            device_requests=gpus,
            init=True,  # the code is not PID 1, which the kernel would shield from its own signals
        )
        out, err = OutputCapture(limits.max_output_bytes), OutputCapture(limits.max_output_bytes)
        total = [0]
        readers = [
            threading.Thread(target=_drain, args=(container, True, out, total), daemon=True),
            threading.Thread(target=_drain, args=(container, False, err, total), daemon=True),
        ]
        for t in readers:
            t.start()
        killed, deadline, peak = None, begin + limits.timeout_s, None
        cgroup = _cgroup_peak_file(container.id)
        try:
            while True:
                peak = _read_peak(cgroup, peak)
                container.reload()
                if container.status not in ("created", "running"):
                    break
                if cancel is not None and cancel.is_set():
                    killed = "cancelled"
                elif total[0] > limits.output_kill_bytes:
                    killed = "output"
                elif time.monotonic() > deadline:
                    killed = "timeout"
                if killed:
                    _kill(container)
                    break
                time.sleep(0.05)
            duration = time.monotonic() - begin
            for t in readers:
                t.join(timeout=2.0)
            container.reload()
            state = container.attrs["State"]
            code = signal_code(int(state.get("ExitCode", -1)))
            return RawOutcome(
                exit_code=code,
                stdout=out,
                stderr=err,
                duration_s=duration,
                killed=killed,
                oom_reported=bool(state.get("OOMKilled")),
                peak_memory_mb=peak,
            )
        finally:
            with contextlib.suppress(docker.errors.APIError):
                container.remove(force=True)

    def doctor(self) -> BackendReport:
        enforced = ["wall clock", "memory", "cpu share", "pids", "open files", "cpu seconds", "file size",
                    "output"]  # fmt: skip
        unsafe = f"; NOT enforced by this engine: {', '.join(self.unenforced)}" if self.unenforced else ""
        return BackendReport(
            backend=self.name,
            available=True,
            detail=f"image {self.config.image} at {self.url}: " + "; ".join(ISOLATION) + unsafe,
            network_isolated=True,
            filesystem_readonly=True,
            pid_namespace=True,
            separate_uid=True,
            limits_enforced=[name for name in enforced if name not in self.unenforced],
        )

    def close(self) -> None:
        self.client.close()


def _drain(container: Any, stdout: bool, capture: OutputCapture, total: list[int]) -> None:
    try:
        for chunk in container.logs(stdout=stdout, stderr=not stdout, stream=True, follow=True):
            capture.feed(chunk)
            total[0] += len(chunk)
    except (docker.errors.APIError, requests.exceptions.RequestException):
        return


def _cgroup_peak_file(container_id: str | None) -> Path | None:
    """The container's peak-memory file when the engine runs on this host (cgroup v1 or v2), else None."""
    if not container_id:
        return None
    for pattern in (
        "memory/libpod_parent/libpod-{id}/memory.max_usage_in_bytes",
        "memory/docker/{id}/memory.max_usage_in_bytes",
        "machine.slice/libpod-{id}.scope/memory.peak",
        "system.slice/docker-{id}.scope/memory.peak",
    ):
        path = Path("/sys/fs/cgroup") / pattern.format(id=container_id)
        if path.is_file():
            return path
    return None


def _read_peak(path: Path | None, peak: float | None) -> float | None:
    if path is None:
        return peak
    try:
        value = int(path.read_text()) / 2**20
    except (OSError, ValueError):
        return peak
    return value if peak is None else max(peak, value)
