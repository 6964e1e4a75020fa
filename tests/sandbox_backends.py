"""Which sandbox backends the tests run on: local always; docker when DISCO_DOCKER_HOST names an engine.

`make sandbox-deps` starts podman and exports DISCO_DOCKER_HOST; once it is set, an engine that does not
answer or a missing image is a failure, not a skip. An engine that cannot enforce the sandbox's limits
(rootless podman on cgroup v1, as a user here) is refused by the backend: no code runs in it, so the rows
that would run code there are not run, and tests/test_sandbox_docker.py asserts the refusal instead.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import docker
import docker.errors
import pytest
import requests.exceptions

from sandbox.base import Sandbox
from sandbox.docker_backend import engine_info, unenforced_limits
from sandbox.isolation import unsafe_opted_in
from sandbox.registry import get_sandbox

DOCKER_HOST = os.environ.get("DISCO_DOCKER_HOST")


def _engine_unenforced() -> list[str]:
    """The limits the engine at DISCO_DOCKER_HOST would drop ([] when it answers none: that fails later)."""
    if not DOCKER_HOST:
        return []
    try:
        client = docker.DockerClient(base_url=DOCKER_HOST)
        try:
            return unenforced_limits(engine_info(client))
        finally:
            client.close()
    except (docker.errors.DockerException, requests.exceptions.RequestException):
        return []


ENGINE_UNENFORCED = _engine_unenforced()
ENGINE_REFUSED = bool(ENGINE_UNENFORCED) and not unsafe_opted_in()
needs_docker = pytest.mark.skipif(
    not DOCKER_HOST, reason="DISCO_DOCKER_HOST is unset (run `make sandbox-deps` to start podman)"
)
needs_containing_engine = pytest.mark.skipif(
    ENGINE_REFUSED,
    reason=f"the engine cannot enforce {ENGINE_UNENFORCED}: disco refuses it and runs nothing there "
    "(test_sandbox_docker.py::test_an_engine_that_cannot_enforce_limits_is_refused)",
)
BACKENDS = ["local", pytest.param("docker", marks=[needs_docker, needs_containing_engine])]


def open_sandbox(name: str) -> Iterator[Sandbox]:
    sandbox = get_sandbox(name, base_url=DOCKER_HOST) if name == "docker" else get_sandbox(name)
    try:
        yield sandbox
    finally:
        sandbox.close()
