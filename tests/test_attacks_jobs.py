"""Attacks on a DPO job (issue 15, item 1 for jobs): the candidate trains in a jailed child, and the job is
scored by its worker, where no candidate code ran.

Each row is a loss that trains exactly as DPO does and also attacks. It runs through the real job path:
a real worker process (`tools.jobs.worker`: confinement, reference log-probs, jailed child, relay,
scoring, result.json) on the tiny CPU model of the other job tests. One thing is removed: the static
loss policy, which would refuse every one of these losses (they import, store attributes, use
`grad_fn` and dunders). The policy is defence in depth; this suite tests the boundary behind it, so the
worker is started by a launcher that replaces `worker.policy_violations` with one that finds nothing.

A row passes when the job either fails with a clear reason, or succeeds with exactly the score an honest
DPO job earns (same seed, same numbers: bit-identical), and the honest job that runs after all attacks
scores exactly as before with an intact reference cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_jobs_helpers import DPO, RHO, SIGNATURE, job_spec, kill_group, make_model_and_data

from targets.cache_dirs import digest_mismatch
from tools.jobs.models import WorkerResult
from tools.jobs.supervise import worker_env

LAUNCH = (
    "import sys\n"
    "import tools.jobs.worker as worker\n"
    "worker.policy_violations = lambda code: []  # the static policy is skipped: see the module docstring\n"
    "sys.exit(worker.main(sys.argv))\n"
)
HONEST_TAIL = "    return -F.logsigmoid(self.beta * rho)  # (B,)\n"


def loss(name: str, attack: str) -> str:
    """DPO with `attack` (indented function-body lines) run on every call before the loss is returned."""
    return f"def {name}" + SIGNATURE + RHO + attack + HONEST_TAIL


# Each row: (id, attack lines, where JOB_DIR and CACHE_DIR stand for the job's folder and the shared cache,
# and "honest" or a phrase of the clear failure expected).
ATTACKS = [
    (
        "module-attributes",
        # The evaluator in the same process once read KL 0 through a patched log_softmax.
        "    torch.log_softmax = lambda *a, **k: torch.zeros(1)\n    F.logsigmoid = lambda x: x * 0\n",
        "changed process-wide state",
    ),
    (
        "evaluator-in-an-unwatched-module",
        # Modules the state guard does not watch: the child's own copies of the evaluator and the scorer.
        "    mods = torch.sys.modules\n"
        "    mods['targets.dpo.trainer'].CandidateDPOTrainer.evaluate = (\n"
        "        lambda *a, **k: {'eval_rewards/margins': 99.0, 'eval_rewards/accuracies': 1.0})\n"
        "    mods['targets.dpo.real'].score_policy = lambda *a, **k: (99.0, 1.0)\n"
        "    mods['targets.dpo.real'].RealDPOResult.model_dump_json = lambda *a, **k: '{\"forged\": 1}'\n",
        "honest",
    ),
    (
        "autograd-walk-to-the-parameters",
        "    seen, stack = 0, [policy_chosen_logps.grad_fn, policy_rejected_logps.grad_fn]\n"
        "    while stack:\n"
        "        node = stack.pop()\n"
        "        if node is None:\n"
        "            continue\n"
        "        for nxt, _ in node.next_functions:\n"
        "            var = getattr(nxt, 'variable', None)\n"
        "            if var is not None:\n"
        "                seen += 1\n"
        "                with torch.no_grad():\n"
        "                    var.zero_()\n"
        "            elif nxt is not None:\n"
        "                stack.append(nxt)\n"
        "    print(f'ATTACK reached {seen} parameters', flush=True)\n",
        "honest",
    ),
    (
        "write-the-shared-reference-cache",
        "    import os\n"
        "    blocked = lambda exc: print('ATTACK blocked', type(exc).__name__, flush=True)\n"
        "    for root, _, files in os.walk(CACHE_DIR, onerror=blocked):\n"
        "        for f in files:\n"
        "            try:\n"
        "                with open(os.path.join(root, f), 'r+b') as fh:\n"
        "                    fh.write(b'forged')\n"
        "                print('ATTACK wrote', f, flush=True)\n"
        "            except OSError as exc:\n"
        "                print('ATTACK blocked', type(exc).__name__, flush=True)\n"
        "    try:\n"
        "        open(os.path.join(CACHE_DIR, 'planted'), 'w').write('x')\n"
        "        print('ATTACK wrote planted', flush=True)\n"
        "    except OSError as exc:\n"
        "        print('ATTACK blocked', type(exc).__name__, flush=True)\n",
        "honest",
    ),
    (
        "forge-result-and-metrics",
        "    import os, json\n"
        "    forged = {'state': 'succeeded', 'reason': '', 'metrics': {'eval_reward_margin': 99.0}}\n"
        "    for name in ('result.json', 'metrics.json', 'metrics.jsonl'):\n"
        "        try:\n"
        "            open(os.path.join(JOB_DIR, name), 'w').write(json.dumps(forged))\n"
        "            print('ATTACK wrote', name, flush=True)\n"
        "        except OSError as exc:\n"
        "            print('ATTACK blocked', name, type(exc).__name__, flush=True)\n"
        "    line = {'kind': 'eval', 'step': 6, 'eval_rewards/margins': 99.0}\n"
        "    stream = os.path.join(os.environ['TMPDIR'], '..', 'metrics.jsonl')\n"
        "    open(stream, 'a').write(json.dumps(line) + '\\n')\n"
        "    real = torch.sys.modules['targets.dpo.real']\n"
        "    real.ChildReport.model_dump_json = lambda *a, **k: json.dumps(\n"
        "        {'status': 'ok', 'steps': 6, 'eval_reward_margin': 99.0, 'seconds': 1.0})\n",
        "honest",
    ),
    (
        "hand-back-forged-weights",
        "    real = torch.sys.modules['targets.dpo.real']\n"
        "    real._trainable = lambda model: {'lm_head.forged': torch.ones(3, requires_grad=True)}\n",
        "the trained weights were rejected: unexpected or missing tensors",
    ),
    (
        "hand-back-a-link-instead-of-weights",
        "    import os\n"
        "    real = torch.sys.modules['targets.dpo.real']\n"
        "    real.WEIGHTS = 'kept-here.safetensors'\n"
        "    link = os.path.join(os.environ['TMPDIR'], '..', 'weights.safetensors')\n"
        "    if not os.path.islink(link):\n"
        "        os.symlink('/etc/hostname', link)\n",
        "the trained weights were rejected: not a readable safetensors file",
    ),
]


def run_worker(folder: Path, name: str, code: str, cache: Path, model: Path, data: Path) -> dict:
    """One job, through the real worker (policy skipped): its verdict, log and metrics stream."""
    job_dir = folder / name
    job_dir.mkdir()
    spec = job_spec(name.replace("-", "_"), code, model, data).normalized()
    (job_dir / "spec.json").write_text(spec.model_dump_json())
    return {"dir": job_dir, "proc": _start(job_dir, cache)}


def _start(job_dir: Path, cache: Path) -> subprocess.Popen:
    log = open(job_dir / "log", "ab")  # noqa: SIM115 — the worker writes into it for its whole life
    proc = subprocess.Popen(
        [sys.executable, "-c", LAUNCH, str(job_dir)],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=worker_env([], cache),
        cwd=job_dir,  # as the supervisor starts it
        start_new_session=True,
    )
    log.close()
    return proc


def finish(job: dict, timeout_s: float = 240) -> dict:
    try:
        job["proc"].wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        kill_group(job["proc"].pid)
        job["proc"].wait()
        raise
    job_dir = job["dir"]
    result = WorkerResult.model_validate_json((job_dir / "result.json").read_text())
    lines = (
        (job_dir / "metrics.jsonl").read_text().splitlines() if (job_dir / "metrics.jsonl").exists() else []
    )
    return {
        "result": result,
        "log": (job_dir / "log").read_text(errors="replace"),
        "metrics": [json.loads(line) for line in lines],
        "dir": job_dir,
    }


def cache_digests(cache: Path) -> dict[str, str]:
    return {
        str(p.relative_to(cache)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted((cache / "refcache").rglob("*"))
        if p.is_file()
    }


def score(done: dict) -> tuple[float, float]:
    metrics = done["result"].metrics
    return metrics["eval_reward_margin"], metrics["eval_reward_accuracy"]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("attacks-jobs")
    model, data = make_model_and_data(tmp)
    cache = tmp / "cache"
    cache.mkdir()
    jobs = tmp / "jobs"
    jobs.mkdir()
    honest = finish(run_worker(jobs, "honest", DPO, cache, model, data))  # builds the reference cache
    before = cache_digests(cache)
    started = {}
    for row, attack, _ in ATTACKS:
        attack = attack.replace("JOB_DIR", repr(str(jobs / row))).replace("CACHE_DIR", repr(str(cache)))
        code = loss(row.replace("-", "_"), attack)
        started[row] = run_worker(jobs, row, code, cache, model, data)
    attacked = {row: finish(job) for row, job in started.items()}
    after = finish(run_worker(jobs, "honest-after", DPO, cache, model, data))
    return {
        "honest": honest,
        "attacked": attacked,
        "after": after,
        "cache": cache,
        "before": before,
        "after_digests": cache_digests(cache),
    }


def test_the_honest_job_is_scored_by_the_worker(world):
    honest = world["honest"]
    assert honest["result"].state == "succeeded", (honest["result"].reason, honest["log"][-2000:])
    margin, accuracy = score(honest)
    evals = [m for m in honest["metrics"] if m["kind"] == "eval"]
    assert evals == [evals[0]] and evals[0]["eval_rewards/margins"] == margin
    assert margin > 0 and 0 <= accuracy <= 1
    assert "[eval] scored by the worker" in honest["log"]
    assert not (honest["dir"] / "work").exists()  # the child's scratch and weights are gone


FORGED = 99.0
"""The score every forging attack writes."""


def holds_forged(text: str) -> bool:
    """Whether a JSON document or JSON-lines file holds the forged score as a value (not as a substring:
    a timestamp like 1796592299.05 contains "99.0", which once failed CI)."""

    def values(node: object) -> list[object]:
        if isinstance(node, dict):
            return [v for x in node.values() for v in values(x)]
        if isinstance(node, list):
            return [v for x in node for v in values(x)]
        return [node]

    try:
        docs = [json.loads(text)] if text.strip() else []
    except json.JSONDecodeError:  # JSON lines
        docs = [json.loads(line) for line in text.splitlines() if line.strip()]
    return any(v == FORGED and not isinstance(v, bool) for doc in docs for v in values(doc))


@pytest.mark.parametrize(("row", "expected"), [(row, expected) for row, _, expected in ATTACKS])
def test_an_attack_fails_clearly_or_earns_the_honest_score(world, row, expected):
    done = world["attacked"][row]
    result: WorkerResult = done["result"]
    if expected == "honest":
        assert result.state == "succeeded", (result.reason, done["log"][-3000:])
        assert score(done) == score(world["honest"])  # bit-identical: the same training, scored here
        evals = [m for m in done["metrics"] if m["kind"] == "eval"]
        assert [m["eval_rewards/margins"] for m in evals] == [score(world["honest"])[0]]
    else:
        assert result.state == "failed:crash", (result.state, result.reason, done["log"][-3000:])
        assert expected in result.reason
    assert not holds_forged(json.dumps(result.metrics))
    # Every write outside the child's scratch failed (as root: a uid of its own), or landed in the jail's
    # private /tmp (non-root: the same uid, whose writes fall on a tmpfs that dies with the child): the
    # host's job folder and shared cache hold none of them.
    for name in ("result.json", "metrics.json", "metrics.jsonl"):
        path = done["dir"] / name
        assert not path.exists() or not holds_forged(path.read_text()), name
    assert not (world["cache"] / "planted").exists()
    if os.geteuid() == 0:
        assert "ATTACK wrote" not in done["log"]


def test_the_attacks_ran_inside_the_child(world):
    """The rows that report what they did show they ran (and reached nothing)."""
    attacked = world["attacked"]
    assert "ATTACK reached 0 parameters" in attacked["autograd-walk-to-the-parameters"]["log"]
    if os.geteuid() == 0:  # a uid of its own: the paths exist in the jail only as root-owned mount points
        assert "ATTACK blocked result.json" in attacked["forge-result-and-metrics"]["log"]
    else:  # the same uid: it wrote, into the jail's private /tmp (the host's copies: see above)
        assert "ATTACK wrote result.json" in attacked["forge-result-and-metrics"]["log"]
    assert "ATTACK blocked" in attacked["write-the-shared-reference-cache"]["log"]  # existing files


def test_the_next_job_scores_exactly_as_before_on_an_intact_cache(world):
    after = world["after"]
    assert after["result"].state == "succeeded", after["result"].reason
    assert score(after) == score(world["honest"])
    assert world["after_digests"] == world["before"]
    for entry in (world["cache"] / "refcache").iterdir():
        if entry.is_dir():
            assert digest_mismatch(entry) is None, entry
    assert not (world["cache"] / "planted").exists()
