"""The worked example of a user target (examples/optimizer_target): its checks, one row per bad update
rule; its fingerprints and evaluation; its offline proposer; a whole offline `disco run --target PATH`
and its resume through the CLI; and memory kept apart between targets."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from agent_helpers import REPO, cli, kind_of, scripted_model
from fake_openai import FakeOpenAI
from test_memory_helpers import rec, shared_minilm

from agent.context import build_context
from agent.prompting import design_messages
from memory.embeddings import MiniLMEmbedder
from memory.novelty import fingerprint_similarity
from memory.records import CandidateRecord, Fitness
from memory.store import MemoryStore
from targets.registry import get_target
from targets.results import CheckResult

EXAMPLE = REPO / "examples" / "optimizer_target"
sys.path.insert(0, str(EXAMPLE.parent))  # import the example's modules directly, as the sandbox does

from optimizer_target.blocks import BlockProposer, Genome, read_genome, render, seed_archive  # noqa: E402
from optimizer_target.problems import PROBLEM_NAMES, make_problems  # noqa: E402
from optimizer_target.sandboxed import check_and_fingerprint  # noqa: E402

SEEDS = {s.name: s.code for s in seed_archive()}


def body(line: str, name: str = "rule") -> str:
    return f"def {name}(self, param, grad, state):\n    {line}\n"


@pytest.mark.parametrize(
    ("code", "failed", "fragment"),
    [
        ("def rule(self, param, grad, state)\n    return param, state\n", "loads", "syntax error"),
        (body("return param, state") + body("return param, state", "other"), "loads", "exactly one"),
        ("def rule(self, param, grad):\n    return param, {}\n", "loads", "(self, param, grad, state)"),
        (body("return param - self.lr * grad"), "interface", "pair (new_param, state)"),
        (body("return (param - self.lr * grad).sum(), state"), "interface", "shape (5,)"),
        (body("return param - self.lr * grad, [grad]"), "interface", "must be a dict"),
        (body("return param - self.lr * undefined_name, state"), "interface", "NameError"),
        (body("return param - self.lr * grad / np.abs(grad), state"), "finite", "zero gradients"),
        (body("return param + self.lr * grad, state"), "descends", "move against the gradient"),
        (body("return param - self.lr * grad * np.random.rand(), state"), "deterministic", "differ"),
        (
            # ~3-10 ms a step: 2000 steps take several times the 2 s budget even on a fast machine
            body("s = sum(i for i in range(100000))\n    return param - self.lr * grad, state"),
            "fast",
            "vectorise",
        ),
    ],
)
def test_bad_update_rules_fail_the_right_check(code: str, failed: str, fragment: str) -> None:
    result = check_and_fingerprint(code, time_budget_s=0.2)
    checks = [CheckResult.model_validate(c) for c in result["report"]["checks"]]
    assert not result["report"]["passed"] and result["fingerprint"] is None
    first_failure = next(c for c in checks if not c.passed)
    assert first_failure.name == failed and fragment in first_failure.message, first_failure


def test_the_classics_pass_and_their_fingerprints_tell_them_apart() -> None:
    fingerprints = {}
    for name, code in SEEDS.items():
        result = check_and_fingerprint(code)
        assert result["report"]["passed"], (name, result["report"])
        fingerprints[name] = result["fingerprint"]
    assert {len(fp) for fp in fingerprints.values()} == {48}
    names = list(fingerprints)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            squared = sum((x - y) ** 2 for x, y in zip(fingerprints[a], fingerprints[b], strict=True))
            assert fingerprint_similarity(squared, 48) < 0.99, (a, b)


def test_the_problems_are_rebuilt_from_their_seed() -> None:
    first, again, other = make_problems(3), make_problems(3), make_problems(4)
    assert [p.name for p in first] == PROBLEM_NAMES
    assert all((a.x0 == b.x0).all() and a.f_star == b.f_star for a, b in zip(first, again, strict=True))
    assert any((a.x0 != b.x0).any() for a, b in zip(first, other, strict=True))


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The example loaded the way `disco run --target PATH` loads it, from a copy under /tmp (hidden
    inside bubblewrap: only the sources shipped with each request can make the checks run)."""
    copy = tmp_path_factory.mktemp("user") / "opt_copy_target"
    shutil.copytree(EXAMPLE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    t = get_target(str(copy / "target.py"), {}, tmp_path_factory.mktemp("cache"))
    yield t
    t.close()


def test_checks_and_policy_run_through_the_sandbox(target: Any) -> None:
    assert type(target).__module__ == "opt_copy_target.target"
    report = target.check(SEEDS["adam"])
    assert report.passed, report
    assert len(target.fingerprint(SEEDS["adam"])) == 48
    broken = target.check(body("return param - self.lr * grad / np.abs(grad), state"))
    assert [c.name for c in broken.failures()] == ["finite"]
    refused = target.policy("import os\n" + body("return param, state"))
    assert not refused.passed and refused.line == 1


def test_evaluation_is_paired_with_adam_per_seed_and_problem(target: Any) -> None:
    adam = target.evaluate(SEEDS["adam"], "adam")
    assert adam.status == "ok" and adam.vs_baseline is not None
    assert adam.vs_baseline.value == adam.vs_baseline.ci_low == adam.vs_baseline.ci_high == 0.0
    assert sorted(adam.item_scores) == ["0", "1", "2"]
    assert all(
        len(v) == len(PROBLEM_NAMES) and all(0 <= x <= 1 for x in v) for v in adam.item_scores.values()
    )
    assert adam.fitness is not None and adam.fitness.ci_low <= adam.fitness.value <= adam.fitness.ci_high
    assert set(adam.metrics) == set(PROBLEM_NAMES)
    sgd = target.evaluate(SEEDS["sgd"], "sgd")
    assert sgd.fitness is not None and sgd.vs_baseline is not None
    assert sgd.vs_baseline.value == pytest.approx(sgd.fitness.value - adam.fitness.value)
    assert sgd.vs_baseline.value < 0, "plain SGD does not match Adam on ill-conditioned problems"
    more = target.evaluate(SEEDS["sgd"], "sgd", seeds=[7])
    assert list(more.item_scores) == ["7"] and more.item_scores["7"] != sgd.item_scores["0"]
    assert target.evaluate(SEEDS["sgd"], "sgd", seeds=[7]).item_scores == more.item_scores, "deterministic"
    failing = target.evaluate(body("raise ValueError('no')"), "raiser", seeds=[0])
    assert failing.status == "failed" and "ValueError: no" in failing.reason
    assert adam.baseline_item_scores == adam.item_scores, "Adam paired with itself"


def test_a_candidate_cannot_change_the_baseline_it_is_paired_with(tmp_path: Path) -> None:
    """Attack: the first candidate of a run rewrites numpy's sqrt, which Adam's update uses. Adam is scored
    in a sandbox of its own, so its item scores (cached for the whole run, the other side of every "vs
    Adam") are the same as beside a harmless candidate. The policy, which refuses the store, is skipped."""
    attack = body("np.sqrt = lambda x: x * 0.0 + 1e-12\n    return param - 0.01 * grad, state")
    scores = {}
    for name, code in (("attack", attack), ("sgd", SEEDS["sgd"])):
        copy = tmp_path / name / f"opt_{name}_target"
        shutil.copytree(EXAMPLE, copy, ignore=shutil.ignore_patterns("__pycache__"))
        fresh = get_target(str(copy / "target.py"), {}, tmp_path / name / "cache")
        try:
            evaluation = fresh.evaluate(code, name, seeds=[0, 1])
        finally:
            fresh.close()
        assert evaluation.status == "ok", evaluation.reason
        scores[name] = evaluation.baseline_item_scores
    assert scores["attack"] == scores["sgd"] and set(scores["sgd"]) == {"0", "1"}


def test_the_offline_proposer_is_reproducible_and_its_candidates_pass() -> None:
    first = [BlockProposer(seed=5).propose(1, []) for _ in range(2)]
    assert first[0] == first[1]
    proposer = BlockProposer(seed=5)
    proposals = [proposer.propose(i, []) for i in range(1, 5)]
    assert len({p.code for p in proposals}) == 4, "never the same rule twice"
    for p in proposals:
        assert check_and_fingerprint(p.code)["report"]["passed"], p.code
    adam = read_genome(SEEDS["adam"])
    assert adam == Genome(direction="momentum", scale="rms", bias_correction=True)
    assert read_genome(render(adam)) == adam and read_genome(body("return param, state")) is None
    duplicate = CheckResult(name="novelty", passed=False, message="duplicate of x")
    fixed = proposer.repair(5, SEEDS["adam"], [duplicate], 1)
    changed = {k for k, v in read_genome(fixed.code).model_dump().items() if adam.model_dump()[k] != v}  # type: ignore[union-attr]
    assert len(changed) == 2, "a duplicate moves two blocks away"


@pytest.fixture(scope="module")
def minilm() -> MiniLMEmbedder:
    return shared_minilm()


def optimizer_record(name: str, fitness: float | None = None, **kw: object) -> CandidateRecord:
    fit = Fitness(value=fitness, ci_low=fitness - 0.1, ci_high=fitness + 0.1) if fitness is not None else None
    fields: dict = {"id": f"opt-{name}", "target": "optimizer", "run_id": "r", "name": name, "fitness": fit}
    return CandidateRecord(code=SEEDS[name], thought=f"{name} thought", **(fields | kw))


def test_a_run_never_sees_another_targets_candidates(
    tmp_path: Path, target: Any, minilm: MiniLMEmbedder
) -> None:
    memory = MemoryStore(tmp_path / "memory", embedder=minilm)
    dpo_best = rec("dpo", id="dpo-best", fitness=Fitness(value=99.0, ci_low=98.0, ci_high=100.0))
    dpo_failed = rec("ipo", id="dpo-failed", status="check_failed", error="NaN at margin 1000")
    memory.record_many([dpo_best, dpo_failed])
    memory.record_many([optimizer_record("adam", 0.5), optimizer_record("sgd", 0.4)])
    ctx = build_context(memory, target, query=SEEDS["momentum"], pinned_ids=["dpo-best", "opt-sgd"])
    shown = [a.id for a in (*ctx.pinned, *ctx.best, *ctx.similar, *ctx.failures)]
    assert sorted(shown) == ["opt-adam", "opt-sgd"] and ctx.archive_size == 2
    prompt = "\n".join(m["content"] for m in design_messages(ctx))
    assert "policy_chosen_logps" not in prompt and "dpo-best" not in prompt and "NaN at margin" not in prompt
    verdict = memory.novelty(dpo_best.code, "optimizer")
    assert verdict.nearest is None or verdict.nearest.startswith("opt-")
    dpo = get_target("dpo", {}, tmp_path / "cache")
    try:
        other = build_context(memory, dpo, query=SEEDS["adam"])
    finally:
        dpo.close()
    assert {a.id for a in (*other.best, *other.similar, *other.failures)} == {"dpo-best", "dpo-failed"}


def test_a_repair_is_not_a_duplicate_of_its_own_failed_attempt(
    tmp_path: Path, minilm: MiniLMEmbedder
) -> None:
    memory = MemoryStore(tmp_path / "memory", embedder=minilm)
    lesson = optimizer_record("adam", None, id="run-0001-a0", status="check_failed")
    memory.record(lesson)  # lessons are recorded without a fingerprint
    repaired = SEEDS["adam"].replace("1e-08", "1e-06")
    assert not memory.novelty(repaired, "optimizer").novel, "another candidate would be a duplicate"
    assert memory.novelty(repaired, "optimizer", exclude_id="run-0001").novel


def test_disco_run_and_resume_a_user_target_offline(
    tmp_path: Path, shared_cache: Path, minilm: MiniLMEmbedder
) -> None:
    home = tmp_path / "home"
    dpo_id = "dpo-in-memory"
    seeded = rec("dpo", id=dpo_id, fitness=Fitness(value=99.0, ci_low=98.0, ci_high=100.0))
    MemoryStore(home / "memory", embedder=minilm).record(seeded)
    env = {"DISCO_CACHE": str(shared_cache), "OPENAI_API_KEY": "", "DISCO_MODEL": "offline"}
    args = ("run", "--target", "examples/optimizer_target/target.py", "--max-candidates", "2")
    proc = cli(home, *args, "--run-id", "opt", env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "vs Adam" in proc.stdout and "opt: finished" in proc.stderr
    meta = json.loads((home / "runs" / "opt" / "run.json").read_text())
    assert meta["target"] == meta["config"]["target"] == str(EXAMPLE / "target.py")
    shown = json.loads(cli(home, "runs", "show", "opt", "--json", env=env).stdout)
    assert [r["status"] for r in shown["candidates"]] == ["evaluated", "evaluated"]
    assert all(r["fitness"] is not None and r["vs_baseline"] is not None for r in shown["candidates"])
    assert cli(home, "control", "opt", "budget", "candidates=3", env=env).returncode == 0
    elsewhere = subprocess_in(tmp_path, home, "resume", "opt", env=env)
    assert elsewhere.returncode == 0, elsewhere.stderr[-3000:]
    rows = json.loads(cli(home, "runs", "show", "opt", "--json", env=env).stdout)["candidates"]
    assert [r["index"] for r in rows] == [1, 2, 3]
    records = {r.id: r for r in MemoryStore(home / "memory", embedder=minilm).iter_records()}
    mine = [r for r in records.values() if r.run_id == "opt"]
    assert mine and {r.target for r in mine} == {"optimizer"}
    for r in mine:  # memory's score is the latest fresh difference (the incumbent's refreshed after races)
        fresh = json.loads((home / "runs" / "opt" / "candidates" / r.id / "vs_baseline.json").read_text())
        assert r.vs_baseline is not None and r.vs_baseline.model_dump() == {
            k: fresh[k] for k in ("diff", "ci_low", "ci_high", "n_seeds")
        }
    assert all(dpo_id not in r.parent_ids for r in mine), "a DPO candidate is never an optimizer's parent"


def test_a_model_designs_for_a_user_target_from_its_own_texts(tmp_path: Path, shared_cache: Path) -> None:
    def rule(step: str, n: int) -> str:
        beta1 = {"design": 0.8, "reflect1": 0.95, "reflect2": 0.99}.get(step, 0.9)
        return render(Genome(direction="nesterov", beta1=beta1, scale="rms"), f"{step}_{n}")

    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "DISCO_MODEL"))}
    with FakeOpenAI() as server:
        server.default = scripted_model(rule)
        env = clean | {
            "DISCO_CACHE": str(shared_cache),
            "OPENAI_BASE_URL": server.base_url,
            "OPENAI_API_KEY": "sk-test",
            "DISCO_MODEL": "fake-model",
        }
        args = ("run", "--target", "examples/optimizer_target/target.py", "--max-candidates", "1")
        proc = cli(tmp_path, *args, "--run-id", "llm", env=env)
        requests = list(server.requests)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [kind_of(b) for b in requests] == ["design", "reflect1", "reflect2"]
    prompts = ["\n".join(m["content"] for m in b["messages"]) for b in requests]
    assert "def adam(self, param, grad, state)" in prompts[0] and "optimality gap" in prompts[0]
    assert all("DPO" not in p and "policy_chosen_logps" not in p for p in prompts)
    (row,) = json.loads(cli(tmp_path, "runs", "show", "llm", "--json", env=env).stdout)["candidates"]
    assert (row["name"], row["status"]) == ("reflect2_1", "evaluated") and row["vs_baseline"] is not None


def subprocess_in(cwd: Path, home: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """The CLI run from another directory: a resumed run must find its target file by itself."""

    return subprocess.run(
        [sys.executable, "-m", "agent.cli", "--home", str(home), *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
        env=os.environ | env | {"PYTHONPATH": str(REPO)},
    )
