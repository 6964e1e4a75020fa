"""Where disco keeps its data: caches, runs and memory.

Precedence (lowest to highest): the default, the `DISCO_HOME` environment variable, the `--home` flag.
The default is found like git finds its repository: the nearest `.disco` directory in the current
directory or above it, up to the project root (the first directory with a `.git`); with none, `./.disco`.
So a run started at the top of a project is found from any subdirectory. Nothing is created until
something is written.
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
    return Path(env).expanduser().resolve() if env else _found_home()


def _found_home() -> Path:
    """The nearest existing `./.disco` upwards, stopping at the project root; else `./.disco`."""
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / DEFAULT_HOME).is_dir():
            return folder / DEFAULT_HOME
        if (folder / ".git").exists():
            break
    return here / DEFAULT_HOME


def cache_dir() -> Path:
    """Shared caches (SFT models, prepared data sets, reference log-probs); `DISCO_CACHE` moves them, so
    that several data dirs can share one set of built artefacts."""
    env = os.environ.get("DISCO_CACHE")
    return Path(env).expanduser().resolve() if env else disco_home() / "cache"
