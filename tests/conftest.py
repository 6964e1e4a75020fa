"""Test-wide settings: offline Hugging Face libraries, set before anything imports them."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

for _var in (
    "HF_HUB_OFFLINE",
    "HF_DATASETS_OFFLINE",
    "HF_HUB_DISABLE_TELEMETRY",
    "HF_HUB_DISABLE_PROGRESS_BARS",
):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache of built artefacts (toy task, SFT model, reference log-probs) for the agent tests."""
    return tmp_path_factory.mktemp("agent-cache")


@pytest.fixture
def home(tmp_path: Path, shared_cache: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh data dir (runs, memory) per test, on the shared cache."""
    from agent.home import set_home

    monkeypatch.setenv("DISCO_CACHE", str(shared_cache))
    set_home(tmp_path / "home")
    yield tmp_path / "home"
    set_home(None)
