"""The inner-model proxy of the agent-system target: the real proxy on a Unix socket, the real openai client,
FakeOpenAI as the model, and sandboxed agents that reach the proxy but neither the network nor the key.
Attacks on the proxy (forged and dead tokens, huge prompts, budgets, the deadline) are in
test_attacks_proxy.py."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from adas_helpers import SECRET, endpoint, inner_responder
from adas_helpers import ask as ask_socket
from fake_openai import Delay, Error, FakeOpenAI, count_tokens
from sandbox_backends import ENGINE_REFUSED

from sandbox.local import LocalSandbox
from sandbox.models import SandboxLimits, SandboxRequest
from targets.agents.benchmarks import Item
from targets.agents.proxy import InnerModelProxy, ProxySettings, TokenBucket, estimate_tokens, wave_deadlines
from targets.agents.runner import AgentRunner

BACKENDS = ["local", *(["docker"] if os.environ.get("DISCO_DOCKER_HOST") and not ENGINE_REFUSED else [])]
"""The Docker backend too where an engine is configured (`make sandbox-deps`): the proxy's dir is a volume."""


def ask(proxy: InnerModelProxy, token: str, **extra: Any) -> dict[str, Any]:
    """One request in the proxy's wire format, as the sandboxed framework sends it."""
    reply = ask_socket(proxy.socket_path, token, **extra)
    assert reply is not None, "the proxy closed the connection without a reply"
    return reply


@pytest.fixture
def server() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(model="inner-model") as srv:
        srv.default = lambda body: {"answer": "ok"}
        yield srv


def started(srv: FakeOpenAI, **settings: Any) -> InnerModelProxy:
    return InnerModelProxy(endpoint(srv, max_tokens=128), ProxySettings(**settings)).start()


def test_the_inner_model_setting_applies_whatever_the_agent_asks(server: FakeOpenAI) -> None:
    proxy = started(server, max_temperature=1.0)
    try:
        with proxy.session() as s:
            token = s.mint("t1")
            reply = ask(proxy, token, temperature=5.0, seed=7)
            assert reply == {"ok": True, "content": json.dumps({"answer": "ok"})}
            chosen = ask(proxy, token, model="gpt-4-turbo")
            assert not chosen["ok"] and "unknown fields (model)" in chosen["error"]
            assert s.usage.refusals == {"bad_request": 1} and len(server.requests) == 1
        body = server.requests[-1]
        assert body["model"] == "inner-model" and body["temperature"] == 1.0 and body["max_tokens"] == 128
        assert body["seed"] == 7 and body["response_format"] == {"type": "json_object"}
        assert body["messages"] == [
            {"role": "system", "content": "sys"},
            {"role": "user", "content": "hello"},
        ]
    finally:
        proxy.close()
    fixed = InnerModelProxy(endpoint(server, temperature=None), ProxySettings()).start()
    try:
        with fixed.session() as s:
            assert ask(fixed, s.mint("t1"), temperature=0.3)["ok"]
        assert "temperature" not in server.requests[-1], "a model without temperature keeps its default"
    finally:
        fixed.close()


def test_rate_limit_spaces_calls(server: FakeOpenAI) -> None:
    proxy = started(server, requests_per_s=10.0, burst=1)
    try:
        with proxy.session() as s:
            token = s.mint("t1")
            begin = time.monotonic()
            replies = [ask(proxy, token) for _ in range(6)]
            elapsed = time.monotonic() - begin
        assert all(r["ok"] for r in replies)
        assert elapsed >= 0.45, f"6 calls at 10/s with a burst of 1 took {elapsed:.2f} s"
    finally:
        proxy.close()
    bucket = TokenBucket(rate=1.0, burst=1)
    assert bucket.take(time.monotonic() + 0.1)
    assert not bucket.take(time.monotonic() + 0.1), "no token before the deadline: refused at once"


def test_per_task_timeout_bounds_a_hung_model_and_refuses_later_calls(server: FakeOpenAI) -> None:
    server.script([Delay(4.0, {"answer": "late"})])
    proxy = started(server, task_timeout_s=0.5)
    try:
        with proxy.session() as s:
            slow, other = s.mint("slow"), s.mint("other")
            begin = time.monotonic()
            first = ask(proxy, slow)
            took = time.monotonic() - begin
            assert not first["ok"] and "the inner model failed" in first["error"] and took < 3.0
            second = ask(proxy, slow)
            assert second == {"ok": False, "error": "this task ran past its 0.5 s timeout"}
            assert ask(proxy, other)["ok"], "other tasks have their own clock"
            assert (s.usage.errors, s.usage.refused, s.usage.calls) == (1, 1, 1)
            assert s.usage.refusals == {"task_expired": 1}
    finally:
        proxy.close()


def test_tokens_die_at_their_wave_or_when_their_task_ends(server: FakeOpenAI) -> None:
    """The parent's clock: task i of n lives until the end of wave i // concurrency; `end` kills it early."""
    assert wave_deadlines(100.0, 5, 2, 10.0, 3.0) == [113.0, 113.0, 123.0, 123.0, 133.0]
    proxy = started(server, task_timeout_s=30.0)
    try:
        with proxy.session(wall_s=60.0) as s:
            past = s.mint("past", deadline=time.monotonic() - 0.01)
            ended, live = s.mint("ended"), s.mint("live")
            assert ask(proxy, past) == {"ok": False, "error": "this task ran past its 30 s timeout"}
            assert ask(proxy, ended)["ok"]
            assert ask(proxy, ended, op="end") == {"ok": True}
            assert ask(proxy, ended) == {
                "ok": False,
                "error": "this task has ended: its token is no longer valid",
            }
            assert ask(proxy, live)["ok"], "another task's token is untouched"
            assert s.usage.refusals == {"task_expired": 1, "task_ended": 1} and len(server.requests) == 2
            assert min(e.deadline for e in s.tokens.values()) <= s.deadline == s.opened + 60.0
    finally:
        proxy.close()


def test_tokens_cost_and_the_candidates_budget(server: FakeOpenAI) -> None:
    priced = endpoint(server, usd_per_mtok_in=2.0, usd_per_mtok_out=10.0)
    proxy = InnerModelProxy(priced, ProxySettings(max_calls=2)).start()
    try:
        with proxy.session() as s:
            token = s.mint("t1")
            assert ask(proxy, token)["ok"] and ask(proxy, token)["ok"]
            third = ask(proxy, token)
            usage = s.usage
        assert third == {"ok": False, "error": "the candidate's budget of 2 model calls is spent"}
        prompt = 2 * (count_tokens("sys") + count_tokens("hello"))
        completion = 2 * count_tokens(json.dumps({"answer": "ok"}))
        assert (usage.calls, usage.prompt_tokens, usage.completion_tokens) == (2, prompt, completion)
        assert usage.usd == pytest.approx((2.0 * prompt + 10.0 * completion) / 1e6)
        assert usage.estimated_calls == 0, "the server reported usage: nothing estimated"
        with proxy.session(ProxySettings(max_usd=1e-9)) as s:
            token = s.mint("t1")
            assert ask(proxy, token)["ok"]
            assert ask(proxy, token)["error"] == "the candidate's budget of $1e-09 is spent"
    finally:
        proxy.close()


def test_without_reported_usage_tokens_are_estimated_from_characters(server: FakeOpenAI) -> None:
    server.report_usage = False
    proxy = started(server)
    try:
        with proxy.session() as s:
            assert ask(proxy, s.mint("t1"), prompt="x" * 300)["ok"]
            usage = s.usage
    finally:
        proxy.close()
    assert usage.estimated_calls == 1 and usage.usd == 0.0
    assert usage.prompt_tokens == estimate_tokens("sys") + estimate_tokens("x" * 300) == 101
    assert usage.completion_tokens == estimate_tokens(json.dumps({"answer": "ok"}))
    assert estimate_tokens("数" * 30) == 30, "one token per CJK character: never undercounted"


def test_sessions_errors_and_json_mode_fallback(server: FakeOpenAI) -> None:
    proxy = started(server)
    path = Path(proxy.socket_path)
    try:
        assert "not a live task token" in ask(proxy, "forged")["error"]
        with proxy.session() as s:
            token = s.mint("t1")
            server.script([Error(500, "boom")])
            failed = ask(proxy, token)
            assert failed == {"ok": False, "error": "the inner model failed: InternalServerError (HTTP 500)"}
            assert s.usage.errors == 1 and "boom" in s.usage.last_error
            server.script([Error(400, "response_format json_object is not supported"), {"answer": "plain"}])
            assert ask(proxy, token) == {"ok": True, "content": json.dumps({"answer": "plain"})}
            assert proxy.json_mode is False and "response_format" not in server.requests[-1]
        assert "not a live task token" in ask(proxy, token)["error"], "a closed session's tokens are refused"
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.connect(proxy.socket_path)
            conn.sendall(b"not json\n")
            assert "not one JSON object" in json.loads(conn.makefile("rb").readline())["error"]
    finally:
        proxy.close()
    assert not path.exists() and not path.parent.exists(), "closing removes the socket and its dir"


SPY = """
import json, os, socket

def forward(self, taskInfo):
    seen = {{"env": dict(os.environ)}}
    try:
        socket.create_connection(("127.0.0.1", {port}), timeout=2).close()
        seen["tcp"] = "connected"
    except OSError as exc:
        seen["tcp"] = type(exc).__name__
    thinking, answer = LLMAgentBase(["thinking", "answer"], "Spy", model="gpt-4")([taskInfo], "solve it")
    seen["answer"] = answer.content
    return json.dumps(seen)
"""


@pytest.mark.parametrize("backend", BACKENDS)
def test_sandboxed_agent_reaches_the_proxy_but_not_the_network_or_the_key(
    server: FakeOpenAI, backend: str
) -> None:
    server.default = inner_responder(lambda body: "42")
    runner = AgentRunner(
        endpoint(server), ProxySettings(requests_per_s=100.0), sandbox=backend, concurrency=1
    )
    try:
        out = runner.run(
            SPY.format(port=server.port), [Item(id="q1", content="What?", gold=42)], "an integer"
        )
    finally:
        runner.close()
    assert not out.failure, out.failure + out.stderr
    (task,) = out.tasks
    assert task.error is None, task.error
    seen = json.loads(task.answer)
    assert seen["answer"] == "42" and out.usage.calls == 1, "the model answered through the proxy"
    assert seen["tcp"] != "connected", "no network inside the sandbox, not even loopback"
    assert SECRET not in task.answer and SECRET not in out.stderr
    assert not any(k.startswith("OPENAI") for k in seen["env"])
    assert server.requests[-1]["model"] == "inner-model", "the agent's own model choice is ignored"


def test_shared_dirs_are_bound_into_the_sandbox(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)
    box = LocalSandbox(warm=0)
    code = f"open({str(shared / 'hello.txt')!r}, 'w').write('from inside')"
    try:
        bound = box.run(
            SandboxRequest(code=code, shared_dirs=(str(shared),), limits=SandboxLimits(timeout_s=20))
        )
        assert bound.status == "ok", bound.stderr
        assert (shared / "hello.txt").read_text() == "from inside"
        if box.level == "bwrap":  # elsewhere the file system is the host's (and says so in `isolation`)
            hidden = box.run(
                SandboxRequest(code=code.replace("hello", "again"), limits=SandboxLimits(timeout_s=20))
            )
            assert hidden.status == "error" and not (shared / "again.txt").exists()
    finally:
        box.close()
    with pytest.raises(ValueError, match="must be an absolute path"):
        SandboxRequest(code="pass", shared_dirs=("relative/dir",))


def test_concurrent_tasks_share_one_rate_limit(server: FakeOpenAI) -> None:
    proxy = started(server, requests_per_s=20.0, burst=2)
    try:
        with proxy.session() as s:
            begin = time.monotonic()
            threads = [threading.Thread(target=ask, args=(proxy, s.mint(f"t{i}"))) for i in range(8)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            elapsed = time.monotonic() - begin
            assert s.usage.calls == 8
        assert elapsed >= 0.25, f"8 calls from 8 tasks at 20/s (burst 2) took {elapsed:.2f} s"
    finally:
        proxy.close()


def test_concurrent_tasks_cannot_overshoot_the_call_budget(server: FakeOpenAI) -> None:
    server.default = lambda body: Delay(0.3, {"answer": "slow"})
    proxy = started(server, max_calls=3, requests_per_s=1000.0, burst=100)
    replies: list[dict[str, Any]] = []
    try:
        with proxy.session() as s:
            tokens = [s.mint(f"t{i}") for i in range(8)]
            threads = [threading.Thread(target=lambda t=t: replies.append(ask(proxy, t))) for t in tokens]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert (s.usage.calls, s.usage.refused, s.in_flight) == (3, 5, 0)
    finally:
        proxy.close()
    assert sum(r["ok"] for r in replies) == 3 and len(server.requests) == 3
