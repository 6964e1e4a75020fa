"""The inner agents' only way to a model: a server on a Unix socket in the PARENT process.

Sandboxed agents have no network and no key; each model call is one JSON line over the socket (see
framework._ask). Here it gets the configured inner model (never the agent's choice: ADAS hard-wired one
model into every agent), a temperature cap, a token-bucket rate limit shared by every task, the per-task
timeout and the candidate's budget of calls and USD, and its tokens and cost are counted per candidate.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import socketserver
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from targets.base import ModelEndpoint

MAX_REQUEST_BYTES = 2 << 20
FAILING_START = 3
"""Failed calls, with none answered, after which a session's calls are refused at once."""
OPENAI_URL = "https://api.openai.com/v1"


class ProxySettings(BaseModel):
    """Limits that the proxy applies to every candidate's inner-model calls."""

    requests_per_s: float = Field(4.0, gt=0)
    """Token-bucket refill rate shared by all tasks (the endpoint's rate limit, not the candidate's)."""
    burst: int = Field(8, ge=1)
    task_timeout_s: float = Field(120.0, gt=0)
    """Seconds from a task's first model call after which its calls are refused."""
    max_calls: int = Field(2000, ge=1)
    """Model calls one candidate may make in one evaluation (ADAS's debate makes ~7 per task)."""
    max_usd: float | None = None
    """Cost one candidate may spend in one evaluation, when the inner model's prices are set."""
    max_temperature: float = Field(1.2, ge=0)
    json_mode: bool = True
    """Ask for `response_format={"type": "json_object"}`; dropped by itself when the server refuses it."""


class Usage(BaseModel):
    """One candidate's calls through the proxy."""

    calls: int = 0
    """Calls answered by the model."""
    errors: int = 0
    """Calls the model failed (timeout, HTTP error)."""
    refused: int = 0
    """Calls refused here (budget, task timeout, rate limit, unknown session)."""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    usd: float = 0.0
    last_error: str = ""


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


class Session:
    """One candidate's evaluation (or check): its token, budget and usage."""

    def __init__(self, settings: ProxySettings) -> None:
        self.token = secrets.token_hex(16)
        self.settings = settings
        self.usage = Usage()
        self.task_start: dict[str, float] = {}
        self.in_flight = 0
        self.log: list[tuple[str, float | None, str]] = []
        """(task, temperature asked for, system prompt) of every admitted call: the candidate's call pattern,
        which its behavioural fingerprint is made of."""
        """Calls admitted and not yet answered: counted against the budget, so that concurrent tasks
        cannot overshoot it."""
        self.lock = threading.Lock()

    def admit(self, task: str) -> tuple[float, str]:
        """(deadline, "") when a call may go ahead, else (0, why not)."""
        s = self.settings
        with self.lock:
            start = self.task_start.setdefault(task, time.monotonic())
            if self.usage.calls + self.usage.errors + self.in_flight >= s.max_calls:
                return 0.0, f"the candidate's budget of {s.max_calls} model calls is spent"
            if s.max_usd is not None and self.usage.usd >= s.max_usd:
                return 0.0, f"the candidate's budget of ${s.max_usd:g} is spent"
            if self.usage.calls == 0 and self.usage.errors >= FAILING_START:
                # An endpoint that failed every call so far is down: the remaining tasks fail fast instead
                # of each waiting through the SDK's retries.
                return (
                    0.0,
                    f"the inner model failed its first {self.usage.errors} calls: {self.usage.last_error}",
                )
            deadline = start + s.task_timeout_s
            if time.monotonic() >= deadline:
                return 0.0, f"task {task} ran past its {s.task_timeout_s:g} s timeout"
            self.in_flight += 1
        return deadline, ""

    def release(self) -> None:
        with self.lock:
            self.in_flight -= 1


class InnerModelProxy:
    """Start once per target; open a `session()` per candidate run; `shared_dir` goes to the sandbox."""

    def __init__(self, endpoint: ModelEndpoint, settings: ProxySettings | None = None) -> None:
        self.endpoint = endpoint
        self.settings = settings or ProxySettings()
        self.bucket = TokenBucket(self.settings.requests_per_s, self.settings.burst)
        self.sessions: dict[str, Session] = {}
        self.json_mode = self.settings.json_mode
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
        server = socketserver.ThreadingUnixStreamServer(self.socket_path, handler)
        server.daemon_threads = True
        os.chmod(self.socket_path, 0o777)  # connect() needs write permission on the socket file
        threading.Thread(
            target=server.serve_forever, args=(0.1,), name="disco-inner-proxy", daemon=True
        ).start()
        self._server = server
        return self

    @contextlib.contextmanager
    def session(self, settings: ProxySettings | None = None) -> Iterator[Session]:
        """A session for one sandbox run; its calls are refused once it is closed."""
        session = Session(settings or self.settings)
        self.sessions[session.token] = session
        try:
            yield session
        finally:
            self.sessions.pop(session.token, None)

    def close(self) -> None:
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

    # ------------------------------------------------------------------ one call
    def answer(self, request: dict[str, Any]) -> dict[str, Any]:
        session = self.sessions.get(str(request.get("session")))
        if session is None:
            return {"ok": False, "error": "unknown or closed session: model calls are refused"}
        task = str(request.get("task", ""))
        deadline, why = session.admit(task)
        if not why:
            asked = request.get("temperature")
            with session.lock:
                temperature = float(asked) if isinstance(asked, int | float) else None
                session.log.append((task, temperature, str(request.get("system", ""))[:4000]))
        if not why and not self.bucket.take(deadline):
            session.release()
            why = "the rate limit left no room before the task's timeout"
        if why:
            with session.lock:
                session.usage.refused += 1
            return {"ok": False, "error": why}
        import openai

        try:
            content, usage = self._call(request, max(1.0, deadline - time.monotonic()))
        except (openai.OpenAIError, ValueError, LookupError) as exc:  # this call's failure, reported to it
            message = f"the inner model failed: {type(exc).__name__}: {str(exc)[:300]}"
            with session.lock:
                session.in_flight -= 1
                session.usage.errors += 1
                session.usage.last_error = message
            return {"ok": False, "error": message}
        except BaseException:  # anything else still frees its place in the budget, then propagates
            session.release()
            raise
        with session.lock:  # released and counted at once: a concurrent task cannot slip past the budget
            session.in_flight -= 1
            u = session.usage
            u.calls += 1
            u.prompt_tokens += usage[0]
            u.completion_tokens += usage[1]
            e = self.endpoint
            u.usd += ((e.usd_per_mtok_in or 0.0) * usage[0] + (e.usd_per_mtok_out or 0.0) * usage[1]) / 1e6
        return {"ok": True, "content": content}

    def client(self) -> Any:
        if self._client is None:
            import openai

            e = self.endpoint
            key = e.api_key.get_secret_value() if e.api_key else "not-needed"
            self._client = openai.OpenAI(
                api_key=key, base_url=e.base_url or OPENAI_URL, timeout=e.timeout_s, max_retries=e.max_retries
            )
        return self._client

    def _call(self, request: dict[str, Any], time_left: float) -> tuple[str, tuple[int, int]]:
        import openai

        e = self.endpoint
        kwargs: dict[str, Any] = {
            "model": e.model,
            "messages": [
                {"role": "system", "content": str(request.get("system", ""))},
                {"role": "user", "content": str(request.get("prompt", ""))},
            ],
        }
        asked = request.get("temperature")
        if e.temperature is not None:  # None: the model takes only its own default (reasoning models)
            t = float(asked) if isinstance(asked, int | float) else e.temperature
            kwargs["temperature"] = min(max(t, 0.0), self.settings.max_temperature)
        if e.max_tokens is not None:
            kwargs["max_tokens"] = e.max_tokens
        if isinstance(request.get("seed"), int):
            kwargs["seed"] = request["seed"]
        client = self.client().with_options(timeout=min(e.timeout_s, time_left))
        try:
            fmt = {"response_format": {"type": "json_object"}} if self.json_mode else {}
            reply = client.chat.completions.create(**kwargs, **fmt)
        except openai.BadRequestError as exc:
            if not self.json_mode or "response_format" not in str(exc):
                raise
            self.json_mode = False  # a server without JSON mode: the framework parses JSON from text
            reply = client.chat.completions.create(**kwargs)
        content = reply.choices[0].message.content if reply.choices else ""
        usage = reply.usage
        tokens = (usage.prompt_tokens or 0, usage.completion_tokens or 0) if usage else (0, 0)
        return content or "", tokens


class _Handler(socketserver.StreamRequestHandler):
    proxy: InnerModelProxy

    def handle(self) -> None:
        line = self.rfile.readline(MAX_REQUEST_BYTES)
        try:
            request = json.loads(line)
            if not isinstance(request, dict):
                raise ValueError("not an object")
        except ValueError:
            reply: dict[str, Any] = {"ok": False, "error": "the request is not one JSON object on one line"}
        else:
            reply = self.proxy.answer(request)
        with contextlib.suppress(OSError):  # the task was killed at its deadline: nobody to answer
            self.wfile.write(json.dumps(reply).encode() + b"\n")
