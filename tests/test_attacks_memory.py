"""Attacks through `disco memory import` and `novelty`: archive code is as untrusted as a model's.

Each row runs the real CLI in a subprocess on an archive whose code would, if executed in that process,
write a marker file or read a bait secret from the environment. The CLI runs with an audit hook
(a `sitecustomize` on PYTHONPATH, which sandboxed processes never see: their environment is scrubbed) that
logs every `exec` of a code object carrying the row's marker string, so that even code that does nothing
visible is caught if it runs in the CLI's process. Asserted: no marker, no exec in the CLI, the bait in
no output, memory entry or embedding request; a policy-clean loss is still fingerprinted (in the sandbox).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from test_memory_helpers import FakeEmbeddingServer

from memory.embeddings import EmbeddingConfig, OpenAIEmbedder
from memory.store import MemoryStore

DISCO = Path(sys.executable).with_name("disco")
BAIT = f"sk-bait-{uuid.uuid4().hex}"

AUDIT_HOOK = """
import os, sys

_log, _marker = os.environ.get("DISCO_TEST_AUDIT_LOG"), os.environ.get("DISCO_TEST_MARKER")


def _carries(code, depth=0):
    if depth > 20:
        return False
    for const in getattr(code, "co_consts", ()):
        if isinstance(const, str) and _marker in const:
            return True
        if hasattr(const, "co_consts") and _carries(const, depth + 1):
            return True
    return False


def _hook(event, args):
    if event in ("exec", "eval") and args and _carries(args[0]):
        with open(_log, "a") as fh:
            fh.write(f"{event} in pid {os.getpid()}\\n")


if _log and _marker:
    sys.addaudithook(_hook)
"""

DPO_BODY = """def {name}(
    self, policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps
):
    tag = "{marker}"
    rho = (policy_chosen_logps - policy_rejected_logps) - (reference_chosen_logps - reference_rejected_logps)
    return -F.logsigmoid(self.beta * rho)
"""

POLICY_BYPASS = (
    """tag = "{marker}"
for found in torch.overrides.get_ignored_functions():
    if "function save at" in str(found):
        try:
            found({{"pwned": 1}}, "{marker_file}")
        except Exception:
            pass
"""
    + DPO_BODY
)
"""Passes today's deny-list policy: torch.save reached through a list of torch functions (issue 15)."""

READS_THE_ENVIRONMENT = (
    """import os
tag = "{marker}"
open("{marker_file}", "w").write(os.environ.get("DISCO_TEST_BAIT", "no bait"))
"""
    + DPO_BODY
)

ADAS_AGENT = """import os
tag = "{marker}"
open("{marker_file}", "w").write(os.environ.get("DISCO_TEST_BAIT", "no bait"))


def forward(self, taskInfo):
    return os.environ.get("DISCO_TEST_BAIT", "0")
"""


@dataclass(frozen=True)
class Row:
    name: str
    fmt: str
    """discopop | adas | disco (JSONL export) | novelty (a file for `disco memory novelty`)."""
    code: str
    fingerprinted: int | None
    """How many candidates get a fingerprint (None: not asserted, it depends on the static policy)."""


ROWS = [
    Row("discopop: a policy bypass saves a file at load", "discopop", POLICY_BYPASS, None),
    Row("discopop: a plain loss is fingerprinted, in the sandbox", "discopop", DPO_BODY, 1),
    Row("disco export: reads the environment at load", "disco", READS_THE_ENVIRONMENT, 0),
    Row("adas: the agent's module writes the bait at import", "adas", ADAS_AGENT, 0),
    Row("novelty: a plain loss is fingerprinted, in the sandbox", "novelty", DPO_BODY, None),
]


@pytest.fixture
def embeddings() -> Iterator[FakeEmbeddingServer]:
    with FakeEmbeddingServer() as server:
        yield server


def write_archive(row: Row, code: str, path: Path) -> Path:
    if row.fmt == "discopop":
        path.write_text(json.dumps([{"code": code, "fitness": 9.9}]), encoding="utf-8")
    elif row.fmt == "adas":
        item = {"thought": "t", "name": "pwn", "code": code, "fitness": 99.0, "generation": 1}
        path.write_text(json.dumps([item]), encoding="utf-8")
    elif row.fmt == "disco":
        record = {"target": "dpo", "name": "pwn", "code": code, "status": "evaluated", "run_id": "r"}
        path.write_text(json.dumps(record) + "\n", encoding="utf-8")
    else:
        path.write_text(code, encoding="utf-8")
    return path


@pytest.mark.parametrize("row", ROWS, ids=[r.name for r in ROWS])
def test_archive_code_never_runs_in_the_cli(
    row: Row, tmp_path: Path, embeddings: FakeEmbeddingServer
) -> None:
    marker = f"marker-{uuid.uuid4().hex}"
    marker_file = tmp_path / "pwned"
    code = row.code.format(name="pwn_loss", marker=marker, marker_file=marker_file)
    hook_dir = tmp_path / "hook"
    hook_dir.mkdir()
    (hook_dir / "sitecustomize.py").write_text(AUDIT_HOOK, encoding="utf-8")
    audit_log = tmp_path / "audit.log"
    home = tmp_path / "home"
    env = {
        **os.environ,
        "PYTHONPATH": str(hook_dir),
        "DISCO_TEST_AUDIT_LOG": str(audit_log),
        "DISCO_TEST_MARKER": marker,
        "DISCO_TEST_BAIT": BAIT,
        "OPENAI_API_KEY": BAIT,
        "DISCO_HOME": str(home),
        "DISCO_EMBEDDINGS_BACKEND": "openai",
        "DISCO_EMBEDDINGS_BASE_URL": embeddings.url,
        "OMP_NUM_THREADS": "1",
    }
    env.pop("DISCO_SANDBOX", None)
    file = write_archive(row, code, tmp_path / ("cand.py" if row.fmt == "novelty" else "archive.json"))
    command = ["novelty", str(file), "--json"] if row.fmt == "novelty" else ["import", str(file), "--json"]

    def disco(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(DISCO), "memory", *args], env=env, capture_output=True, text=True, timeout=300
        )

    proc = disco(*command)
    assert proc.returncode in ((0, 1) if row.fmt == "novelty" else (0,)), proc.stderr
    store = MemoryStore(home / "memory", embedder=OpenAIEmbedder(
        EmbeddingConfig(backend="openai", base_url=embeddings.url)))  # fmt: skip
    store.export_jsonl(tmp_path / "export.jsonl")

    assert not marker_file.exists(), "the archive's code ran with the host's file system"
    assert not audit_log.exists(), f"the CLI process executed the archive's code: {audit_log.read_text()}"
    seen = (
        proc.stdout
        + proc.stderr
        + (tmp_path / "export.jsonl").read_text()
        + json.dumps([r["body"] for r in embeddings.requests])
    )
    # (the embedding server itself is sent OPENAI_API_KEY as its Authorization header: the user's setting)
    assert BAIT not in seen, "the bait secret reached an output, memory or an embedded text"
    if row.fmt == "novelty":
        assert set(json.loads(proc.stdout)) == {"novel", "nearest", "similarity"}
    else:
        summary = json.loads(proc.stdout)
        assert summary["read"] == summary["added"] == 1, summary
        if row.fingerprinted is not None:
            assert summary["fingerprinted"] == row.fingerprinted, (summary, proc.stderr)


def test_the_fingerprint_length_matches_the_target() -> None:
    """The CLI checks a sandboxed fingerprint's length without importing torch: keep it in step."""
    from targets.dpo.fingerprint import DIM
    from targets.registry import archive_fingerprint

    declared = archive_fingerprint("dpo")
    assert declared is not None and declared.length == DIM
    assert archive_fingerprint("adas") is None  # an agent's fingerprint is its calls to a model
