"""The inner-model proxy of the agent-system target: the real proxy on a Unix socket, the real openai client,
FakeOpenAI as the model, and sandboxed agents that reach the proxy but neither the network nor the key."""

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
from fake_openai import Delay, Error, FakeOpenAI, count_tokens

from sandbox.local import LocalSandbox
from sandbox.models import SandboxLimits, SandboxRequest
from targets.agents.benchmarks import Item
from targets.agents.proxy import InnerModelProxy, ProxySettings, TokenBucket
from targets.agents.runner import AgentRunner

BACKENDS = ["local", *(["docker"] if os.environ.get("DISCO_DOCKER_HOST") else [])]
"""The Docker backend too where an engine is configured (`make sandbox-deps`): the proxy's dir is a volume."""


def ask(proxy: InnerModelProxy, session: str, task: str = "t1", **extra: Any) -> dict[str, Any]:
    """One request in the proxy's wire format, as the sandboxed framework sends it."""
    request = {"session": session, "task": task, "system": "sys", "prompt": "hello"} | extra
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.connect(proxy.socket_path)
        conn.sendall(json.dumps(request).encode() + b"\n")
        return json.loads(conn.makefile("rb").readline())


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
            reply = ask(proxy, s.token, temperature=5.0, seed=7, model="gpt-4-turbo")
            assert reply == {"ok": True, "content": json.dumps({"answer": "ok"})}
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
            assert ask(fixed, s.token, temperature=0.3)["ok"]
        assert "temperature" not in server.requests[-1], "a model without temperature keeps its default"
    finally:
        fixed.close()


def test_rate_limit_spaces_calls(server: FakeOpenAI) -> None:
    proxy = started(server, requests_per_s=10.0, burst=1)
    try:
        with proxy.session() as s:
            begin = time.monotonic()
            replies = [ask(proxy, s.token) for _ in range(6)]
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
            begin = time.monotonic()
            first = ask(proxy, s.token, task="slow")
            took = time.monotonic() - begin
            assert not first["ok"] and "the inner model failed" in first["error"] and took < 3.0
            second = ask(proxy, s.token, task="slow")
            assert second == {"ok": False, "error": "task slow ran past its 0.5 s timeout"}
            assert ask(proxy, s.token, task="other")["ok"], "other tasks have their own clock"
            assert (s.usage.errors, s.usage.refused, s.usage.calls) == (1, 1, 1)
    finally:
        proxy.close()


def test_tokens_cost_and_the_candidates_budget(server: FakeOpenAI) -> None:
    priced = endpoint(server, usd_per_mtok_in=2.0, usd_per_mtok_out=10.0)
    proxy = InnerModelProxy(priced, ProxySettings(max_calls=2)).start()
    try:
        with proxy.session() as s:
            assert ask(proxy, s.token)["ok"] and ask(proxy, s.token)["ok"]
            third = ask(proxy, s.token)
            usage = s.usage
        assert third == {"ok": False, "error": "the candidate's budget of 2 model calls is spent"}
        prompt = 2 * (count_tokens("sys") + count_tokens("hello"))
        completion = 2 * count_tokens(json.dumps({"answer": "ok"}))
        assert (usage.calls, usage.prompt_tokens, usage.completion_tokens) == (2, prompt, completion)
        assert usage.usd == pytest.approx((2.0 * prompt + 10.0 * completion) / 1e6)
        with proxy.session(ProxySettings(max_usd=1e-9)) as s:
            assert ask(proxy, s.token)["ok"]
            assert ask(proxy, s.token)["error"] == "the candidate's budget of $1e-09 is spent"
    finally:
        proxy.close()


def test_sessions_errors_and_json_mode_fallback(server: FakeOpenAI) -> None:
    proxy = started(server)
    path = Path(proxy.socket_path)
    try:
        assert "unknown or closed session" in ask(proxy, "forged")["error"]
        with proxy.session() as s:
            token = s.token
            server.script([Error(500, "boom")])
            failed = ask(proxy, token)
            assert not failed["ok"] and "InternalServerError" in failed["error"] and s.usage.errors == 1
            server.script([Error(400, "response_format json_object is not supported"), {"answer": "plain"}])
            assert ask(proxy, token) == {"ok": True, "content": json.dumps({"answer": "plain"})}
            assert proxy.json_mode is False and "response_format" not in server.requests[-1]
        assert "unknown or closed session" in ask(proxy, token)["error"], "a closed session is refused"
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
            threads = [threading.Thread(target=ask, args=(proxy, s.token, f"t{i}")) for i in range(8)]
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
            threads = [
                threading.Thread(target=lambda i=i: replies.append(ask(proxy, s.token, f"t{i}")))
                for i in range(8)
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert (s.usage.calls, s.usage.refused, s.in_flight) == (3, 5, 0)
    finally:
        proxy.close()
    assert sum(r["ok"] for r in replies) == 3 and len(server.requests) == 3
