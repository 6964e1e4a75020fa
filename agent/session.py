"""The services of the data dir in force, opened in one place for the runner, the TUI's chat and the CLI:
the layers below (tools, memory, targets) are handed what they need and never look for the data dir."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from memory.store import MemoryStore


def open_store() -> MemoryStore:
    """The memory of the data dir in force, with the embedder the environment selects."""
    from agent.home import disco_home
    from memory.embeddings import EmbeddingConfig, make_embedder
    from memory.store import MemoryStore

    return MemoryStore(disco_home() / "memory", embedder=make_embedder(EmbeddingConfig.from_env()))


def jobs_dir() -> Path:
    """Where the data dir in force keeps its GPU job queue."""
    from agent.home import disco_home

    return disco_home() / "jobs"
