"""The meta-agent's loop end to end: the real graph, runner, sandboxed checks, toy-task training and Chroma
memory, with the offline proposer or a scripted model behind a real OpenAI-compatible HTTP server."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from agent_helpers import (
    BROKEN_CODE,
    GOOD_CODE,
    distinct,
    events,
    kind_of,
    recorded,
    running,
    scripted_model,
    show,
    start,
    tiny_config,
    wait_for,
)
from fake_openai import FakeOpenAI, free_port

from agent.control import parse_command, send
from agent.runs import RunDir
from memory.records import CandidateRecord


def llm_config(server: FakeOpenAI, **kw) -> object:
    models = {
        "meta": {
            "model": "fake-model",
            "base_url": server.base_url,
            "api_key": "k",
            "timeout_s": 10,
            "max_retries": 0,
        }
    }
    return tiny_config(models=models, **kw)


def memory_record(home: Path, cid: str) -> CandidateRecord | None:
    from agent.session import open_store

    return open_store().get(cid)


def test_offline_run_records_every_candidate_once_with_skipped_reflections(home: Path) -> None:
    runner, run = start(home / "runs", tiny_config(budget={"max_candidates": 3}), "offline")
    status = runner.execute()
    assert status.state == "finished" and "candidates budget reached: 3 of 3" in status.reason
    assert recorded(run) == ["offline-0001", "offline-0002", "offline-0003"]
    reflections = [
        e for e in events(run, "node") if e.payload.get("node") == "reflect" and "round" in e.payload
    ]
    assert [(e.candidate, e.payload["round"], e.payload["skipped"]) for e in reflections] == [
        (f"offline-000{i}", r, True) for i in (1, 2, 3) for r in (1, 2)
    ]
    doc = show(home, "offline")
    assert [c["id"] for c in doc["candidates"]] == recorded(run)
    assert doc["status"]["state"] == "finished"
    for cand in doc["candidates"]:
        rec = memory_record(home, cand["id"])
        assert rec is not None and rec.status == cand["status"] and rec.run_id == "offline"
        if cand["status"] == "evaluated":
            assert rec.fitness is not None and cand["fitness"] == pytest.approx(rec.fitness.value)
        else:
            assert rec.error, "a candidate that did not make it says why"


def test_model_loop_reflects_exactly_twice_and_keeps_the_revised_code(home: Path) -> None:
    with FakeOpenAI() as server:
        server.default = scripted_model(distinct)
        runner, run = start(home / "runs", llm_config(server, budget={"max_candidates": 2}), "llm")
        status = runner.execute()
        steps = [kind_of(body) for body in server.requests]
    assert status.state == "finished", status.reason
    assert steps == ["design", "reflect1", "reflect2"] * 2
    record = RunDir(run.root).read_candidate_json("llm-0001", "record.json")
    assert "def reflect2_1_loss" in record["code"], "the second reflection's revision is what was checked"
    assert status.prompt_tokens > 0 and status.completion_tokens > 0


def test_model_loop_repairs_at_most_three_times_then_records_the_failure(home: Path) -> None:
    with FakeOpenAI() as server:
        server.default = scripted_model(lambda step, n: BROKEN_CODE)
        runner, _ = start(home / "runs", llm_config(server, budget={"max_candidates": 1}), "broken")
        status = runner.execute()
        steps = [kind_of(body) for body in server.requests]
        repair_prompts = [b["messages"][-1]["content"] for b in server.requests if kind_of(b) == "repair"]
    assert status.state == "finished"
    assert steps == ["design", "reflect1", "reflect2", "repair", "repair", "repair"]
    assert all("undefined_name" in p for p in repair_prompts), "each repair is fed the failing check"
    assert "Repair 3 of 3" in repair_prompts[-1]
    rows = show(home, "broken")["candidates"]
    assert [(r["status"], r["repairs"]) for r in rows] == [("check_failed", 3)]
    assert "still failing after 3 repair(s)" in rows[0]["error"] and "undefined_name" in rows[0]["error"]
    lessons = [memory_record(home, f"broken-0001-a{i}") for i in range(3)]
    assert all(r is not None and r.status == "check_failed" for r in lessons), "failed versions are lessons"


def test_a_repair_that_works_is_evaluated(home: Path) -> None:
    def code_for(step: str, n: int) -> str:
        return GOOD_CODE if (step, n) == ("repair", 2) else BROKEN_CODE

    with FakeOpenAI() as server:
        server.default = scripted_model(code_for)
        runner, _ = start(home / "runs", llm_config(server, budget={"max_candidates": 1}), "fixed")
        runner.execute()
    (row,) = show(home, "fixed")["candidates"]
    assert (row["status"], row["repairs"]) == ("evaluated", 2)
    assert row["fitness"] is not None and row["parents"] == ["fixed-0001-a0", "fixed-0001-a1"]


def test_malformed_model_output_fails_the_candidate_and_the_run_goes_on(home: Path) -> None:
    with FakeOpenAI() as server:
        server.default = lambda body: "I would rather chat about the weather."
        config = llm_config(server, budget={"max_candidates": 2})
        config.models.meta.fix_attempts = 1
        runner, _ = start(home / "runs", config, "chatty")
        status = runner.execute()
    assert status.state == "finished", status.reason
    rows = show(home, "chatty")["candidates"]
    assert [r["status"] for r in rows] == ["failed", "failed"]
    assert all("design output was unusable" in r["error"] for r in rows)


def test_an_unreachable_endpoint_pauses_the_run_and_a_stop_ends_it(home: Path) -> None:
    models = {
        "meta": {
            "model": "m",
            "base_url": f"http://127.0.0.1:{free_port()}/v1",
            "api_key": "k",
            "timeout_s": 2,
            "max_retries": 0,
        }
    }
    runner, run = start(home / "runs", tiny_config(models=models), "down", backoff_s=(0.01, 0.01))
    with running(runner, run) as thread:
        assert wait_for(lambda: run.status().state == "paused", 60), run.status()
        assert "model endpoint down" in run.status().reason and run.status().endpoint == "down"
        send(run.control_path, parse_command("stop"))
        thread.join(60)
    assert run.status().state == "stopped" and run.status().reason == "stopped by the person"
    assert recorded(run) == []
    kinds = [e.payload.get("error_kind") for e in events(run, "error")]
    assert kinds.count("unreachable") == 3  # the first try and two back-offs


def test_hint_pin_veto_and_budget_commands_take_effect(home: Path) -> None:
    with FakeOpenAI() as server:
        server.default = scripted_model(distinct)
        config = llm_config(server, budget={"max_candidates": 5})
        runner, run = start(home / "runs", config, "steer")
        for action, arg in [
            ("hint", "try a hinge on the margin"),
            ("veto", "steer-0002"),
            ("budget", "candidates=2"),
        ]:
            send(run.control_path, parse_command(action, arg))
        status = runner.execute()
        designs = [b["messages"][-1]["content"] for b in server.requests if kind_of(b) == "design"]
    assert "try a hinge on the margin" in designs[0], "a hint reaches the next design prompt"
    assert status.state == "finished" and "2 of 2" in status.reason
    rows = {r["id"]: r for r in show(home, "steer")["candidates"]}
    assert (
        rows["steer-0002"]["status"] == "rejected" and rows["steer-0002"]["error"] == "vetoed by the person"
    )
    human = [e.payload["command"]["action"] for e in events(run, "human") if "command" in e.payload]
    assert human == ["hint", "veto", "budget"]
    design_events = [
        e for e in events(run, "node") if e.payload.get("node") == "design" and "hints_used" in e.payload
    ]
    assert design_events[0].payload["hints_used"] == ["try a hinge on the margin"]


def test_pause_holds_the_run_between_steps_until_resume(home: Path) -> None:
    runner, run = start(home / "runs", tiny_config(budget={"max_candidates": 2}), "pausing")
    send(run.control_path, parse_command("pause"))
    with running(runner, run) as thread:
        assert wait_for(lambda: run.status().state == "paused", 60)
        before = len(events(run))
        time.sleep(1.0)
        assert len(events(run)) == before, "nothing runs while paused"
        send(run.control_path, parse_command("resume"))
        thread.join(300)
    assert run.status().state == "finished"
    assert recorded(run) == ["pausing-0001", "pausing-0002"]


def test_token_budget_stops_at_a_step_boundary_and_resume_goes_on(home: Path) -> None:
    with FakeOpenAI() as server:
        server.default = scripted_model(distinct)
        config = llm_config(server, budget={"max_candidates": 1, "max_tokens": 1})
        runner, run = start(home / "runs", config, "tokens")
        status = runner.execute()
        assert status.state == "stopped" and status.reason.startswith("token budget reached")
        assert [kind_of(b) for b in server.requests] == ["design"], "stopped right after the first call"
        send(run.control_path, parse_command("budget", "tokens=none"))
        from agent.runner import Runner

        status = Runner(run, config, poll_s=0.05).execute()
        assert [kind_of(b) for b in server.requests] == ["design", "reflect1", "reflect2"], (
            "design not re-asked"
        )
    assert status.state == "finished" and recorded(run) == ["tokens-0001"]


def test_replay_reproduces_a_run_without_a_model_in_its_own_data_dir(home: Path) -> None:
    """In the data dir it was recorded in (issue 19.4): the replay is not judged a duplicate of the run it
    reproduces, its repairs are replayed too, and a replay asked for more than was recorded fails that
    candidate without writing it into memory."""

    def code_for(step: str, n: int) -> str:  # the recorded run repairs its candidate twice
        return GOOD_CODE if (step, n) == ("repair", 2) else BROKEN_CODE

    with FakeOpenAI() as server:
        server.default = scripted_model(code_for)
        runner, original = start(home / "runs", llm_config(server, budget={"max_candidates": 1}), "recorded")
        runner.execute()
    from agent.runner import Runner
    from agent.runs import create_run

    config = tiny_config(budget={"max_candidates": 2})  # one more than was recorded
    replay = create_run(home / "runs", config, "replayed", replay_of="recorded")
    status = Runner(replay, config, replay_of=original, poll_s=0.05).execute()
    assert status.state == "finished"
    a = original.read_candidate_json("recorded-0001", "record.json")
    b = replay.read_candidate_json("replayed-0001", "record.json")
    assert (a["name"], a["code"]) == (b["name"], b["code"])
    assert (a["status"], a["repair_count"], a.get("error")) == ("evaluated", 2, None)
    assert (b["status"], b["repair_count"], b.get("error")) == ("evaluated", 2, None), "replayed as it ran"
    missing = replay.read_candidate_json("replayed-0002", "record.json")
    assert missing["status"] == "failed" and "has no exchange for step c0002/design" in missing["error"]
    assert memory_record(home, "replayed-0001") is not None
    assert memory_record(home, "replayed-0002") is None, "a broken replay is no lesson for memory"
