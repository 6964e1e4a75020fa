"""all-MiniLM-L6-v2 forward pass in numpy: the same vectors as sentence-transformers, without importing torch.

`disco memory search "…"` embeds one query. Through sentence-transformers that costs ~9 s of imports (torch,
transformers) before the first matrix product; a 6-layer, 384-wide BERT is a few dozen numpy lines on the
same weights (safetensors) and the same tokenizer (the Rust `tokenizers` package), so a cold query answers
in about a second. tests/test_memory_embeddings.py checks the vectors against sentence-transformers'.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

MAX_TOKENS = 256
"""sentence_bert_config.json's max_seq_length: longer texts are cut there, as sentence-transformers does."""


class NumpyMiniLM:
    """BERT encoder (absolute positions, post-LayerNorm, erf GELU) + mean pooling + L2 normalisation."""

    def __init__(self, path: Path) -> None:
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        config = json.loads((path / "config.json").read_text())
        self.layers = int(config["num_hidden_layers"])
        self.heads = int(config["num_attention_heads"])
        self.eps = float(config["layer_norm_eps"])
        self.w = load_file(str(path / "model.safetensors"))
        # Dense weights transposed once, contiguous: x @ W.T on a strided view copies W on every call.
        self.dense = {
            k.removesuffix(".weight"): np.ascontiguousarray(v.T)
            for k, v in self.w.items()
            if k.endswith(".weight") and v.ndim == 2 and "embeddings" not in k
        }
        self.tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length=MAX_TOKENS)

    def embed(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        """(len(texts), 384) float32, unit length."""
        out = [self._batch(list(texts[i : i + batch_size])) for i in range(0, len(texts), batch_size)]
        return np.concatenate(out) if out else np.zeros((0, 384), dtype=np.float32)

    def _batch(self, texts: list[str]) -> np.ndarray:
        encodings = self.tokenizer.encode_batch(texts)
        width = max(len(e.ids) for e in encodings)
        ids = np.zeros((len(texts), width), dtype=np.int64)
        types = np.zeros_like(ids)
        mask = np.zeros((len(texts), width), dtype=np.float32)
        for row, e in enumerate(encodings):
            ids[row, : len(e.ids)] = e.ids
            types[row, : len(e.ids)] = e.type_ids
            mask[row, : len(e.ids)] = 1.0
        w = self.w
        x = (
            w["embeddings.word_embeddings.weight"][ids]
            + w["embeddings.position_embeddings.weight"][np.arange(width)][None]
            + w["embeddings.token_type_embeddings.weight"][types]
        )
        x = self._norm(x, "embeddings.LayerNorm")
        bias = (1.0 - mask)[:, None, None, :] * np.float32(-1e30)  # (B, 1, 1, L): padding gets no attention
        for i in range(self.layers):
            x = self._layer(x, bias, f"encoder.layer.{i}")
        pooled = (x * mask[..., None]).sum(1) / np.maximum(mask.sum(1, keepdims=True), 1e-9)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.maximum(norms, 1e-12)).astype(np.float32)

    def _layer(self, x: np.ndarray, bias: np.ndarray, p: str) -> np.ndarray:
        b, length, width = x.shape
        d = width // self.heads

        def heads(name: str) -> np.ndarray:  # (B, H, L, d)
            y = self._dense(x, f"{p}.attention.self.{name}")
            return y.reshape(b, length, self.heads, d).transpose(0, 2, 1, 3)

        q, k, v = heads("query"), heads("key"), heads("value")
        scores = q @ k.transpose(0, 1, 3, 2) / np.float32(math.sqrt(d)) + bias
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        attn = scores / scores.sum(-1, keepdims=True)
        context = (attn @ v).transpose(0, 2, 1, 3).reshape(b, length, width)
        attended = x + self._dense(context, f"{p}.attention.output.dense")
        x = self._norm(attended, f"{p}.attention.output.LayerNorm")
        hidden = _gelu(self._dense(x, f"{p}.intermediate.dense"))
        return self._norm(x + self._dense(hidden, f"{p}.output.dense"), f"{p}.output.LayerNorm")

    def _dense(self, x: np.ndarray, p: str) -> np.ndarray:
        flat = x.reshape(-1, x.shape[-1]) @ self.dense[p]  # one BLAS call over every token of the batch
        return (flat + self.w[f"{p}.bias"]).reshape(*x.shape[:-1], flat.shape[-1])

    def _norm(self, x: np.ndarray, p: str) -> np.ndarray:
        mean = x.mean(-1, keepdims=True)
        var = ((x - mean) ** 2).mean(-1, keepdims=True)
        return (x - mean) / np.sqrt(var + self.eps) * self.w[f"{p}.weight"] + self.w[f"{p}.bias"]


def _gelu(x: np.ndarray) -> np.ndarray:
    """BERT's exact GELU, x·Φ(x) = x·(1 + erf(x/√2))/2, erf to 1.5e-7 (Abramowitz & Stegun 7.1.26):
    scipy's erf is ten times slower on these arrays, the tanh approximation 1000 times less exact."""
    z = np.abs(x) * np.float32(1.0 / math.sqrt(2.0))
    t = 1.0 / (1.0 + np.float32(0.3275911) * z)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    erf = np.sign(x) * (1.0 - poly.astype(np.float32) * np.exp(-z * z))
    return (0.5 * x * (1.0 + erf)).astype(np.float32)
