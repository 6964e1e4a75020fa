"""Which sandbox backends the tests run on: local always; docker when DISCO_DOCKER_HOST names an engine.

`make sandbox-deps` starts podman and exports DISCO_DOCKER_HOST; once it is set, an engine that does not
answer or a missing image is a failure, not a skip.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from sandbox.base import Sandbox
from sandbox.registry import get_sandbox

DOCKER_HOST = os.environ.get("DISCO_DOCKER_HOST")
BACKENDS = [
    "local",
    pytest.param(
        "docker",
        marks=pytest.mark.skipif(
            not DOCKER_HOST, reason="DISCO_DOCKER_HOST is unset (run `make sandbox-deps` to start podman)"
        ),
    ),
]


def open_sandbox(name: str) -> Iterator[Sandbox]:
    sandbox = get_sandbox(name, base_url=DOCKER_HOST) if name == "docker" else get_sandbox(name)
    try:
        yield sandbox
    finally:
        sandbox.close()
