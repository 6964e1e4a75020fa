"""Where disco keeps its data: caches, runs and memory.

Precedence (lowest to highest): the default `./.disco`, the `DISCO_HOME` environment variable, the
`--home` flag. Nothing is created until something is written.
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_HOME = Path(".disco")
_home_override: Path | None = None


def set_home(path: Path | None) -> None:
    """Set the data dir for this process (the CLI's `--home`)."""
    global _home_override
    _home_override = Path(path).expanduser() if path is not None else None


def disco_home() -> Path:
    """The data dir in force, as an absolute path."""
    if _home_override is not None:
        return _home_override.resolve()
    env = os.environ.get("DISCO_HOME")
    return Path(env).expanduser().resolve() if env else DEFAULT_HOME.resolve()


def cache_dir() -> Path:
    """Shared caches (SFT models, prepared data sets, reference log-probs); `DISCO_CACHE` moves them, so
    that several data dirs can share one set of built artefacts."""
    env = os.environ.get("DISCO_CACHE")
    return Path(env).expanduser().resolve() if env else disco_home() / "cache"
