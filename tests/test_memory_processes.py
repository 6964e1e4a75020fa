"""Several processes on one memory: `disco memory import` writers in subprocesses, a long-lived reader here.

A reader that has queried keeps a stale HNSW index until Chroma's per-process cache is cleared
(STACK-NOTES); the store must notice other processes' writes by itself.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_memory_helpers import FakeEmbeddingServer

from memory.embeddings import EmbeddingConfig, OpenAIEmbedder
from memory.store import MemoryStore

DISCO = Path(sys.executable).with_name("disco")


@pytest.fixture
def fake_server() -> Iterator[FakeEmbeddingServer]:
    with FakeEmbeddingServer() as server:
        yield server


def forward(n: int) -> str:
    return f"def forward(self, taskInfo):\n    # agent number {n}\n    return self.step_{n}(taskInfo)\n"


def archive(path: Path, names: list[int]) -> Path:
    items = [{"thought": f"agent {n}", "name": f"agent{n}", "code": forward(n), "fitness": n} for n in names]
    path.write_text(json.dumps(items), encoding="utf-8")
    return path


def env_for(home: Path, server: FakeEmbeddingServer) -> dict[str, str]:
    return {
        **os.environ,
        "DISCO_HOME": str(home),
        "DISCO_EMBEDDINGS_BACKEND": "openai",
        "DISCO_EMBEDDINGS_BASE_URL": server.url,
        "OMP_NUM_THREADS": "1",
    }


def start_import(file: Path, home: Path, server: FakeEmbeddingServer) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(DISCO), "memory", "import", str(file), "--json"],
        env=env_for(home, server), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def finish(proc: subprocess.Popen[str]) -> dict:
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    return json.loads(out)


def test_a_reader_sees_what_other_processes_write(tmp_path: Path, fake_server: FakeEmbeddingServer) -> None:
    home = tmp_path / "home"
    reader = MemoryStore(home / "memory", embedder=OpenAIEmbedder(
        EmbeddingConfig(backend="openai", base_url=fake_server.url)))  # fmt: skip
    assert finish(start_import(archive(tmp_path / "a.json", [1, 2]), home, fake_server))["added"] == 2
    first = reader.search(forward(2), k=5, target="agents", space="code")
    assert {h.record.name for h in first} == {"agent1", "agent2"}

    assert finish(start_import(archive(tmp_path / "b.json", [3]), home, fake_server))["added"] == 1
    hits = reader.search(forward(3), k=1, target="agents", space="code")  # HNSW query after another write
    assert hits[0].record.name == "agent3" and hits[0].similarity > 0.999
    assert reader.novelty(forward(3) + "# same agent, new comment\n", target="agents").nearest == hits[0].id
    assert [r.name for r in reader.top_by_score("agents", k=1)] == ["agent3"]


def test_concurrent_writers_lose_nothing(tmp_path: Path, fake_server: FakeEmbeddingServer) -> None:
    home = tmp_path / "home"
    procs = [
        start_import(archive(tmp_path / f"w{i}.json", list(range(10 * i, 10 * i + 10))), home, fake_server)
        for i in range(3)
    ]
    assert sum(finish(p)["read"] for p in procs) == 30
    reader = MemoryStore(home / "memory", embedder=OpenAIEmbedder(
        EmbeddingConfig(backend="openai", base_url=fake_server.url)))  # fmt: skip
    assert reader.count() == 30
    for n in (0, 15, 29):
        assert reader.search(forward(n), k=1, target="agents", space="code")[0].record.name == f"agent{n}"
    out = subprocess.run(
        [str(DISCO), "memory", "stats", "--json"], env=env_for(home, fake_server),
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    stats = json.loads(out.stdout)
    spaces = {
        "code.openai-text-embedding-3-small.agents": 30,
        "meaning.openai-text-embedding-3-small.agents": 30,
    }
    assert stats["total"] == 30 and stats["spaces"] == spaces
