"""Shared pieces of the memory tests: a fake OpenAI-compatible embeddings server, the MiniLM session
fixture, record factories and rewritten losses. Imported by the other test_memory_* files.

The fake server implements POST /v1/embeddings with a real (if crude) embedding: hashed character
trigrams, so that similar texts get similar vectors and the real HTTP client code runs end to end.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

from memory.embeddings import MiniLMEmbedder
from memory.records import CandidateRecord
from targets.dpo.zoo import get_zoo_loss

FAKE_DIM = 64


def trigram_embedding(text: str, dim: int = FAKE_DIM) -> list[float]:
    v = np.zeros(dim)
    padded = f"  {text.lower()}  "
    for i in range(len(padded) - 2):
        h = int.from_bytes(hashlib.blake2b(padded[i : i + 3].encode(), digest_size=4).digest(), "big")
        v[h % dim] += 1.0
    return v.tolist()


class FakeEmbeddingServer:
    """POST /v1/embeddings on 127.0.0.1; `fail_with` makes it answer that HTTP status instead."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.fail_with: int | None = None
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append(
                    {"path": self.path, "body": body, "auth": self.headers.get("Authorization")}
                )
                if outer.fail_with is not None or self.path != "/v1/embeddings":
                    self.send_response(outer.fail_with or 404)
                    self.end_headers()
                    return
                texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
                # Reversed order on purpose: clients must sort by `index`.
                data = [
                    {"object": "embedding", "index": i, "embedding": trigram_embedding(t)}
                    for i, t in reversed(list(enumerate(texts)))
                ]
                payload = json.dumps({"object": "list", "data": data, "model": body["model"]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeEmbeddingServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@functools.cache
def shared_minilm() -> MiniLMEmbedder:
    """The real offline model, loaded once per test session (about 10 s); wrap it in a fixture."""
    embedder = MiniLMEmbedder()
    embedder.embed(["warm up"])
    return embedder


def rec(name: str, code: str | None = None, **kw: object) -> CandidateRecord:
    """A record for a zoo loss (by name) or for the given code."""
    fields: dict[str, object] = {"target": "dpo", "run_id": "run-1", "name": name}
    fields.update(kw)
    return CandidateRecord(code=code if code is not None else get_zoo_loss(name).code, **fields)  # type: ignore[arg-type]


SIG = "self, policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps"
DPO_RENAMED = """def sigmoid_pref(self, policy_chosen_logps, policy_rejected_logps, reference_chosen_logps,
                 reference_rejected_logps):
    chosen_gain = policy_chosen_logps - reference_chosen_logps
    rejected_gain = policy_rejected_logps - reference_rejected_logps
    # softplus(-z) is -log sigmoid(z)
    return F.softplus(-(chosen_gain - rejected_gain) * self.beta)
"""
DPO_TAU_CHANGED = get_zoo_loss("lrml").code.replace("tau = 0.05", "tau = 0.2")
HINGE_MARGIN_2 = f"""def hinge2({SIG}):
    rho = (policy_chosen_logps - policy_rejected_logps) - (reference_chosen_logps - reference_rejected_logps)
    return torch.relu(2.0 - self.beta * rho)
"""


def test_fake_server_answers_in_index_order_when_sorted() -> None:
    from memory.embeddings import EmbeddingConfig, OpenAIEmbedder

    with FakeEmbeddingServer() as server:
        out = OpenAIEmbedder(EmbeddingConfig(backend="openai", base_url=server.url)).embed(["abc", "xyz"])
    expected = np.array([trigram_embedding("abc"), trigram_embedding("xyz")])
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    assert np.allclose(out, expected, atol=1e-6)
