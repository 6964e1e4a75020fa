"""Embedders: the hash-checked offline MiniLM, and an OpenAI-compatible endpoint (a fake server here)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from agent_helpers import REPO
from test_memory_helpers import FakeEmbeddingServer, rec, shared_minilm

from memory.embeddings import (
    MINILM_SAFETENSORS_SHA256,
    EmbeddingConfig,
    EmbeddingError,
    MiniLMEmbedder,
    OpenAIEmbedder,
    make_embedder,
    minilm_path,
    verify_model_file,
)
from memory.store import MemoryStore


@pytest.fixture(scope="session")
def minilm() -> MiniLMEmbedder:
    return shared_minilm()


@pytest.fixture
def fake_server() -> Iterator[FakeEmbeddingServer]:
    with FakeEmbeddingServer() as server:
        yield server


def test_the_bundled_weights_are_the_official_release() -> None:
    assert MINILM_SAFETENSORS_SHA256.startswith("53aa5117") and MINILM_SAFETENSORS_SHA256.endswith("d9db")
    verify_model_file(minilm_path() / "model.safetensors")


def test_other_weights_are_refused_with_a_clear_error(tmp_path: Path) -> None:
    fake = tmp_path / "model.safetensors"
    fake.write_bytes(b"not the model")
    with pytest.raises(
        EmbeddingError, match=r"sha256 .* not the official all-MiniLM-L6-v2 release's 53aa5117…d9db"
    ):
        verify_model_file(fake)
    with pytest.raises(EmbeddingError, match="missing"):
        verify_model_file(tmp_path / "absent.safetensors")


def test_minilm_gives_unit_vectors_that_rank_meaning(minilm: MiniLMEmbedder) -> None:
    v = minilm.embed(
        ["hinge loss on the reward margin", "a ReLU of one minus the margin", "weather in Paris"]
    )
    assert v.shape == (3, 384) and v.dtype == np.float32
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert v[0] @ v[1] > v[0] @ v[2]


TEXTS = [
    "bounded hinge on the margin",
    "def dpo(self, a, b):\n    return F.softplus(-self.beta * (a - b))  # the classic",
    "",
    "margin " * 400,  # past the 256 tokens sentence-transformers keeps
    "Ünïcödé  text\twith\nnewlines and CAPITALS",
]


def test_the_numpy_forward_pass_gives_sentence_transformers_vectors(minilm: MiniLMEmbedder) -> None:
    """Memories stored by the torch path stay valid: the same vectors to float precision."""
    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(str(minilm_path()), device="cpu", local_files_only=True)
    want = reference.encode(TEXTS, batch_size=2, normalize_embeddings=True, show_progress_bar=False)
    assert float(np.abs(minilm.embed(TEXTS, engine="torch") - want).max()) < 1e-6
    got = minilm.embed(TEXTS, engine="numpy")
    assert got.shape == (len(TEXTS), 384) and got.dtype == np.float32
    assert float(np.abs(got - want).max()) < 1e-5
    one = minilm.embed(TEXTS[:1], engine="numpy")[0]
    assert np.allclose(one, got[0], atol=1e-6), "a vector hardly depends on its batch"


def test_one_query_imports_no_torch() -> None:
    """`disco memory search` embeds one query: torch and sentence-transformers cost ~9 s of imports."""
    import subprocess
    import sys

    code = (
        "import sys; from memory.embeddings import MiniLMEmbedder; "
        "v = MiniLMEmbedder().embed(['a hinge']); "
        "print(v.shape, 'torch' in sys.modules, 'sentence_transformers' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert out.stdout.strip() == "(1, 384) False False", out.stderr[-2000:]


def test_make_embedder_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISCO_EMBEDDINGS_BACKEND", "openai")
    monkeypatch.setenv("DISCO_EMBEDDINGS_MODEL", "nomic-embed-text")
    embedder = make_embedder(EmbeddingConfig.from_env())
    assert isinstance(embedder, OpenAIEmbedder) and embedder.key == "openai-nomic-embed-text"
    monkeypatch.delenv("DISCO_EMBEDDINGS_BACKEND")
    assert isinstance(make_embedder(EmbeddingConfig.from_env()), MiniLMEmbedder)


def test_openai_endpoint_sends_model_and_key(fake_server: FakeEmbeddingServer) -> None:
    config = EmbeddingConfig(backend="openai", base_url=fake_server.url, model="m1", api_key="sk-test")
    out = OpenAIEmbedder(config).embed(["a", "b", "c"])
    assert out.shape == (3, 64)
    [req] = fake_server.requests
    assert req["path"] == "/v1/embeddings" and req["body"] == {"model": "m1", "input": ["a", "b", "c"]}
    assert req["auth"] == "Bearer sk-test"


def test_openai_endpoint_errors_are_one_sentence(fake_server: FakeEmbeddingServer) -> None:
    fake_server.fail_with = 500
    embedder = OpenAIEmbedder(EmbeddingConfig(backend="openai", base_url=fake_server.url))
    with pytest.raises(EmbeddingError, match="answered HTTP 500"):
        embedder.embed(["x"])
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    closed = OpenAIEmbedder(
        EmbeddingConfig(backend="openai", base_url=f"http://127.0.0.1:{port}/v1", timeout_s=2)
    )
    with pytest.raises(EmbeddingError, match="unreachable"):
        closed.embed(["x"])


def test_a_store_on_the_endpoint_keeps_its_own_space(
    tmp_path: Path, fake_server: FakeEmbeddingServer
) -> None:
    embedder = OpenAIEmbedder(EmbeddingConfig(backend="openai", base_url=fake_server.url, model="tri"))
    store = MemoryStore(tmp_path / "m", embedder=embedder)
    store.record_many(
        [rec("dpo", thought="sigmoid of the margin"), rec("slic", thought="hinge on the margin")]
    )
    assert store.search("hinge on the margin", k=1, space="meaning")[0].record.name == "slic"
    assert set(store.stats().spaces) == {"code.openai-tri.dpo", "meaning.openai-tri.dpo"}
