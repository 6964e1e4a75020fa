"""A user target's own code, shipped into the sandbox with each request.

The sandbox imports disco's packages from the repository it runs from, but a target written elsewhere
(a file given by path, an installed plugin) is not there: inside bubblewrap `/tmp` and home directories
are hidden, and a Docker or E2B sandbox has none of the host's files. So a target that runs its checks as
`SandboxRequest(call="my_pkg.checks:run", ...)` also sends `files=package_sources("my_pkg")`: the
worker writes them into its work dir, which is on `sys.path` for a call (sandbox/worker.py).
"""

from __future__ import annotations

import importlib
from pathlib import Path

MAX_BYTES = 2_000_000
"""A target's sources are a few files; more than this means the package is not what it seems."""


class SourcesError(RuntimeError):
    """The package's sources cannot be shipped (not found, or too large)."""


def package_sources(module_name: str) -> dict[str, str]:
    """The `.py` files of the top-level package of `module_name` (or the lone module), keyed by their
    path relative to the `sys.path` entry they were imported from."""
    top = module_name.split(".")[0]
    module = importlib.import_module(top)
    file = getattr(module, "__file__", None)
    if not file:
        raise SourcesError(f"module {top!r} has no source file to ship into the sandbox")
    path = Path(file).resolve()
    if path.name != "__init__.py":  # a lone module
        return {path.name: path.read_text(encoding="utf-8")}
    root = path.parent.parent
    out: dict[str, str] = {}
    total = 0
    for source in sorted(path.parent.rglob("*.py")):
        if "__pycache__" in source.parts:
            continue
        text = source.read_text(encoding="utf-8")
        total += len(text)
        if total > MAX_BYTES:
            raise SourcesError(f"package {top!r} has over {MAX_BYTES} bytes of sources to ship")
        out[source.relative_to(root).as_posix()] = text
    return out
