"""The inner agents' only way to a model: a server on a Unix socket in the PARENT process.

Sandboxed agents have no network and no key; each model call is one JSON line over the socket (see
framework._ask). Here it gets the configured inner model (never the agent's choice: ADAS hard-wired one
model into every agent), a temperature cap, a token-bucket rate limit shared by every task, and the limits
of the candidate's evaluation: a call, token and USD budget, a prompt size cap and the clock.

Everything that arrives on the socket is the candidate's and untrusted, so the parent owns identity and
time. For each sandbox run it opens a `Session` and mints one unguessable token per task
(`secrets.token_urlsafe`) before the sandbox request is made; a call carries its task's token and the
proxy honours only live ones. A token's deadline is fixed by the parent when it is minted, in the parent's
clock: tasks run in waves of `concurrency` (framework.run_agent starts task i no later than the end of
the tasks before it, each bounded by `task_timeout_s`), so task i ends by

    session start + startup allowance + (i // concurrency + 1) × task_timeout_s,

whatever the sandbox says. Two things can only shorten that: the task's first call starts its own
`task_timeout_s` (the task started before it), and the framework's `end` message when the task's process
is gone. The session itself closes at the request's wall limit (the last wave's deadline): from then on no
call is served, in-flight connections are shut, and the session's tokens are forgotten. A token says how
long a call may be served, not which task's code makes it: all of a candidate's tasks run in one sandbox,
so its code can read every token of its own run, but never another run's, and it gains nothing from
swapping its own tokens that its call, token and time budgets do not already bound. The reply is the
model's text or one sentence; it never carries a token, a header or the key.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import secrets
import shutil
import socket
import socketserver
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from targets.base import ModelEndpoint

MAX_REQUEST_BYTES = 2 << 20
"""Longest request line read; the prompt caps (ProxySettings) are far below it and are what refuses."""
MAX_CONNECTIONS = 64
"""Connections served at once (tasks make one call at a time; at most 16 run at once): more are closed
unanswered, so that a candidate opening thousands cannot tie up the parent's threads."""
READ_TIMEOUT_S = 10.0
"""A connection that has not sent its request line within this is closed."""
FAILING_START = 3
"""Failed calls, with none answered, after which a session's calls are refused at once."""
OPENAI_URL = "https://api.openai.com/v1"
ERROR_CHARS = 300
GRACE_S = 0.25
"""An upstream call may outlive its deadline by this much, so that one cut at the session's deadline ends
after it (and is never served) rather than racing it with a timeout error."""


class ProxySettings(BaseModel):
    """Limits that the proxy applies to every candidate's inner-model calls."""

    requests_per_s: float = Field(default=4.0, gt=0)
    """Token-bucket refill rate shared by all tasks (the endpoint's rate limit, not the candidate's)."""
    burst: int = Field(default=8, ge=1)
    task_timeout_s: float = Field(default=120.0, gt=0)
    """Seconds a task may run: its token expires this long after the task's first call, and at the end
    of its wave in the parent's clock (see the module docstring), whichever comes first."""
    max_calls: int = Field(default=2000, ge=1)
    """Model calls one candidate may make in one evaluation (ADAS's debate makes ~7 per task)."""
    max_usd: float | None = None
    """Cost one candidate may spend in one evaluation, when the inner model's prices are set."""
    max_tokens_per_eval: int = Field(default=3_000_000, ge=1)
    """Prompt + completion tokens one candidate may use in one evaluation, counted with or without
    prices; estimated from characters when the server reports no usage (a debate agent on 128 MGSM items
    uses ~0.5 M)."""
    max_prompt_chars: int = Field(default=32_000, ge=1)
    """Characters of one call's system prompt and prompt together; a longer call is refused."""
    max_prompt_tokens: int = Field(default=12_000, ge=1)
    """Estimated tokens (`estimate_tokens`) of one call's prompt; a longer call is refused."""
    max_temperature: float = Field(default=1.2, ge=0)
    json_mode: bool = True
    """Ask for `response_format={"type": "json_object"}`; dropped by itself when the server refuses it."""


class Usage(BaseModel):
    """One candidate's calls through the proxy."""

    calls: int = 0
    """Calls answered by the model."""
    errors: int = 0
    """Calls the model failed (timeout, HTTP error)."""
    refused: int = 0
    """Calls refused here (budget, size, dead token, rate limit, closed session), never forwarded."""
    refusals: dict[str, int] = Field(default_factory=dict)
    """`refused` by reason: unknown_token (no live session holds it, or the request is unreadable),
    task_ended, task_expired, session_closed, bad_request, prompt_size, calls, usd, tokens,
    endpoint_down, rate."""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    estimated_calls: int = 0
    """Answered calls whose tokens were estimated from characters (the server reported no usage)."""
    usd: float = 0.0
    last_error: str = ""
    """The inner model's last failure, for the parent (the key redacted); the agent saw its type only."""

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


def estimate_tokens(text: str) -> int:
    """A tokenizer-free upper estimate: one token per three bytes of UTF-8 (real tokenizers give about four
    characters of English per token and about one per CJK character), so a budget is never undercounted
    by a server that reports no usage."""
    return math.ceil(len(text.encode("utf-8", "replace")) / 3)


def wave_deadlines(
    start: float, n: int, concurrency: int, task_timeout_s: float, startup_s: float
) -> list[float]:
    """Each task's latest end, in the parent's clock: task i is in wave i // concurrency (see the module
    docstring); `startup_s` is the room for the sandbox to start and install the code."""
    c = max(1, concurrency)
    return [start + startup_s + (i // c + 1) * task_timeout_s for i in range(n)]


class ModelCall(BaseModel):
    """The wire format of one request from the sandbox; anything else in it is refused."""

    model_config = ConfigDict(extra="forbid")

    op: Literal["call", "end"] = "call"
    """`end`: the framework says the task is over and its token may die (it can only shorten a life)."""
    token: str
    system: str = ""
    prompt: str = ""
    temperature: float | None = Field(default=None, allow_inf_nan=False)
    seed: int | None = None


class TokenBucket:
    """`rate` tokens per second, at most `burst` saved; `take` waits for one until a deadline."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, float(burst)
        self.tokens, self.stamp = float(burst), time.monotonic()
        self.lock = threading.Lock()

    def take(self, deadline: float) -> bool:
        while True:
            with self.lock:
                now = time.monotonic()
                self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
                self.stamp = now
                if self.tokens >= 1.0:
                    self.tokens -= 1.0
                    return True
                wait = (1.0 - self.tokens) / self.rate
            if now + wait > deadline:
                return False
            time.sleep(wait)


@dataclass
class TaskToken:
    """What a token stands for: its session and task, and when it dies (parent's monotonic clock)."""

    session: Session
    task: str
    deadline: float
    first_call: float | None = None
    ended: bool = False


@dataclass
class Admitted:
    """A call let through: its token's effective deadline and the tokens reserved for it."""

    deadline: float
    reserved: int


class Refused(Exception):
    """A call the proxy will not forward: `kind` for the counts, the message for the agent."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class Session:
    """One sandbox run of a candidate (an evaluation seed or a check): its tokens, clock, budget and usage."""

    def __init__(self, proxy: InnerModelProxy, settings: ProxySettings, wall_s: float | None) -> None:
        self.proxy = proxy
        self.settings = settings
        self.opened = time.monotonic()
        self.deadline = self.opened + wall_s if wall_s is not None else math.inf
        self.usage = Usage()
        self.closed = False
        self.tokens: dict[str, TaskToken] = {}
        self.in_flight = 0
        """Calls admitted and not yet answered: counted against the budget, so that concurrent tasks
        cannot overshoot it."""
        self.in_flight_tokens = 0
        self.log: list[tuple[str, float | None, str]] = []
        """(task, temperature asked for, system prompt) of every admitted call: the candidate's call pattern,
        which its behavioural fingerprint is made of. The task is the parent's id, from the token."""
        self.connections: set[socket.socket] = set()
        self.lock = threading.Lock()
        self._timer: threading.Timer | None = None
        self._stray_at_open = 0

    # ------------------------------------------------------------------ tokens
    def mint(self, task: str, deadline: float | None = None) -> str:
        """A new token for `task`, live until `deadline` (monotonic; default: the session's deadline)."""
        token = secrets.token_urlsafe(24)
        entry = TaskToken(self, task, min(deadline if deadline is not None else math.inf, self.deadline))
        with self.lock:
            if self.closed:
                raise RuntimeError("the session is closed")
            self.tokens[token] = entry
        self.proxy._register(token, entry)
        return token

    def mint_waves(self, tasks: list[str], concurrency: int, startup_s: float) -> list[str]:
        """One token per task, each dying at the end of its wave (`wave_deadlines`)."""
        ends = wave_deadlines(self.opened, len(tasks), concurrency, self.settings.task_timeout_s, startup_s)
        return [self.mint(task, end) for task, end in zip(tasks, ends, strict=True)]

    # ------------------------------------------------------------------ admission
    def refuse(self, kind: str, message: str) -> Refused:
        with self.lock:
            self.usage.refused += 1
            self.usage.refusals[kind] = self.usage.refusals.get(kind, 0) + 1
        return Refused(kind, message)

    def admit(self, entry: TaskToken, call: ModelCall) -> Admitted:
        """Let a call through or raise Refused (counted). A call let through holds its place in the call
        budget and its prompt's estimated tokens in the token budget until it is answered or released
        (its reply's tokens are counted then: the last call may overshoot by one reply)."""
        s = self.settings
        chars = len(call.system) + len(call.prompt)
        estimate = estimate_tokens(call.system) + estimate_tokens(call.prompt)
        with self.lock:
            now = time.monotonic()
            why: tuple[str, str] | None = None
            u = self.usage
            ends = [entry.deadline, self.deadline]
            if entry.first_call is not None:
                ends.append(entry.first_call + s.task_timeout_s)
            deadline = min(ends)
            if self.closed or now >= self.deadline:
                why = ("session_closed", "the evaluation's session is closed: no more model calls")
            elif entry.ended:
                why = ("task_ended", "this task has ended: its token is no longer valid")
            elif now >= deadline:
                why = ("task_expired", f"this task ran past its {s.task_timeout_s:g} s timeout")
            elif chars > s.max_prompt_chars:
                why = ("prompt_size", f"the prompt has {chars} characters; at most {s.max_prompt_chars} "
                       "are allowed per call")  # fmt: skip
            elif estimate > s.max_prompt_tokens:
                why = ("prompt_size", f"the prompt has about {estimate} tokens; at most "
                       f"{s.max_prompt_tokens} are allowed per call")  # fmt: skip
            elif u.calls + u.errors + self.in_flight >= s.max_calls:
                why = ("calls", f"the candidate's budget of {s.max_calls} model calls is spent")
            elif s.max_usd is not None and u.usd >= s.max_usd:
                why = ("usd", f"the candidate's budget of ${s.max_usd:g} is spent")
            elif u.tokens + self.in_flight_tokens + estimate > s.max_tokens_per_eval:
                why = ("tokens", f"the candidate's budget of {s.max_tokens_per_eval} tokens is spent")
            elif u.calls == 0 and u.errors >= FAILING_START:
                # An endpoint that failed every call so far is down: the remaining tasks fail fast instead
                # of each waiting through the SDK's retries.
                why = ("endpoint_down", f"the inner model failed its first {u.errors} calls")
            if why is None:
                if entry.first_call is None:
                    entry.first_call = now
                    deadline = min(deadline, now + s.task_timeout_s)
                self.in_flight += 1
                self.in_flight_tokens += estimate
                self.log.append((entry.task, call.temperature, call.system[:4000]))
                return Admitted(deadline, estimate)
        raise self.refuse(*why)

    def release(self, admitted: Admitted) -> None:
        with self.lock:
            self.in_flight -= 1
            self.in_flight_tokens -= admitted.reserved

    # ------------------------------------------------------------------ connections and closing
    def over(self) -> bool:
        """Closed, or past its deadline (the closing timer may not have fired yet)."""
        return self.closed or time.monotonic() >= self.deadline

    def attach(self, conn: socket.socket) -> bool:
        with self.lock:
            if self.closed:
                return False
            self.connections.add(conn)
            return True

    def detach(self, conn: socket.socket) -> None:
        with self.lock:
            self.connections.discard(conn)

    def close(self) -> None:
        """No call is served after this: its calls are refused and open connections shut (idempotent).
        The tokens stay known until the session's block ends, so that late calls are counted here."""
        with self.lock:
            self.closed = True
            conns, self.connections = list(self.connections), set()
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class InnerModelProxy:
    """Start once per target; open a `session()` per sandbox run; `shared_dir` goes to the sandbox."""

    def __init__(self, endpoint: ModelEndpoint, settings: ProxySettings | None = None) -> None:
        self.endpoint = endpoint
        self.settings = settings or ProxySettings()
        self.bucket = TokenBucket(self.settings.requests_per_s, self.settings.burst)
        self.tokens: dict[str, TaskToken] = {}
        self.stray = 0
        """Calls refused for a token no live session holds: they cannot be told apart by session, so each
        session counts those made while it was open (an AgentRunner opens one at a time)."""
        self.json_mode = self.settings.json_mode
        self._lock = threading.Lock()
        self.slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self._client: Any = None
        self._server: socketserver.ThreadingUnixStreamServer | None = None
        self._dir: Path | None = None

    @property
    def shared_dir(self) -> str:
        assert self._dir is not None, "the proxy is not started"
        return str(self._dir)

    @property
    def socket_path(self) -> str:
        return str(Path(self.shared_dir) / "inner.sock")

    def start(self) -> InnerModelProxy:
        if self._server is not None:
            return self
        base = tempfile.gettempdir()
        # A Unix socket's path must fit in 108 bytes: a long TMPDIR falls back to /tmp.
        self._dir = Path(tempfile.mkdtemp(prefix="disco-inner-", dir=base if len(base) < 64 else "/tmp"))
        self._dir.chmod(0o755)  # the sandbox's own uid must reach the socket
        handler = type("Handler", (_Handler,), {"proxy": self})
        server = _Server(self.socket_path, handler)
        server.daemon_threads = True
        os.chmod(self.socket_path, 0o777)  # connect() needs write permission on the socket file
        threading.Thread(
            target=server.serve_forever, args=(0.1,), name="disco-inner-proxy", daemon=True
        ).start()
        self._server = server
        return self

    @contextlib.contextmanager
    def session(
        self, settings: ProxySettings | None = None, wall_s: float | None = None
    ) -> Iterator[Session]:
        """A session for one sandbox run, closed at `wall_s` seconds or when the block ends, whichever is
        first; its tokens are refused from then on."""
        session = Session(self, settings or self.settings, wall_s)
        with self._lock:
            session._stray_at_open = self.stray
        if wall_s is not None:
            session._timer = threading.Timer(max(0.0, wall_s), session.close)
            session._timer.daemon = True
            session._timer.start()
        try:
            yield session
        finally:
            if session._timer is not None:
                session._timer.cancel()
            session.close()
            with self._lock:
                for token in session.tokens:
                    self.tokens.pop(token, None)
                strays = self.stray - session._stray_at_open
            if strays:
                with session.lock:
                    u = session.usage
                    u.refused += strays
                    u.refusals["unknown_token"] = u.refusals.get("unknown_token", 0) + strays

    def _register(self, token: str, entry: TaskToken) -> None:
        with self._lock:
            self.tokens[token] = entry

    def lookup(self, token: Any) -> TaskToken | None:
        """The live token's entry, or None (unknown, forged, of a closed session)."""
        if not isinstance(token, str):
            return None
        with self._lock:
            return self.tokens.get(token)

    def close(self) -> None:
        with self._lock:
            sessions = {id(e.session): e.session for e in self.tokens.values()}
        for session in sessions.values():
            session.close()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
        if self._client is not None:
            self._client.close()
            self._client = None

    # ------------------------------------------------------------------ one request
    def answer(self, request: dict[str, Any], conn: socket.socket | None = None) -> dict[str, Any] | None:
        """The reply to one request (None: the session closed meanwhile, nothing may be sent)."""
        entry = self.lookup(request.get("token"))
        if entry is None:
            if request.get("op") != "end":  # ending a dead token changes nothing: not a refused call
                with self._lock:
                    self.stray += 1
            return {"ok": False, "error": "not a live task token: model calls are refused"}
        session = entry.session
        try:
            call = ModelCall.model_validate(request)
        except ValidationError as exc:
            fields = sorted({str(e["loc"][0]) for e in exc.errors() if e["loc"]})
            message = f"the request is malformed or has unknown fields ({', '.join(fields)[:200]})"
            return {"ok": False, "error": str(session.refuse("bad_request", message))}
        if call.op == "end":
            with session.lock:
                entry.ended = True
            return {"ok": True}
        if conn is not None and not session.attach(conn):
            message = "the evaluation's session is closed: no more model calls"
            return {"ok": False, "error": str(session.refuse("session_closed", message))}
        try:
            return self._forward(session, entry, call)
        finally:
            if conn is not None:
                session.detach(conn)

    def _forward(self, session: Session, entry: TaskToken, call: ModelCall) -> dict[str, Any] | None:
        try:
            admitted = session.admit(entry, call)
        except Refused as exc:
            return {"ok": False, "error": str(exc)}
        if not self.bucket.take(admitted.deadline):
            session.release(admitted)
            return {"ok": False, "error": str(session.refuse("rate", "the rate limit left no room before "
                                                             "the task's timeout"))}  # fmt: skip
        import openai

        try:
            content, usage = self._call(call, max(0.5, admitted.deadline - time.monotonic()) + GRACE_S)
        except (openai.OpenAIError, ValueError, LookupError) as exc:  # this call's failure, reported to it
            status = getattr(exc, "status_code", None)
            shown = f"the inner model failed: {type(exc).__name__}" + (f" (HTTP {status})" if status else "")
            with session.lock:
                session.in_flight -= 1
                session.in_flight_tokens -= admitted.reserved
                session.usage.errors += 1
                session.usage.last_error = self.redact(f"{type(exc).__name__}: {exc}")[:ERROR_CHARS]
            return None if session.over() else {"ok": False, "error": shown}
        except BaseException:  # anything else still frees its place in the budget, then propagates
            session.release(admitted)
            raise
        estimated = usage is None
        if usage is None:
            usage = (estimate_tokens(call.system) + estimate_tokens(call.prompt), estimate_tokens(content))
        with session.lock:  # released and counted at once: a concurrent task cannot slip past the budget
            session.in_flight -= 1
            session.in_flight_tokens -= admitted.reserved
            u = session.usage
            u.calls += 1
            u.estimated_calls += estimated
            u.prompt_tokens += usage[0]
            u.completion_tokens += usage[1]
            e = self.endpoint
            u.usd += ((e.usd_per_mtok_in or 0.0) * usage[0] + (e.usd_per_mtok_out or 0.0) * usage[1]) / 1e6
        if session.over():  # answered after the deadline: counted, never served
            return None
        return {"ok": True, "content": content}

    def redact(self, text: str) -> str:
        """`text` without the endpoint's key, nor anything the project's redaction knows as a secret
        (secret-looking environment values, registered keys, key and bearer shapes)."""
        from sandbox.redact import redact

        key = self.endpoint.api_key.get_secret_value() if self.endpoint.api_key else ""
        if key:
            text = text.replace(key, "[redacted]")
        text = re.sub(r"(?i)bearer\s+\S+", "Bearer [redacted]", text)
        return redact(text)

    def client(self) -> Any:
        if self._client is None:
            import openai

            e = self.endpoint
            key = e.api_key.get_secret_value() if e.api_key else "not-needed"
            self._client = openai.OpenAI(
                api_key=key, base_url=e.base_url or OPENAI_URL, timeout=e.timeout_s, max_retries=e.max_retries
            )
        return self._client

    def _call(self, call: ModelCall, time_left: float) -> tuple[str, tuple[int, int] | None]:
        """The model's text and (prompt, completion) tokens, None when the server reported no usage."""
        import openai

        e = self.endpoint
        kwargs: dict[str, Any] = {
            "model": e.model,
            "messages": [
                {"role": "system", "content": call.system},
                {"role": "user", "content": call.prompt},
            ],
        }
        if e.temperature is not None:  # None: the model takes only its own default (reasoning models)
            t = call.temperature if call.temperature is not None else e.temperature
            kwargs["temperature"] = min(max(t, 0.0), self.settings.max_temperature)
        if e.max_tokens is not None:
            kwargs["max_tokens"] = e.max_tokens
        if call.seed is not None:
            kwargs["seed"] = call.seed
        client = self.client().with_options(timeout=min(e.timeout_s, time_left))
        try:
            fmt = {"response_format": {"type": "json_object"}} if self.json_mode else {}
            reply = client.chat.completions.create(**kwargs, **fmt)
        except openai.BadRequestError as exc:
            if not self.json_mode or "response_format" not in str(exc):
                raise
            self.json_mode = False  # a server without JSON mode: the framework parses JSON from text
            reply = client.chat.completions.create(**kwargs)
        content = (reply.choices[0].message.content if reply.choices else "") or ""
        usage = reply.usage
        if usage is None or not usage.prompt_tokens:
            return content, None
        return content, (usage.prompt_tokens or 0, usage.completion_tokens or 0)


class _Server(socketserver.ThreadingUnixStreamServer):
    """A listen backlog for every task of a wave at once: with socketserver's default of 5, the sixth
    simultaneous connect() on a Unix socket fails with EAGAIN instead of waiting."""

    request_queue_size = 128


class _Handler(socketserver.StreamRequestHandler):
    proxy: InnerModelProxy
    timeout = READ_TIMEOUT_S

    def handle(self) -> None:
        if not self.proxy.slots.acquire(blocking=False):
            with self.proxy._lock:
                self.proxy.stray += 1
            return
        try:
            self._serve()
        finally:
            self.proxy.slots.release()

    def _serve(self) -> None:
        try:
            line = self.rfile.readline(MAX_REQUEST_BYTES)
        except OSError:  # nothing sent within READ_TIMEOUT_S
            line = b""
        try:
            request = json.loads(line)
            if not isinstance(request, dict):
                raise ValueError("not an object")
        except ValueError:
            with self.proxy._lock:
                self.proxy.stray += 1
            reply: dict[str, Any] | None = {
                "ok": False,
                "error": "the request is not one JSON object on one line",
            }
        else:
            reply = self.proxy.answer(request, self.connection)
        if reply is None:
            return
        with contextlib.suppress(OSError):  # the task was killed at its deadline: nobody to answer
            self.wfile.write(json.dumps(reply).encode() + b"\n")
