"""The agent-system target end to end: the real sandbox runs candidate agents, the real proxy forwards their
calls to FakeOpenAI as the inner model, and evaluations come back with fitness, CI and per-item scores;
failures (errors on every task, loops, bad code, no inner model, no data) come back as data, in bounded
time."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from adas_helpers import endpoint, inner_responder, target_on, task_text, write_arc, write_drop, write_mgsm
from fake_openai import FakeOpenAI, free_port

from memory.novelty import fingerprint_similarity
from targets.agents.framework import parse_json_reply
from targets.agents.seeds import cot_sc
from targets.agents.target import AgentSystemTarget, AgentTargetConfig
from targets.base import ModelEndpoint, TargetEnv
from targets.registry import get_target


@pytest.fixture
def inner() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(model="inner-model") as srv:
        srv.default = inner_responder()
        yield srv


def expected_scores(target: AgentSystemTarget) -> list[float]:
    """mgsm_solver is right on even-numbered questions only."""
    return [100.0 if int(re.search(r"(\d+)", i.content).group(1)) % 2 == 0 else 0.0 for i in target.items()]


def test_the_seed_archive_evaluates_with_fitness_ci_and_item_scores(
    inner: FakeOpenAI, tmp_path: Path
) -> None:
    target = target_on(inner, write_mgsm(tmp_path, n=4), n_valid=4)
    try:
        seeds = target.seeds()
        assert [s.name for s in seeds] == ["chain_of_thought", "cot_sc", "self_refine", "llm_debate",
                                           "step_back", "quality_diversity", "role_assignment"]  # fmt: skip
        want = expected_scores(target)
        assert 0 < sum(want) < 400, "a mixed score, so that a wrong pairing of items would show"
        for seed in seeds:
            assert target.policy(seed.code).passed, seed.name
            ev = target.evaluate(seed.code, seed.name)
            assert ev.status == "ok", (seed.name, ev.reason)
            assert ev.item_scores == {"0": want}, seed.name
            fit = ev.fitness
            assert fit is not None and fit.ci_low <= fit.value <= fit.ci_high and fit.ci_low < fit.ci_high
            assert ev.metrics["score_mean"] == pytest.approx(sum(want) / len(want))
            assert ev.metrics["model_calls"] >= 4 and ev.metrics["prompt_tokens"] > 0
        twice = target.evaluate(seeds[0].code, "cot", seeds=[3, 4])
        assert set(twice.item_scores) == {"3", "4"} and twice.metrics["items"] == 4
        assert {b["model"] for b in inner.requests} == {"inner-model"}
        golds = [str(int(i.gold)) for i in target.items()]
        asked = " ".join(task_text(b) for b in inner.requests)
        assert "\t" not in asked and all(f"plus {int(g) // 2}?" in asked for g in golds)
    finally:
        target.close()


def test_an_agent_that_errors_on_every_task_is_a_failure_with_its_reason(
    inner: FakeOpenAI, tmp_path: Path
) -> None:
    target = target_on(inner, write_mgsm(tmp_path, n=4), n_valid=4)
    code = "def forward(self, taskInfo):\n    return 1 / 0\n"
    try:
        begin = time.monotonic()
        ev = target.evaluate(code, "crash")
        report = target.check(code)
        took = time.monotonic() - begin
    finally:
        target.close()
    assert ev.status == "failed" and ev.fitness is None
    assert (
        "failed on every task" in ev.reason
        and "ZeroDivisionError: division by zero (candidate line 2)" in ev.reason
    )
    assert ev.metrics["tasks_failed"] == 4
    assert not report.passed and report.failures()[0].name == "runs"
    assert "candidate line 2" in report.failures()[0].message
    assert took < 30, f"took {took:.1f} s"


LOOPS_ON_ODD = """
def forward(self, taskInfo):
    number = int(taskInfo.content.split()[2])
    while number % 2 == 1:
        number += 2
    agent = LLMAgentBase(["thinking", "answer"], "Solver")
    thinking, answer = agent([taskInfo], "Solve it.")
    return answer
"""


def test_a_looping_agent_hits_the_per_task_timeout(inner: FakeOpenAI, tmp_path: Path) -> None:
    target = target_on(inner, write_mgsm(tmp_path, n=4), n_valid=4, task_timeout_s=1.0)
    try:
        begin = time.monotonic()
        ev = target.evaluate(LOOPS_ON_ODD, "loops")
        forever = target.evaluate("def forward(self, taskInfo):\n    while True:\n        pass\n", "forever")
        took = time.monotonic() - begin
    finally:
        target.close()
    assert ev.status == "ok" and ev.item_scores == {"0": expected_scores(target)}
    assert ev.metrics["tasks_failed"] == 2
    errors = [t["error"] for t in ev.details["runs"]["0"]["tasks"] if t["error"]]
    assert errors == ["TimeoutError: the task ran past its 1 s limit and was stopped"] * 2
    assert forever.status == "failed" and "ran past its 1 s limit" in forever.reason
    assert took < 30, f"took {took:.1f} s"


@pytest.mark.parametrize(
    ("code", "failed", "message"),
    [
        ("def forward(self, taskInfo)\n    return 1", "policy", "syntax error"),
        ("import os\ndef forward(self, taskInfo):\n    return os.getcwd()", "policy", "importing `os`"),
        ("def solve(self, taskInfo):\n    return '1'", "policy", "no top-level `def forward"),
        ("def forward(taskInfo):\n    return '1'", "policy", "exactly (self, taskInfo)"),
        ("x = 1 / 0\ndef forward(self, taskInfo):\n    return '1'", "installs", "ZeroDivisionError"),
        ("def forward(self, taskInfo):\n    return taskInfo.missing", "runs", "AttributeError"),
        ("def forward(self, taskInfo):\n    return 'no idea'", "answer-form", "not of the form asked for"),
        ("def forward(self, taskInfo):\n    return '7'", None, ""),
    ],
)
def test_checks_say_what_is_wrong(
    inner: FakeOpenAI, tmp_path: Path, code: str, failed: str | None, message: str
) -> None:
    target = target_on(inner, write_mgsm(tmp_path), n_valid=4)
    try:
        policy = target.policy(code)
        report = target.check(code) if policy.passed else None
    finally:
        target.close()
    if failed == "policy":
        assert not policy.passed and message in policy.message
        return
    assert report is not None
    if failed is None:
        assert report.passed, report
        return
    (failure,) = report.failures()
    assert failure.name == failed and message in failure.message


def test_no_inner_model_or_no_data_is_one_sentence(inner: FakeOpenAI, tmp_path: Path) -> None:
    code = "def forward(self, taskInfo):\n    return '1'"
    offline = AgentSystemTarget(AgentTargetConfig(data_path=str(write_mgsm(tmp_path))), inner=ModelEndpoint())
    nodata = AgentSystemTarget(AgentTargetConfig(), inner=endpoint(inner))
    try:
        for target, sentence in (
            (offline, "set [models.inner] model and base_url"),
            (nodata, "needs its data"),
        ):
            report = target.check(code)
            ev = target.evaluate(code, "x")
            assert not report.passed and sentence in report.checks[0].message
            assert ev.status == "failed" and sentence in ev.reason and "\n" not in ev.reason
    finally:
        offline.close()
        nodata.close()
    assert inner.requests == []


def test_drop_and_arc_are_scored_by_their_own_metrics(tmp_path: Path) -> None:
    def solve(body: dict[str, Any]) -> str:
        text = task_text(body)
        if "How many cats" in text:
            return "three"
        if "Who won" in text:
            return "the Danes"
        grid = json.loads(text.split("# Test Problem\n### Input:\n")[1].split("\n")[0])
        return json.dumps([row[::-1] for row in grid])

    cot = "def forward(self, taskInfo):\n    return LLMAgentBase(['answer'], 'A')([taskInfo], 'Solve.')[0]\n"
    with FakeOpenAI() as srv:
        srv.default = inner_responder(solve)
        for bench, data in (
            ("drop", write_drop(tmp_path / "d.jsonl.gz")),
            ("arc", write_arc(tmp_path / "arc")),
        ):
            target = target_on(srv, data, benchmark=bench, n_valid=2)
            try:
                ev = target.evaluate(cot, bench)
            finally:
                target.close()
            assert ev.status == "ok" and ev.item_scores == {"0": [100.0, 100.0]}, (bench, ev.details)
            assert "Return ONLY" in srv.requests[-1]["messages"][0]["content"] or bench == "drop"


def test_registry_and_offline_proposer(inner: FakeOpenAI, tmp_path: Path) -> None:
    options = {"data_path": str(write_mgsm(tmp_path / "data")), "n_valid": 2, "requests_per_s": 500.0}
    target = get_target("adas", options, TargetEnv(cache_dir=tmp_path / "cache", inner=endpoint(inner)))
    try:
        assert target.name == "adas-mgsm" and "forward(self, taskInfo)" in target.interface
        proposer = target.offline_proposer(seed=5)
        proposals = [proposer.propose(i, []) for i in range(6)]
        assert len({p.code for p in proposals}) == 6, "six different designs"
        assert all(target.policy(p.code).passed for p in proposals)
        assert target.check(proposals[0].code).passed
        fixed = proposer.repair(0, "broken", [], attempt=1)
        assert target.policy(fixed.code).passed
    finally:
        target.close()


def test_an_unreachable_inner_model_fails_fast_with_the_reason(tmp_path: Path) -> None:
    dead = ModelEndpoint(model="inner-model", base_url=f"http://127.0.0.1:{free_port()}/v1", max_retries=1)
    config = AgentTargetConfig(data_path=str(write_mgsm(tmp_path, n=8)), n_valid=8, concurrency=1)
    target = AgentSystemTarget(config, inner=dead)
    cot = "def forward(self, taskInfo):\n    return LLMAgentBase(['answer'], 'A')([taskInfo], 'Solve.')[0]\n"
    try:
        begin = time.monotonic()
        ev = target.evaluate(cot, "cot")
        took = time.monotonic() - begin
    finally:
        target.close()
    assert ev.status == "failed" and "APIConnectionError" in ev.reason
    # three tasks try the endpoint; the other five are refused at once instead of retrying in turn
    assert (ev.metrics["model_errors"], ev.metrics["model_refused"]) == (3.0, 5.0)
    assert took < 30, f"took {took:.1f} s"


@pytest.mark.parametrize(
    ("reply", "parsed"),
    [
        ('{"answer": "4"}', {"answer": "4"}),
        ('```json\n{"answer": "4"}\n```', {"answer": "4"}),
        ('Sure! Here it is: {"thinking": "t", "answer": 4} Hope that helps.', {"thinking": "t", "answer": 4}),
        ("no json at all", {}),
        ('["a list"]', {}),
        ("", {}),
    ],
)
def test_replies_are_parsed_robustly(reply: str, parsed: dict[str, Any]) -> None:
    assert parse_json_reply(reply) == parsed


def test_fields_come_back_in_the_order_asked_whatever_the_reply(tmp_path: Path) -> None:
    def reversed_and_fenced(body: dict[str, Any]) -> str:
        fields = inner_responder()(body)
        return "```json\n" + json.dumps(dict(reversed(list(fields.items())))) + "\n```"

    with FakeOpenAI() as srv:
        srv.default = reversed_and_fenced
        target = target_on(srv, write_mgsm(tmp_path, n=4), n_valid=4)
        try:
            ev = target.evaluate(target.seeds()[0].code, "cot")
        finally:
            target.close()
    assert ev.status == "ok" and ev.item_scores == {"0": expected_scores(target)}


def test_fingerprint_is_the_call_pattern_of_a_passing_check(inner: FakeOpenAI, tmp_path: Path) -> None:
    three, five = cot_sc(3, 0.8), cot_sc(5, 0.8)
    renamed = three.replace("possible_answers", "votes").replace("cot_agents", "solvers")
    hotter = cot_sc(3, 1.0)
    target = target_on(inner, write_mgsm(tmp_path), n_valid=4)
    try:
        assert target.fingerprint(three) is None, "nothing before a check"
        assert not target.check("def forward(self, taskInfo):\n    return 1 / 0\n").passed
        assert target.fingerprint("def forward(self, taskInfo):\n    return 1 / 0\n") is None
        prints = {}
        for name, code in (("three", three), ("five", five), ("renamed", renamed), ("hotter", hotter)):
            assert target.check(code).passed, name
            prints[name] = target.fingerprint(code)
    finally:
        target.close()
    assert all(len(fp) == 7 for fp in prints.values())

    def similarity(a: list[float], b: list[float]) -> float:  # as the novelty gate computes it
        return fingerprint_similarity(sum((x - y) ** 2 for x, y in zip(a, b, strict=True)), len(a))

    assert similarity(prints["three"], prints["renamed"]) == 1.0, "a rewrite that calls alike is the same"
    assert similarity(prints["three"], prints["five"]) < 0.99, "more samples is another design"
    assert similarity(prints["three"], prints["hotter"]) < 0.99, "another temperature too"


def test_one_garbled_probe_answer_is_a_warning_not_a_failure(inner: FakeOpenAI, tmp_path: Path) -> None:
    target = target_on(inner, write_mgsm(tmp_path), n_valid=4)
    try:
        first = target.items()[0].content
        code = (
            f"def forward(self, taskInfo):\n    return '7' if taskInfo.content == {first!r} else 'no idea'\n"
        )
        report = target.check(code)
    finally:
        target.close()
    form = next(c for c in report.checks if c.name == "answer-form")
    assert report.passed and form.level == "warning" and "'no idea'" in form.message
