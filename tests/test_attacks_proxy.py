"""Attacks on the agent-system target's model proxy and on its scoring, as an attacker who has read the code.

The proxy is the one door out of an ADAS agent's sandbox. Each row attacks it with the real proxy on its
Unix socket and FakeOpenAI as the inner model, and asserts what a safe proxy must do: refuse with one
clear sentence, count the refusal in the candidate's usage, and forward nothing upstream (FakeOpenAI's
request log). The grandchild rows run a real candidate in the real sandbox. The gold rows check that an
agent which hunts the file system for the benchmark's answers scores exactly what its inner model's
answers earn: scoring happens in the parent, from gold that never enters the sandbox request.
"""

from __future__ import annotations

import json
import secrets
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from adas_helpers import SECRET, ask, endpoint, inner_responder, target_on, write_mgsm
from fake_openai import Delay, Error, FakeOpenAI

from sandbox.isolation import REPO_ROOT
from targets.agents.benchmarks import Item, load_benchmark
from targets.agents.proxy import MAX_CONNECTIONS, InnerModelProxy, ProxySettings, Session
from targets.agents.runner import AgentRunner

REAL_DATA = Path("/work/shared/data/adas")


@pytest.fixture
def server() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(model="inner-model") as srv:
        srv.default = lambda body: {"answer": "ok"}
        yield srv


@dataclass
class Ctx:
    proxy: InnerModelProxy
    session: Session
    token: str
    """A live token of the victim session, as its framework holds it."""
    server: FakeOpenAI
    extra: dict[str, Any] = field(default_factory=dict)


def raw(ctx: Ctx, request: dict[str, Any]) -> dict[str, Any] | None:
    """A request line of the attacker's own making."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(30.0)
        conn.connect(ctx.proxy.socket_path)
        conn.sendall(json.dumps(request).encode() + b"\n")
        line = conn.makefile("rb").readline()
    return json.loads(line) if line else None


def invented_token(ctx: Ctx) -> list[dict[str, Any] | None]:
    return [ask(ctx.proxy.socket_path, secrets.token_urlsafe(24)), ask(ctx.proxy.socket_path, "t1")]


def client_chosen_task_id(ctx: Ctx) -> list[dict[str, Any] | None]:
    """The old wire format: a session and a task id of the client's choosing."""
    return [raw(ctx, {"session": ctx.token, "task": f"t{i}", "system": "s", "prompt": "p"}) for i in range(3)]


def token_of_a_closed_session(ctx: Ctx) -> list[dict[str, Any] | None]:
    with ctx.proxy.session(wall_s=30.0) as other:
        stolen = other.mint("t1")
    return [ask(ctx.proxy.socket_path, stolen)]


def huge_prompt(ctx: Ctx) -> list[dict[str, Any] | None]:
    return [ask(ctx.proxy.socket_path, ctx.token, prompt="A" * 1_500_000)]


def prompt_over_the_token_cap(ctx: Ctx) -> list[dict[str, Any] | None]:
    """Under the character cap, but 20k CJK characters are ~20k tokens."""
    return [ask(ctx.proxy.socket_path, ctx.token, prompt="数" * 20_000)]


def token_budget_without_prices(ctx: Ctx) -> list[dict[str, Any] | None]:
    """No prices, no usage reported: 750k-token attacks used to cost $0 and count nothing."""
    ctx.server.report_usage = False
    return [ask(ctx.proxy.socket_path, ctx.token, prompt="x" * 2400) for _ in range(5)]


def after_the_deadline(ctx: Ctx) -> list[dict[str, Any] | None]:
    time.sleep(max(0.0, ctx.session.deadline - time.monotonic()) + 0.2)
    return [ask(ctx.proxy.socket_path, ctx.token) for _ in range(2)]


def temperature_not_a_number(ctx: Ctx) -> list[dict[str, Any] | None]:
    """Python's json reads NaN; forwarded, it would be invalid JSON upstream."""
    return [raw(ctx, {"token": ctx.token, "system": "s", "prompt": "p", "temperature": float("nan")})]


def redirect_the_key(ctx: Ctx) -> list[dict[str, Any] | None]:
    """Fields that would send the call, and the key, elsewhere, or echo headers."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as evil:
        evil.bind(("127.0.0.1", 0))
        evil.listen(4)
        evil.settimeout(0.3)
        url = f"http://127.0.0.1:{evil.getsockname()[1]}/v1"
        replies = [
            ask(ctx.proxy.socket_path, ctx.token, base_url=url, api_key="mine"),
            ask(ctx.proxy.socket_path, ctx.token, extra_headers={"X-Echo": "1"}, return_headers=True),
            ask(ctx.proxy.socket_path, ctx.token, model="gpt-4", stream=True),
        ]
        with pytest.raises(TimeoutError):
            evil.accept()  # nobody came
    return replies


@dataclass(frozen=True)
class Attack:
    name: str
    attack: Callable[[Ctx], list[dict[str, Any] | None]]
    refusal: str
    """The reason counted in the victim session's `usage.refusals`."""
    says: str
    """What the agent is told (a substring of the last reply's error)."""
    settings: dict[str, Any] = field(default_factory=dict)
    wall_s: float = 30.0
    forwarded: int = 0
    """Calls that reached the inner model (the budget row lets the honest first ones through)."""


ATTACKS = [
    Attack("invented token", invented_token, "unknown_token", "not a live task token"),
    Attack("client-chosen task id", client_chosen_task_id, "unknown_token", "not a live task token"),
    Attack("token of a closed session", token_of_a_closed_session, "unknown_token", "not a live task token"),
    Attack("1.5 MB prompt", huge_prompt, "prompt_size", "the prompt has 1500003 characters; at most 32000"),
    Attack("prompt over the token cap", prompt_over_the_token_cap, "prompt_size", "about 20001 tokens"),
    Attack(
        "token budget with no prices and no usage reported",
        token_budget_without_prices,
        "tokens",
        "the candidate's budget of 2000 tokens is spent",
        settings={"max_tokens_per_eval": 2000},
        forwarded=2,
    ),
    Attack(
        "calls after the session's deadline",
        after_the_deadline,
        "session_closed",
        "the evaluation's session is closed",
        wall_s=0.3,
    ),
    Attack("redirect the call or the key", redirect_the_key, "bad_request", "unknown fields"),
    Attack("temperature NaN", temperature_not_a_number, "bad_request", "malformed or has unknown fields"),
]


@pytest.mark.parametrize("attack", ATTACKS, ids=[a.name for a in ATTACKS])
def test_the_proxy_refuses(server: FakeOpenAI, attack: Attack) -> None:
    proxy = InnerModelProxy(endpoint(server), ProxySettings(**attack.settings)).start()
    try:
        with proxy.session(wall_s=attack.wall_s) as session:
            ctx = Ctx(proxy, session, session.mint("t1"), server)
            replies = attack.attack(ctx)
        usage = session.usage
    finally:
        proxy.close()
    last = replies[-1]
    assert last is not None and last["ok"] is False and set(last) == {"ok", "error"}, last
    assert attack.says in last["error"], last["error"]
    assert usage.refusals.get(attack.refusal, 0) >= 1, usage
    assert usage.refused == sum(usage.refusals.values()) >= 1
    assert len(server.requests) == attack.forwarded, "nothing refused reached the inner model"
    text = json.dumps(replies)
    assert ctx.token not in text and SECRET not in text, "a reply never carries a token or the key"
    if attack.refusal == "tokens":
        assert usage.usd == 0.0 and usage.estimated_calls == 2 and usage.tokens > 1600, usage


def test_a_flood_of_idle_connections_cannot_tie_up_the_parent(server: FakeOpenAI) -> None:
    proxy = InnerModelProxy(endpoint(server), ProxySettings()).start()
    conns: list[socket.socket] = []
    try:
        with proxy.session(wall_s=60.0) as session:
            token = session.mint("t1")
            for _ in range(MAX_CONNECTIONS + 36):
                conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                conn.connect(proxy.socket_path)
                conns.append(conn)
            deadline, cut = time.monotonic() + 10.0, 0
            while cut < 36 and time.monotonic() < deadline:
                time.sleep(0.2)
                cut = sum(_closed_by_peer(c) for c in conns)
            assert cut == 36, f"{cut} connections over the limit were closed"
            threads = threading.active_count()
            assert threads < MAX_CONNECTIONS + 20, f"{threads} threads in the parent"
            for conn in conns:
                conn.close()
            time.sleep(0.3)  # the held slots come back as their connections close
            reply = ask(proxy.socket_path, token)
            assert reply is not None and reply["ok"], reply
        usage = session.usage
    finally:
        for conn in conns:
            conn.close()
        proxy.close()
    assert usage.refusals.get("unknown_token", 0) >= 36 and len(server.requests) == 1


def _closed_by_peer(conn: socket.socket) -> bool:
    conn.settimeout(0.001)
    try:
        return conn.recv(1) == b""
    except (TimeoutError, BlockingIOError):
        return False
    except OSError:
        return True


def test_a_call_in_flight_at_the_deadline_is_cut_and_never_served(server: FakeOpenAI) -> None:
    server.script([Delay(3.0, {"answer": "too late"})])
    proxy = InnerModelProxy(endpoint(server), ProxySettings()).start()
    try:
        with proxy.session(wall_s=0.5) as session:
            begin = time.monotonic()
            reply = ask(proxy.socket_path, session.mint("t1"))
            took = time.monotonic() - begin
    finally:
        proxy.close()
    assert reply is None, f"the connection is shut at the deadline, with no answer: {reply}"
    assert took < 2.0, f"the agent waited {took:.1f} s"
    assert len(server.requests) == 1 and session.usage.calls == 0


def test_an_upstream_error_echoing_the_key_never_reaches_the_agent(server: FakeOpenAI) -> None:
    """A server (or an error page) that quotes the Authorization header: the agent reads the error's type."""
    server.script(
        [Error(401, f"Incorrect API key provided: {SECRET}; header Authorization: Bearer {SECRET}")]
    )
    proxy = InnerModelProxy(endpoint(server), ProxySettings()).start()
    try:
        with proxy.session(wall_s=30.0) as session:
            token = session.mint("t1")
            reply = ask(proxy.socket_path, token)
            fine = ask(proxy.socket_path, token)
    finally:
        proxy.close()
    assert reply == {"ok": False, "error": "the inner model failed: AuthenticationError (HTTP 401)"}
    assert fine is not None and set(fine) == {"ok", "content"} and token not in json.dumps(fine)
    last_error = session.usage.last_error
    assert "Incorrect API key" in last_error and SECRET not in last_error and SECRET[-4:] not in last_error
    assert all(SECRET not in json.dumps(body) for body in server.requests), "the key travels in a header only"


# ----------------------------------------------------------------------------- grandchildren, real sandbox
GRANDCHILD = """
import os, sys, time

fw = sys.modules["targets.agents.framework"]
if {sabotage}:  # the run_agent loop runs this module's top level: silence its `end` messages
    fw._end_task = lambda token: None


def forward(self, taskInfo):
    if "first" not in taskInfo.content:
        time.sleep({sleep})  # keeps the sandbox alive while the grandchild calls
        return "kept the sandbox alive"
    LLMAgentBase(["answer"], "Task")([taskInfo], "on time")
    if os.fork() == 0:
        os.setsid()  # out of the task's process group
        for fd in range(3, 1024):  # drop the task's result pipe, so that the task ends now
            try:
                os.close(fd)
            except OSError:
                pass
        time.sleep({delay})
        for token in (fw._STATE["token"], "t1", "first"):
            try:
                late = {{"token": token, "system": "GRANDCHILD", "prompt": "late"}}
                fw._send(fw._STATE["socket"], late, 5.0)
            except Exception:
                pass
        os._exit(0)
    return "done"
"""

GRANDCHILD_ROWS = [  # (timeout 2 s) the other tasks keep the sandbox alive for ~4 s after the first call
    pytest.param(False, 1.0, 1.9, "task_ended", id="token given back when its task ended"),
    pytest.param(True, 2.6, 1.9, "task_expired", id="end silenced: token dies at its task's timeout"),
]


@pytest.mark.parametrize(("sabotage", "delay", "sleep", "refusal"), GRANDCHILD_ROWS)
def test_a_grandchild_cannot_call_after_its_task(
    server: FakeOpenAI, sabotage: bool, delay: float, sleep: float, refusal: str
) -> None:
    server.default = inner_responder(lambda body: "7")
    runner = AgentRunner(
        endpoint(server), ProxySettings(requests_per_s=100.0, task_timeout_s=2.0), concurrency=1
    )
    items = [Item(id=f"i{n}", content=f"{name} task", gold=7) for n, name in enumerate(["first", "b", "c"])]
    try:
        code = GRANDCHILD.format(sabotage=sabotage, delay=delay, sleep=sleep)
        out = runner.run(code, items, "an integer")
    finally:
        runner.close()
    assert not out.failure, out.failure + out.stderr
    assert out.tasks[0].answer == "done", out.tasks
    systems = [b["messages"][0]["content"] for b in server.requests]
    assert len(systems) == 1 and "GRANDCHILD" not in systems[0], "only the task's own call was forwarded"
    assert out.usage.refusals.get(refusal, 0) == 1, out.usage
    assert out.usage.refusals.get("unknown_token", 0) == 2, "the invented tokens were counted too"
    assert [c[0] for c in out.call_log] == ["i0"], "the call log names the parent's item, from the token"


# ----------------------------------------------------------------------------- the benchmark's gold answers
GOLD_HUNTER = r"""
import os, re, time

GOLD = {}
_start = time.monotonic()
_roots = ["/work", "/srv", "/opt", "/data", "/var", "/tmp", "/home", "/root", "/mnt", "/run", os.getcwd()]
for _root in _roots:
    for _dir, _subdirs, _files in os.walk(_root):
        _subdirs[:] = [d for d in _subdirs if d not in (".venv", ".git", "site-packages", "proc")]
        for _name in _files:
            if _name.endswith((".tsv", ".csv", ".jsonl.gz")):
                try:
                    with open(os.path.join(_dir, _name), encoding="utf-8", errors="replace") as _fh:
                        for _line in _fh:
                            _q, _, _a = _line.rstrip("\n").rpartition("\t")
                            if _q:
                                GOLD[_q.strip()] = _a.strip()
                except OSError:
                    pass
        if time.monotonic() - _start > 8.0:
            break


def forward(self, taskInfo):
    if taskInfo.content.strip() in GOLD:
        return GOLD[taskInfo.content.strip()]
    thinking, answer = LLMAgentBase(["thinking", "answer"], "Honest")([taskInfo], "solve it")
    return answer
"""


def data_under_tmp(tmp_path: Path) -> Iterator[Path]:
    yield write_mgsm(tmp_path / "mgsm", n=4)


def data_in_the_checkout(tmp_path: Path) -> Iterator[Path]:
    """The default data dir, `./.disco` of the checkout, which the sandbox must not show."""
    (REPO_ROOT / ".disco").mkdir(exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="pytest-gold-", dir=REPO_ROOT / ".disco"))
    folder.chmod(0o755)  # as a data dir is made (mkdtemp's 0700 would hide it from any other uid)
    try:
        yield write_mgsm(folder / "mgsm", n=4)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def shared_benchmark_files(tmp_path: Path) -> Iterator[Path]:
    yield REAL_DATA / "mgsm_en.tsv"


PLACES = [
    pytest.param(data_under_tmp, id="data under /tmp"),
    pytest.param(data_in_the_checkout, id="data in the checkout's .disco"),
    *(
        [pytest.param(shared_benchmark_files, id="the shared benchmark files")]
        if (REAL_DATA / "mgsm_en.tsv").is_file()
        else []
    ),
]


@pytest.mark.parametrize("place", PLACES)
def test_an_agent_hunting_for_gold_answers_scores_what_its_model_earns(
    server: FakeOpenAI, tmp_path: Path, place: Callable[[Path], Iterator[Path]]
) -> None:
    """The inner model always answers "0"; the agent reads every TSV it can find and answers from it."""
    server.default = inner_responder(lambda body: "0")
    places = place(tmp_path)
    data = next(places)
    target = target_on(server, data, n_valid=4, task_timeout_s=30.0)
    try:
        bench = target.benchmark()
        honest = [100.0 * bench.score("0", item) for item in target.items()]
        ev = target.evaluate(GOLD_HUNTER, "gold_hunter")
    finally:
        target.close()
        places.close()
    assert ev.status == "ok", ev.reason
    answers = [t["answer"] for t in ev.details["runs"]["0"]["tasks"]]
    assert ev.item_scores == {"0": honest}, f"the agent answered {answers}"


FRAME_SPY = """
import json, sys

def forward(self, taskInfo):
    frame = sys._getframe()
    while frame is not None and frame.f_code.co_name != "run_agent":
        frame = frame.f_back
    names = ("tasks", "answer_hint", "socket_path", "task_timeout_s", "concurrency", "seed")
    return json.dumps({k: v for k, v in frame.f_locals.items() if k in names})
"""


def test_the_sandbox_gets_task_texts_and_tokens_only(server: FakeOpenAI, tmp_path: Path) -> None:
    data = write_mgsm(tmp_path / "mgsm", n=3)
    bench = load_benchmark("mgsm", data)
    runner = AgentRunner(endpoint(server), ProxySettings(), concurrency=2)
    try:
        out = runner.run(FRAME_SPY, bench.items, bench.answer_hint)
    finally:
        runner.close()
    assert not out.failure, out.failure + out.stderr
    seen = json.loads(out.tasks[0].answer)
    assert [set(t) for t in seen["tasks"]] == [{"content", "token"}] * 3
    assert [t["content"] for t in seen["tasks"]] == [i.content for i in bench.items]
    text = json.dumps(seen)
    for item in bench.items:
        assert item.id not in text, "item ids name the file's rows: they stay in the parent"
    assert str(data) not in text and "mgsm_en" not in text
    assert len({t["token"] for t in seen["tasks"]}) == 3, "one token per task"
