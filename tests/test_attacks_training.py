"""Attacks on training and scoring, below the static policy (defence in depth, issue 15).

Each row is a loss that the static policy would refuse; here it goes straight to the training path the
sweep uses (`run_forked` + `_train_in_child` in a jailed child, then `_score` in this trusted process), so
what is tested is the boundary behind the policy: the jail, the detached leaves, the state guard, the
validation of what a child hands back. Every row asserts what a safe system does: the attack fails or is
contained, no bait leaks into the result, and DPO trained afterwards scores bit-identically to DPO trained
before any attack.
"""

from __future__ import annotations

import os
import secrets
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox.forked import run_forked
from sandbox.jail import JailSpec
from targets.cache_dirs import digest_mismatch, read_sealed, write_sealed
from targets.dpo.fitness import RunResult
from targets.dpo.sweep import (
    SweepJob,
    _score,
    _train_in_child,
    _worker_state,
    load_trained_policy,
    sweep_spec,
)
from targets.dpo.zoo import get_zoo_loss

BAIT = "sk-bait-" + secrets.token_hex(12)
SIG = (
    "def attack(self, policy_chosen_logps, policy_rejected_logps,\n"
    "           reference_chosen_logps, reference_rejected_logps):\n"
)
DPO_TAIL = (
    "    rho = (policy_chosen_logps - policy_rejected_logps)\n"
    "    rho = rho - (reference_chosen_logps - reference_rejected_logps)\n"
    "    return -F.logsigmoid(self.beta * rho)\n"
)


@pytest.fixture(scope="module")
def bed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """The tiny task built once; a bait env var, a bait file in the home dir and a loopback listener."""
    cache = tmp_path_factory.mktemp("attack-cache")
    spec = sweep_spec("tiny", 1)
    spec.run_timeout_s = 600.0  # generous: a loaded CI machine is slow; one row tests the limit
    state = _worker_state(spec, cache)
    home_bait = Path.home() / f".disco-bait-{secrets.token_hex(4)}"
    home_bait.write_text(BAIT)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.2)
    connections: list[object] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                connections.append(listener.accept())
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    os.environ["DISCO_BAIT_API_KEY"] = BAIT
    try:
        yield {
            "cache": cache,
            "spec": spec,
            "state": state,
            "home_bait": home_bait,
            "port": listener.getsockname()[1],
            "connections": connections,
        }
    finally:
        os.environ.pop("DISCO_BAIT_API_KEY", None)
        stop.set()
        thread.join()
        listener.close()
        home_bait.unlink(missing_ok=True)


def train(bed: dict, code: str, seed: int = 0, timeout_s: float | None = None) -> RunResult:
    """One run of `code` through the jailed child and the trusted scorer, as the sweep does it."""
    import shutil
    import tempfile

    spec = bed["spec"]
    job = SweepJob(loss="attack", code=code, beta=0.5, seed=seed)
    base = RunResult(loss=job.loss, beta=job.beta, seed=job.seed, status="error")
    scratch = Path(tempfile.mkdtemp(prefix="disco-train-"))
    try:
        outcome = run_forked(
            lambda: _train_in_child([job], spec, bed["state"], scratch),
            JailSpec(writable=[scratch]),
            scratch,
            timeout_s or spec.run_timeout_s,
        )
        return _score(job, 0, base, bed["state"], scratch, outcome)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


@pytest.fixture(scope="module")
def clean_dpo(bed: dict) -> RunResult:
    run = train(bed, get_zoo_loss("dpo").code)
    assert run.status == "ok", run.reason
    return run


ROWS = [
    # (id, body, what a failed run's reason must say — "": any failure, the containment checks below decide;
    #  None, or a run that trained: the attack had no effect and the run equals honest DPO bit for bit)
    (
        "tamper: rebind torch.log_softmax",
        "torch.log_softmax = lambda *a, **k: a[0] * 0",
        "process-wide state",
    ),
    ("tamper: rebind F.logsigmoid for later", "F.logsigmoid = F.relu", "process-wide state"),
    ("tamper: patch a Tensor method", "torch.Tensor.exp = torch.Tensor.sigmoid", "process-wide state"),
    (
        "tamper: a global forward hook zeroes every module",
        "torch.nn.modules.module.register_module_forward_hook(lambda m, i, o: o)",
        "global hooks",
    ),
    ("tamper: reseed the global RNG", "torch.manual_seed(1234)", "RNG"),
    ("tamper: flip a numerics switch", "torch.set_default_dtype(torch.float64)", "default dtype"),
    (
        "autograd: walk grad_fn to the parameters and zero them",
        """
seen, stack = set(), [policy_chosen_logps.grad_fn, policy_rejected_logps.grad_fn]
while stack:
    fn = stack.pop()
    if fn is None or id(fn) in seen:
        continue
    seen.add(id(fn))
    if hasattr(fn, "variable"):
        fn.variable.data.zero_()
    stack += [nxt for nxt, _ in fn.next_functions]
""",
        None,
    ),
    (
        "autograd: inputs are leaves without a graph",
        "assert policy_chosen_logps.grad_fn is None and policy_chosen_logps.is_leaf",
        None,
    ),
    (
        "secret: the parent's environment",
        "raise RuntimeError(open(f'/proc/{os.getppid()}/environ').read())",
        "",
    ),
    (
        "secret: every process's environment",
        "import glob\nraise RuntimeError(str([open(p).read() for p in glob.glob('/proc/*/environ')]))",
        "",
    ),
    ("secret: a file in the home directory", "raise RuntimeError(open(HOME_BAIT).read())", ""),
    ("secret: this process's environment", "raise RuntimeError(str(dict(os.environ)))", "RuntimeError"),
    (
        "escape: connect to the host's loopback",
        "import socket\nsocket.create_connection(('127.0.0.1', PORT), timeout=2)",
        "",
    ),
    (
        "escape: setns into the init namespaces",
        "os.setns(os.open('/proc/1/ns/net', os.O_RDONLY), 0)",
        "",
    ),
    ("escape: a new user namespace", "os.unshare(os.CLONE_NEWUSER)", ""),
    ("escape: write into the host's /tmp", "open(HOST_FILE, 'w').write('x')", ""),
    ("sabotage: rewrite the task cache", "open(CACHE_FILE, 'w').write('poison')", ""),
    ("resource: a loop that never ends", "while True:\n    pass", "time limit"),
    ("resource: allocate a petabyte", "torch.empty(2**50, dtype=torch.uint8)", ""),
    (
        "forge: report success and hand back the reference's weights",
        """
import gc, json, safetensors.torch as st
model = next(o for o in gc.get_objects() if type(o).__name__ == 'GPT2LMHeadModel')
weights = {k: v.detach().clone() for k, v in model.state_dict().items() if k != 'lm_head.weight'}
out = os.environ['TMPDIR']
st.save_file(weights, out + '/run-0.safetensors')
open(out + '/run-0.json', 'w').write(json.dumps({'status': 'ok', 'steps': 8}))
os._exit(0)
""",
        "moved nothing",
    ),
    (
        "forge: report success with no weights",
        "import json\nopen(os.environ['TMPDIR'] + '/run-0.json', 'w').write(json.dumps({'status': 'ok'}))\n"
        "os._exit(0)",
        "rejected",
    ),
]


def attack_code(bed: dict, body: str) -> str:
    """The attack inside a loss that otherwise computes DPO; the paths it needs are constants."""
    bed["host_file"] = Path("/tmp") / f"disco-escape-{secrets.token_hex(4)}"
    bed["cache_file"] = next((bed["cache"] / "toy").rglob("*.safetensors"))
    prelude = (
        f"import os\nHOME_BAIT = {str(bed['home_bait'])!r}\nPORT = {bed['port']}\n"
        f"HOST_FILE = {str(bed['host_file'])!r}\nCACHE_FILE = {str(bed['cache_file'])!r}\n"
    )
    lines = (prelude + body.strip("\n")).splitlines()
    return SIG + "".join(f"    {line}\n" for line in lines) + DPO_TAIL


@pytest.mark.parametrize(("name", "body", "expect"), ROWS, ids=[r[0] for r in ROWS])
def test_attack_is_contained(
    bed: dict, clean_dpo: RunResult, name: str, body: str, expect: str | None
) -> None:
    code = attack_code(bed, body)
    before = len(bed["connections"])
    timeout = 20.0 if "never ends" in name else None
    run = train(bed, code, timeout_s=timeout)
    if expect is None or run.status == "ok":
        # Contained: the attack ran (e.g. wrote into the jail's private /tmp) and changed nothing.
        assert run.status == "ok", run.reason
        assert (run.rewards, run.kls) == (clean_dpo.rewards, clean_dpo.kls), "the attack changed the score"
    else:
        assert expect in (run.reason or ""), run.reason
    assert BAIT not in run.model_dump_json(), "a secret reached the result"
    assert len(bed["connections"]) == before, "the child reached the host's loopback"
    assert not bed["host_file"].exists(), "the child wrote outside its scratch"
    assert digest_mismatch(bed["cache_file"].parent) is None, "the task cache changed"


def test_dpo_scores_bit_identically_after_the_attacks(bed: dict, clean_dpo: RunResult) -> None:
    """Runs after the table (pytest keeps file order): every attack ran in this same trusted process."""
    again = train(bed, get_zoo_loss("dpo").code)
    assert (again.status, again.rewards, again.kls) == ("ok", clean_dpo.rewards, clean_dpo.kls)


def test_forged_or_changed_artefacts_are_never_used(bed: dict, tmp_path: Path, caplog) -> None:
    """Cache and manifest forgery: a changed task file is named and rebuilt, a forged sealed entry is
    refused, a hand-made weights file with a foreign tensor is rejected."""
    from targets.dpo.toy.task import load_toy_task

    spec = bed["spec"]
    cache = tmp_path / "cache"
    task = load_toy_task(spec.task, cache)
    pairs = task.task_dir / "pairs.jsonl"
    pairs.write_text(pairs.read_text().replace("good", "bad"))
    with caplog.at_level("WARNING", logger="disco.cache"):
        rebuilt = load_toy_task(spec.task, cache)
    assert "pairs.jsonl" in caplog.text and "rebuilding" in caplog.text
    assert digest_mismatch(rebuilt.task_dir) is None

    sealed = tmp_path / "baseline.json"
    write_sealed(sealed, cache, '{"fitness": 0.1}')
    assert read_sealed(sealed, cache) == '{"fitness": 0.1}'
    sealed.write_text(sealed.read_text().replace("0.1", "9.9"))
    assert read_sealed(sealed, cache) is None and not sealed.exists()
    forged = tmp_path / "forged.json"
    forged.write_text('{"hmac": "00", "text": "{}"}')
    assert read_sealed(forged, cache) is None

    from safetensors.torch import save_file

    weights = {k: v.clone() for k, v in task.sft_weights().items() if k != "lm_head.weight"}
    weights["extra.evil"] = weights[next(iter(weights))]
    save_file({k: v.contiguous().clone() for k, v in weights.items()}, tmp_path / "w.safetensors")
    with pytest.raises(ValueError, match="unexpected or missing"):
        load_trained_policy(tmp_path / "w.safetensors", task)
    link = tmp_path / "link.safetensors"
    link.symlink_to(tmp_path / "w.safetensors")
    with pytest.raises(OSError):
        load_trained_policy(link, task)
