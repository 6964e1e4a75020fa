"""Backends by short name, imported only when chosen (docker and e2b are optional extras)."""

from __future__ import annotations

import importlib
from typing import Any

from sandbox.base import Sandbox

BACKENDS: dict[str, tuple[str, str | None]] = {
    "local": ("sandbox.local:LocalSandbox", None),
    "docker": ("sandbox.docker_backend:DockerSandbox", "docker"),
    "e2b": ("sandbox.e2b_backend:E2BSandbox", "e2b"),
}
"""name -> (import path, the pyproject extra that brings its dependency)."""
DEFAULT_BACKEND = "local"


class SandboxUnavailable(RuntimeError):
    """A backend cannot be used here; the message is one sentence saying what to do."""


def backend_names() -> list[str]:
    return list(BACKENDS)


def get_sandbox(name: str = DEFAULT_BACKEND, **config: Any) -> Sandbox:
    """A new sandbox of backend `name`; raises SandboxUnavailable for an unknown name or a missing extra."""
    if name not in BACKENDS:
        raise SandboxUnavailable(f"unknown sandbox backend {name!r}; choose one of: {', '.join(BACKENDS)}")
    path, extra = BACKENDS[name]
    module_name, _, cls_name = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        if (exc.name or "").startswith("sandbox"):
            raise
        hint = f"; install it with: pip install 'disco[{extra}]'" if extra else ""
        missing = exc.name or "a missing package"
        raise SandboxUnavailable(f"the {name} sandbox needs the `{missing}` package{hint}") from None
    return getattr(module, cls_name)(**config)
