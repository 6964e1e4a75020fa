"""In-place confinement of pool workers (what the DPO sweep's workers use): a real spawn pool."""

from __future__ import annotations

import os
import socket
import threading
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import pytest

from sandbox.confine import Confinement, confine_current_process

_ACHIEVED: list[str] = []


def _init(conf: Confinement) -> None:
    _ACHIEVED.extend(confine_current_process(conf))


def _probe(port: int, targets: list[str]) -> dict[str, object]:
    out: dict[str, object] = {"achieved": list(_ACHIEVED), "env": sorted(os.environ)}
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        out["network"] = "reached"
    except OSError as exc:
        out["network"] = exc.strerror
    for target in targets:
        try:
            Path(target).write_text("x", encoding="utf-8")
            out[target] = "written"
        except OSError as exc:
            out[target] = exc.strerror
    return out


def test_confined_worker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-canary")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cache = tmp_path / "cache"
    cache.mkdir()
    repo_file = Path(__file__).resolve().parents[1] / ".confine-probe"
    targets = [str(cache / "ok.txt"), str(repo_file), str(tmp_path / "outside.txt")]
    with socket.create_server(("127.0.0.1", 0)) as server:
        conf = Confinement(writable=[cache])
        ctx = get_context("spawn")
        with ProcessPoolExecutor(1, mp_context=ctx, initializer=_init, initargs=(conf,)) as pool:
            out = pool.submit(_probe, server.getsockname()[1], targets).result(timeout=60)
    assert out["network"] == "Network is unreachable"
    assert out[targets[0]] == "written" and (cache / "ok.txt").read_text() == "x"
    assert out[targets[1]] == "Read-only file system" and not repo_file.exists()
    # tmp_path lives in /tmp, which the worker sees as a private tmpfs: the write lands there, not here.
    assert not (tmp_path / "outside.txt").exists()
    env = out["env"]
    assert isinstance(env, list) and "OPENAI_API_KEY" not in env and "HF_HUB_OFFLINE" in env
    assert out["achieved"] == [
        "network: none (network namespace)",
        f"file system: read-only except {cache}, private /tmp",
        out["achieved"][2],  # type: ignore[index]
        "limits: file size, open files, core dumps",
    ]


def test_refuses_a_threaded_process() -> None:
    stop = threading.Event()
    t = threading.Thread(target=stop.wait)
    t.start()
    try:
        with pytest.raises(RuntimeError, match="before the process starts any thread"):
            confine_current_process()
    finally:
        stop.set()
        t.join()


def _train_tiny(cache: str) -> dict[str, object]:
    """What a sweep worker does, on the test suite's tiny model: prepare, then train with a candidate."""
    import copy

    from helpers_tiny import preference_dataset, tiny_gpt2, tiny_tokenizer

    from targets.dpo.candidate import load_candidate
    from targets.dpo.refcache import prepare_preference_dataset
    from targets.dpo.trainer import DPOTrainConfig, train_candidate

    tokenizer = tiny_tokenizer()
    reference = tiny_gpt2(tokenizer, seed=0)
    prepared = prepare_preference_dataset(
        reference, tokenizer, preference_dataset(16, seed=1), cache_dir=Path(cache), max_length=48,
        batch_size=16, device="cpu",
    )  # fmt: skip
    code = (
        "def loss(self, policy_chosen_logps, policy_rejected_logps, reference_chosen_logps,"
        " reference_rejected_logps):\n"
        "    rho = (policy_chosen_logps - reference_chosen_logps)"
        " - (policy_rejected_logps - reference_rejected_logps)\n"
        "    return -F.logsigmoid(self.beta * rho)\n"
    )
    config = DPOTrainConfig(beta=0.5, max_steps=4, max_length=48, logging_steps=2, device="cpu")
    outcome = train_candidate(load_candidate(code), copy.deepcopy(reference), tokenizer, prepared, config)
    return {"status": outcome.status, "reason": outcome.reason, "achieved": list(_ACHIEVED)}


def test_dpo_training_runs_in_a_confined_worker(tmp_path: Path) -> None:
    """The sweep's wiring: a confined spawn worker still trains (TRL, datasets, temp dirs all work)."""
    cache = tmp_path / "cache"
    cache.mkdir()
    conf = Confinement(writable=[cache])
    with ProcessPoolExecutor(1, mp_context=get_context("spawn"), initializer=_init, initargs=(conf,)) as pool:
        out = pool.submit(_train_tiny, str(cache)).result(timeout=300)
    assert out["status"] == "ok", out["reason"]
    assert "network: none (network namespace)" in out["achieved"]  # type: ignore[operator]
    assert any(cache.rglob("*")), "the reference log-prob cache was written to the writable dir"


def test_code_under_tmp_stays_importable_and_read_only(tmp_path: Path) -> None:
    """A checkout cloned under /tmp (as CI may do) must still import after /tmp turns private."""
    import subprocess
    import sys

    pkg = tmp_path / "checkout"
    (pkg / "mymod").mkdir(parents=True)
    (pkg / "mymod" / "__init__.py").write_text("VALUE = 42\n")
    script = (
        "import sys; sys.path.insert(0, sys.argv[1])\n"
        "from sandbox.confine import Confinement, confine_current_process\n"
        "confine_current_process(Confinement())\n"
        "import mymod\n"
        "print(mymod.VALUE)\n"
        "try:\n"
        "    open(sys.argv[1] + '/written', 'w')\n"
        "    print('writable')\n"
        "except OSError:\n"
        "    print('read-only')\n"
    )
    repo = Path(__file__).resolve().parent.parent
    proc = subprocess.run(
        [sys.executable, "-c", script, str(pkg)], capture_output=True, text=True, cwd=repo, timeout=60
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["42", "read-only"]
    assert not (pkg / "written").exists()
