"""Fixtures of the agent-system target's tests: tiny benchmark files in their real formats, an inner model
(FakeOpenAI) that fills the agents' JSON fields, and a target wired to it."""

from __future__ import annotations

import csv
import gzip
import json
import re
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

from targets.agents.target import AgentSystemTarget, AgentTargetConfig
from targets.base import ModelEndpoint

SECRET = "sk-inner-secret-4242"
FAST = {"requests_per_s": 500.0, "burst": 50, "concurrency": 2, "task_timeout_s": 20.0}
"""Target options that keep tests quick: no rate limiting to speak of."""


def write_mgsm(folder: Path, n: int = 6) -> Path:
    """`mgsm_en.tsv`: "What is i plus i?" <TAB> 2i, no header, as the real file."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = "".join(f"What is {i} plus {i}?\t{2 * i}\n" for i in range(1, n + 1))
    (folder / "mgsm_en.tsv").write_text(lines, encoding="utf-8")
    return folder


def write_drop(path: Path) -> Path:
    rows = [
        {"context": "Passage: Ann has 3 cats.\nQuestion: How many cats?\nAnswer:", "completion": " 3",
         "ref_text": "3|three"},
        {"context": "Passage: The Danes won.\nQuestion: Who won?\nAnswer:", "completion": " the Danes",
         "ref_text": "Danes"},
    ]  # fmt: skip
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row) + "\n")
    return path


def write_arc(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    task = {
        "train": [{"input": [[1, 0]], "output": [[0, 1]]}, {"input": [[2, 3]], "output": [[3, 2]]}],
        "test": [{"input": [[4, 5]], "output": [[5, 4]]}, {"input": [[7, 0]], "output": [[0, 7]]}],
    }
    (folder / "flip.json").write_text(json.dumps(task), encoding="utf-8")
    return folder


def write_mmlu(folder: Path) -> Path:
    """Hendrycks' headerless per-subject CSV."""
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "algebra_test.csv").open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["What is 2+2?", "3", "4", "5", "6", "B"])
        w.writerow(["Find x if x, squared, is 9 and x > 0", "1", "2", "3", "4", "C"])
    return folder


def write_gpqa(path: Path) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(
            fh,
            fieldnames=["Record ID", "Question", "Correct Answer", "Incorrect Answer 1", "Incorrect Answer 2",
                        "Incorrect Answer 3", "Subdomain"],
        )  # fmt: skip
        w.writeheader()
        for i in range(3):
            w.writerow({"Record ID": f"r{i}", "Question": f"Which is right, {i}?", "Correct Answer": "right",
                        "Incorrect Answer 1": "wrong a", "Incorrect Answer 2": "wrong b",
                        "Incorrect Answer 3": "wrong c", "Subdomain": "physics"})  # fmt: skip
    return path


def requested_fields(body: dict[str, Any]) -> list[str]:
    system = body["messages"][0]["content"]
    return list(json.loads(system[system.index("{") : system.rindex("}") + 1]))


def task_text(body: dict[str, Any]) -> str:
    return body["messages"][-1]["content"]


def mgsm_solver(body: dict[str, Any]) -> str:
    """Right on even-numbered questions, wrong on odd ones: a score that is neither 0 nor 100."""
    m = re.search(r"What is (\d+) plus", task_text(body))
    if not m:
        return "0"
    i = int(m.group(1))
    return str(2 * i) if i % 2 == 0 else str(2 * i + 1)


def inner_responder(answer: Callable[[dict[str, Any]], str] = mgsm_solver) -> Callable[[dict[str, Any]], Any]:
    """A FakeOpenAI responder: every requested field filled; the answer fields by `answer`."""

    def respond(body: dict[str, Any]) -> dict[str, str]:
        out = {}
        for key in requested_fields(body):
            if "answer" in key:
                out[key] = answer(body)
            elif key == "correct":
                out[key] = "True"
            elif key == "choice":
                out[key] = "Math Professor"
            else:
                out[key] = f"my {key}"
        return out

    return respond


def ask(socket_path: str, token: str, **extra: Any) -> dict[str, Any] | None:
    """One request in the proxy's wire format, as the sandboxed framework sends it; None when the proxy
    closed the connection without a reply."""
    request = {"token": token, "system": "sys", "prompt": "hello"} | extra
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(30.0)
        conn.connect(socket_path)
        conn.sendall(json.dumps(request).encode() + b"\n")
        line = conn.makefile("rb").readline()
    return json.loads(line) if line else None


def endpoint(server: Any, model: str = "inner-model", **kw: Any) -> ModelEndpoint:
    return ModelEndpoint(model=model, base_url=server.base_url, api_key=SECRET, max_retries=0, **kw)


def target_on(server: Any, data: Path, benchmark: str = "mgsm", **options: Any) -> AgentSystemTarget:
    config = AgentTargetConfig(benchmark=benchmark, data_path=str(data), **(FAST | options))
    return AgentSystemTarget(config, inner=endpoint(server))


def write_adas_config(
    path: Path,
    data: Path,
    inner_url: str,
    meta_url: str | None = None,
    tables: dict[str, dict[str, Any]] | None = None,
) -> Path:
    """A `disco run --config` file for the ADAS target: the inner model at `inner_url` (model
    "inner-model"), the meta model at `meta_url` (none: offline), `data` with 3 validation items, one
    candidate; `tables` adds to or overrides its tables (`{"loop": {"seed_archive": "skip"}}`)."""
    toml: dict[str, dict[str, Any]] = {
        "budget": {"max_candidates": 1},
        "models.inner": {"model": "inner-model", "base_url": inner_url, "api_key": "sk-inner"},
        "targets.adas": {"data_path": str(data), "n_valid": 3, "requests_per_s": 500.0},
    }
    if meta_url is not None:
        toml["models.meta"] = {"model": "meta-model", "base_url": meta_url, "api_key": "sk-meta"}
    for name, values in (tables or {}).items():
        toml[name] = toml.get(name, {}) | values
    lines = ['target = "adas"']
    for name, values in toml.items():
        lines.append(f"[{name}]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in values.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
