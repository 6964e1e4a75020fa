"""A scripted OpenAI-compatible HTTP server on loopback, so that tests run the real client code.

The process edge of the model layer is HTTP: this server stands in for OpenAI, vLLM, Ollama or llama.cpp.
It answers `POST /v1/chat/completions` (plain and SSE streaming), `POST /v1/embeddings` and
`GET /v1/models`, from a queue of scripted replies, and records every request body.

    with FakeOpenAI() as server:
        server.script([{"thought": "t", "name": "n", "code": "c"}, Error(500)])
        model = ChatOpenAI(base_url=server.base_url, api_key="x", model="fake")

Script items: a `str` (text content), a `dict` (a JSON object sent as content text), `Text`, `Empty`,
`Refusal`, `ToolCalls`, `Error` (an HTTP status with an OpenAI-style body), `Delay` (sleep, then
answer), `Trickle` (stream slowly, or stall), or a callable `(request_json) -> item` for dynamic answers.
"""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, TypeAlias


@dataclass(frozen=True)
class Text:
    """A plain assistant reply; malformed JSON is just text that does not parse."""

    content: str
    finish_reason: str = "stop"


def Empty() -> Text:
    """An empty assistant reply (what some local servers send when generation fails)."""
    return Text("")


@dataclass(frozen=True)
class Refusal:
    """A refusal in OpenAI's structured-output form: no content, a `refusal` field."""

    text: str


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: dict[str, Any] | str
    id: str = field(default_factory=lambda: f"call_{uuid.uuid4().hex[:12]}")


@dataclass(frozen=True)
class ToolCalls:
    """An assistant turn that calls tools instead of (or besides) answering in text."""

    calls: list[ToolCall]
    content: str = ""


@dataclass(frozen=True)
class Error:
    """An HTTP error with an OpenAI-style body; 429 and 5xx carry retry headers so the SDK retries at once."""

    status: int
    message: str = "scripted error"
    type: str | None = None
    """OpenAI's error type; derived from the status when not given."""
    code: str | None = None
    param: str | None = None
    retry_after_ms: int = 10


@dataclass(frozen=True)
class Delay:
    """Sleep before answering with `then` (a client timeout shorter than `seconds` never sees it)."""

    seconds: float
    then: Item = "ok"


@dataclass(frozen=True)
class Trickle:
    """A reply streamed slowly, 8 characters a delta every `gap_s` (a slow but working server), that stops
    for `stall_s` after `stall_after` deltas (a stuck one). Unstreamed, it is sent whole when done."""

    content: str | dict[str, Any]
    gap_s: float = 0.1
    stall_after: int | None = None
    stall_s: float = 0.0

    def text(self) -> str:
        return self.content if isinstance(self.content, str) else json.dumps(self.content)


Item: TypeAlias = (
    "str | dict[str, Any] | Text | Refusal | ToolCalls | Error | Delay | Trickle "
    "| Callable[[dict[str, Any]], Item]"
)
Responder: TypeAlias = Callable[[dict[str, Any]], Any]

JSON_SCHEMA_UNSUPPORTED = "'response_format' of type 'json_schema' is not supported with this model"


def count_tokens(text: str) -> int:
    """A deterministic stand-in for a tokenizer: a token per four characters, at least one."""
    return len(text) // 4 + 1


def _message_text(message: dict[str, Any]) -> str:
    content = message.get("content") or ""
    if isinstance(content, list):  # content blocks: [{"type": "text", "text": ...}]
        content = "".join(b.get("text", "") for b in content if isinstance(b, dict))
    return str(content)


def free_port() -> int:
    """A loopback port with nothing listening on it (for unreachable-endpoint tests, and our own bind)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class FakeOpenAI:
    """A real HTTP server in a daemon thread, scripted with replies; use as a context manager."""

    def __init__(self, *, reject_json_schema: bool = False, model: str = "fake-model") -> None:
        self.reject_json_schema = reject_json_schema
        """Answer 400 to `response_format` of type json_schema, like servers without JSON-schema support."""
        self.reject: dict[str, int] = {}
        """More refusals, by what the request asks for: a `response_format` type ("json_schema",
        "json_object") or "tools" (any tool call). The value is the HTTP status (llama-cpp-python answers
        500 to a response format it does not know)."""
        self.ignore_tool_choice_auto = False
        """True: offered tools without a named `tool_choice`, answer in text (as llama-cpp-python's
        chatml format does), even to the probe."""
        self.empty_stream_errors = False
        """True: a streamed request that fails answers 200 with an empty event stream, as llama-cpp-python
        does for a prompt over its context (the unstreamed request gets the error)."""
        self.streamed = 0
        """Streamed events written so far, all replies together (a client that hangs up stops the count)."""
        self.caps: tuple[str, ...] = ()
        """The cap fields this server honours ("max_tokens", "max_completion_tokens"): a longer reply is
        cut there with finish_reason "length". Empty: caps are ignored (scripted replies stay whole)."""
        self.context_window: int | None = None
        """A context window in tokens (count_tokens): a longer prompt is refused with HTTP 400 and
        llama-cpp-python's message ("Requested tokens (N) exceed context window of W"); with
        `window_counts_cap`, the prompt plus the request's cap must fit, and the refusal is vLLM's."""
        self.window_counts_cap = False
        self.model_fields: dict[str, Any] = {}
        """More fields of the model's entry in /v1/models (vLLM states `max_model_len` there)."""
        self.model = model
        self.requests: list[dict[str, Any]] = []
        """Every chat-completion request body, in arrival order (rejected ones included), except probes."""
        self.probes: list[dict[str, Any]] = []
        """The capability probe's requests (agent.models.probe), answered by the server itself like a real
        server would, whatever the script: a run probes a new endpoint before its first step."""
        self.count_reply = " ".join(str(n) for n in range(1, 301))
        """What it answers the probe's cap request (a long story asked for): far longer than the probe's
        cap, unless a test makes it a short reply that ends by itself (as a small sampled model's can)."""
        self.paths: list[str] = []
        """Every request as "METHOD /path"."""
        self.default: Responder | None = None
        """Answers when the script is empty; without one an empty script is a 500 (a test bug)."""
        self.report_usage = True
        """False: replies carry no `usage` (as some local servers), so that clients must estimate."""
        self._queue: deque[Item] = deque()
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ---------------------------------------------------------------------------------------

    def start(self) -> FakeOpenAI:
        handler = type("Handler", (_Handler,), {"fake": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        # a short poll interval: stop() returns within 50 ms instead of the default 0.5 s
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, args=(0.05,), name="fake-openai", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._httpd is not None, "the server is not started"
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    # --- scripting -----------------------------------------------------------------------------------------

    def script(self, items: Iterable[Item]) -> FakeOpenAI:
        """Queue replies, one per chat-completion request, in order."""
        with self._lock:
            self._queue.extend(items)
        return self

    @property
    def pending(self) -> int:
        """Scripted replies not yet used."""
        with self._lock:
            return len(self._queue)

    def _overflow(self, body: dict[str, Any]) -> Error | None:
        if self.context_window is None:
            return None
        prompt = sum(count_tokens(_message_text(m)) for m in body.get("messages", []))
        cap = body.get("max_tokens") or body.get("max_completion_tokens") or 0
        if self.window_counts_cap and prompt + cap > self.context_window:
            return Error(
                400,
                f"This model's maximum context length is {self.context_window} tokens. However, you "
                f"requested {prompt + cap} tokens ({prompt} in the messages, {cap} in the completion).",
            )
        if prompt >= self.context_window:
            return Error(400, f"Requested tokens ({prompt}) exceed context window of {self.context_window}")
        return None

    def _next(self, body: dict[str, Any]) -> Item:
        with self._lock:
            probe = _probe_answer(body, self.count_reply)
            (self.probes if probe is not None else self.requests).append(body)
            if self.reject_json_schema and (body.get("response_format") or {}).get("type") == "json_schema":
                return Error(
                    400, JSON_SCHEMA_UNSUPPORTED, type="invalid_request_error", param="response_format"
                )
            fmt = (body.get("response_format") or {}).get("type")
            if self.reject.get(fmt):
                message = (
                    f"1 validation error: body.response_format.type: Input should be 'text', not {fmt!r}"
                )
                return Error(self.reject[fmt], message)
            if "tools" in body and self.reject.get("tools"):
                return Error(self.reject["tools"], "tools are not supported by this server")
            if (overflow := self._overflow(body)) is not None:
                return overflow
            if body.get("tool_choice") in (None, "auto") and "tools" in body and self.ignore_tool_choice_auto:
                return "I would look that up, but here is my answer in text."
            if probe is not None:
                return probe
            if self._queue:
                return self._queue.popleft()
        if self.default is not None:
            return self.default(body)
        return Error(500, "the fake server's script is empty")


class _Handler(BaseHTTPRequestHandler):
    fake: FakeOpenAI  # set on the per-server subclass
    protocol_version = "HTTP/1.0"  # one request per connection: no keep-alive bookkeeping

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep pytest output clean

    # --- routing -------------------------------------------------------------------------------------------

    def do_GET(self) -> None:
        self.fake.paths.append(f"GET {self.path}")
        if self.path.rstrip("/").endswith("/models"):
            model = {"id": self.fake.model, "object": "model", "created": 0, "owned_by": "fake"}
            model |= self.fake.model_fields
            self._json(200, {"object": "list", "data": [model]})
        else:
            self._json(404, _error_body("not found", "invalid_request_error"))

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except json.JSONDecodeError:
            self._json(400, _error_body("the request body is not JSON", "invalid_request_error"))
            return
        if _probe_answer(body, self.fake.count_reply) is None:
            self.fake.paths.append(f"POST {self.path}")
        try:
            if self.path.endswith("/chat/completions"):
                self._chat(body)
            elif self.path.endswith("/embeddings"):
                self._embeddings(body)
            else:
                self._json(404, _error_body(f"no route {self.path}", "invalid_request_error"))
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a timeout test): nothing to answer

    # --- endpoints -----------------------------------------------------------------------------------------

    def _chat(self, body: dict[str, Any]) -> None:
        item = self.fake._next(body)
        while True:
            if isinstance(item, Delay):
                time.sleep(item.seconds)
                item = item.then
            elif callable(item) and not isinstance(item, type):
                item = item(body)
            else:
                break
        if isinstance(item, Error) and body.get("stream") and self.fake.empty_stream_errors:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            return
        if isinstance(item, Error):
            headers = {}
            if item.status == 429 or item.status >= 500:
                # The SDK treats Retry-After: 0 as absent and backs off ~0.5 s; retry-after-ms wins over it.
                headers = {"Retry-After": "0", "retry-after-ms": str(item.retry_after_ms)}
            err_type = item.type or _ERROR_TYPES.get(item.status, "invalid_request_error")
            self._json(item.status, _error_body(item.message, err_type, item.code, item.param), headers)
            return
        trickle = item if isinstance(item, Trickle) else None
        if trickle is not None:
            item = Text(trickle.text())
            if not body.get("stream"):
                time.sleep(trickle.gap_s * len(trickle.text()) / 8 + trickle.stall_s)
        message, finish = _assistant_message(item)
        cap = min((int(body[f]) for f in self.fake.caps if body.get(f) is not None), default=None)
        if (
            cap is not None
            and isinstance(message.get("content"), str)
            and count_tokens(message["content"]) > cap
        ):
            message["content"], finish = message["content"][: 4 * max(cap - 1, 0)], "length"
        prompt = sum(count_tokens(_message_text(m)) for m in body.get("messages", []))
        calls = message.get("tool_calls")
        completion = count_tokens(_message_text(message) + (json.dumps(calls) if calls else ""))
        usage = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }
        completion_id = f"chatcmpl-{uuid.uuid4().hex[:16]}"
        model = body.get("model") or self.fake.model
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            include_usage = include_usage and self.fake.report_usage
            self._stream(completion_id, model, message, finish, usage if include_usage else None, trickle)
            return
        self._json(
            200,
            {
                "id": completion_id,
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
                "usage": usage if self.fake.report_usage else None,
            },
        )

    def _stream(
        self,
        cid: str,
        model: str,
        message: dict[str, Any],
        finish: str,
        usage: dict[str, int] | None,
        trickle: Trickle | None = None,
    ) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()

        def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
            choice = {"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}
            return {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": 0,
                "model": model,
                "choices": [choice],
            }

        events: list[dict[str, Any]] = [chunk({"role": "assistant", "content": ""})]
        content = message.get("content") or ""
        for start in range(0, len(content), 8):  # several deltas, as a real server streams
            events.append(chunk({"content": content[start : start + 8]}))
        if message.get("refusal"):
            events.append(chunk({"refusal": message["refusal"]}))
        for i, call in enumerate(message.get("tool_calls") or []):
            head = {
                "index": i,
                "id": call["id"],
                "type": "function",
                "function": {"name": call["function"]["name"]},
            }
            head["function"]["arguments"] = ""
            events.append(chunk({"tool_calls": [head]}))
            args = call["function"]["arguments"]
            for start in range(0, len(args), 16):
                piece = {"index": i, "function": {"arguments": args[start : start + 16]}}
                events.append(chunk({"tool_calls": [piece]}))
        events.append(chunk({}, finish))
        if usage is not None:
            events.append(
                {
                    "id": cid,
                    "object": "chat.completion.chunk",
                    "created": 0,
                    "model": model,
                    "choices": [],
                    "usage": usage,
                }
            )
        for i, event in enumerate(events):
            if trickle is not None and i:
                time.sleep(trickle.gap_s)
                if i == trickle.stall_after:
                    time.sleep(trickle.stall_s)
            self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
            self.wfile.flush()
            self.fake.streamed += 1
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()

    def _embeddings(self, body: dict[str, Any]) -> None:
        self.fake.requests.append(body)
        inputs = body.get("input")
        texts = [inputs] if isinstance(inputs, str) else list(inputs or [])
        data = [{"object": "embedding", "index": i, "embedding": _embed(str(t))} for i, t in enumerate(texts)]
        tokens = sum(count_tokens(str(t)) for t in texts)
        self._json(
            200,
            {
                "object": "list",
                "data": data,
                "model": body.get("model", self.fake.model),
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            },
        )

    def _json(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)


def _probe_answer(body: dict[str, Any], count_reply: str = "") -> Item | None:
    """What a capable server answers to agent.models.probe's requests; None for any other request."""
    from agent.models.probe import JSON_REQUEST, LONG_REQUEST, TOOL_REQUEST

    messages = body.get("messages") or [{}]
    asked = str(messages[-1].get("content") or "")
    if asked.startswith(LONG_REQUEST):
        return count_reply
    if asked.startswith(TOOL_REQUEST):
        return ToolCalls([ToolCall("lookup", {"key": "alpha"})])
    if not asked.startswith(JSON_REQUEST):
        return None
    if body.get("tools"):
        return ToolCalls([ToolCall(body["tools"][0]["function"]["name"], {"answer": 4})])
    return {"answer": 4}


def _assistant_message(item: Any) -> tuple[dict[str, Any], str]:
    """The OpenAI `message` object and finish reason for a script item."""
    if isinstance(item, dict):
        item = Text(json.dumps(item))
    elif isinstance(item, str):
        item = Text(item)
    if isinstance(item, Text):
        return {"role": "assistant", "content": item.content}, item.finish_reason
    if isinstance(item, Refusal):
        return {"role": "assistant", "content": None, "refusal": item.text}, "stop"
    if isinstance(item, ToolCalls):
        calls = [
            {
                "id": c.id,
                "type": "function",
                "function": {
                    "name": c.name,
                    "arguments": c.arguments if isinstance(c.arguments, str) else json.dumps(c.arguments),
                },
            }
            for c in item.calls
        ]
        return {"role": "assistant", "content": item.content or None, "tool_calls": calls}, "tool_calls"
    raise TypeError(f"not a script item: {item!r}")


_ERROR_TYPES = {401: "authentication_error", 403: "permission_error", 429: "rate_limit_exceeded"}
_ERROR_TYPES |= {status: "server_error" for status in range(500, 600)}


def _error_body(
    message: str, type_: str, code: str | None = None, param: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def _embed(text: str, dims: int = 16) -> list[float]:
    """A deterministic unit-ish vector from the text's hash: equal texts embed equally."""
    digest = hashlib.sha256(text.encode()).digest()
    return [(b - 127.5) / 127.5 for b in digest[:dims]]
