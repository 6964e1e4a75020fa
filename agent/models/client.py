"""Structured answers from any OpenAI-compatible endpoint, through langchain-openai's ChatOpenAI.

One `ask` = one step of the loop: messages in, a validated pydantic object out, plus what it cost.
The server's JSON-schema mode is used where it works; otherwise (a 400 about `response_format`, or
text that is not JSON) the instance falls back for good to asking for JSON in the prompt. Either way a
reply that does not validate goes back to the model with the exact error, at most `fix_attempts`
times: bad output is the model's to fix, a dead endpoint is the run's to handle (`ModelError.kind`).
Replies are streamed: tokens arriving are the server's sign of life (a call times out on a stall, not
on its length), and the reply cap is enforced here as well as sent, for servers that ignore it.
"""

from __future__ import annotations

import json
import math
import random
import re
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from pydantic import BaseModel, ValidationError

from agent.models.base import CallUsage, ErrorKind, ModelError, UsageTotals
from agent.models.jsontext import (
    add_fix_round,
    add_schema_instruction,
    describe_validation_error,
    extract_json,
    strict_json_schema,
)
from agent.models.recording import Exchange, ExchangeLog, cached_answer
from agent.models.settings import ModelConfigError, ModelSettings

if TYPE_CHECKING:
    from langchain_core.messages import AIMessage
    from langchain_openai import ChatOpenAI

T = TypeVar("T", bound=BaseModel)
Mode = Literal["json_schema", "json_object", "function_calling", "prompt"]
LADDER: tuple[Mode, ...] = ("json_schema", "json_object", "prompt")
"""Auto mode's steps down when a server rejects a response format: each asks less of the server."""

# Words in a 400 that mean "this server cannot do JSON-schema output" rather than "this request is bad".
_SCHEMA_REJECTION = re.compile(r"response_format|json_schema|structured output|guided|grammar", re.I)
# A request longer than the server's context, and the window it names: llama-cpp-python "exceed context
# window of 8192", vLLM and OpenAI "maximum context length is 8192 tokens", llama.cpp "context size (8192".
_CONTEXT_OVERFLOW = re.compile(
    r"(?:context window of|maximum context length is|context size \(?|context length of)\s*(\d{3,7})", re.I
)
_PROMPT_TOKENS_SAID = re.compile(r"(\d+) in the messages|Requested tokens \((\d+)\)", re.I)
MIN_REPLY_TOKENS = 256
"""The least room for a reply worth asking for: a prompt that leaves less is too long."""


# --- one HTTP call ----------------------------------------------------------------------------------------


@dataclass
class _Reply:
    """What one HTTP call returned, before validation."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    args: dict[str, Any] | None = None  # the tool call's arguments (function-calling mode)
    refusal: str | None = None
    truncated: bool = False
    streamed_tokens: int = 0
    """Content pieces that arrived (a token each on llama.cpp and OpenAI): the count when usage is absent."""


class _ContextOverflow(Exception):
    """The server refused a request as longer than its context window, which it named."""

    def __init__(self, window: int, prompt_tokens: int | None) -> None:
        super().__init__(f"context window {window}")
        self.window = window
        self.prompt_tokens = prompt_tokens
        """The prompt's tokens as the server counted them, where its message says."""


class _Stalled(Exception):
    """No token arrived for timeout_s: before the first (`tokens` 0) or after `tokens` of them."""

    def __init__(self, tokens: int) -> None:
        super().__init__(f"stalled after {tokens} tokens")
        self.tokens = tokens


class _SchemaRejected(Exception):
    """The server refused JSON-schema output (HTTP 400 about response_format)."""


def _from_ai_message(msg: AIMessage, mode: Mode) -> _Reply:
    usage = msg.usage_metadata or {}
    reply = _Reply(
        text=str(msg.text),  # content blocks joined; "" for a tool-call-only turn
        prompt_tokens=int(usage.get("input_tokens", 0)),
        completion_tokens=int(usage.get("output_tokens", 0)),
        refusal=msg.additional_kwargs.get("refusal"),
        truncated=msg.response_metadata.get("finish_reason") == "length",
    )
    if mode == "function_calling":
        if msg.tool_calls:
            reply.args = msg.tool_calls[0]["args"]
            reply.text = json.dumps(reply.args)
        elif msg.invalid_tool_calls:
            reply.text = msg.invalid_tool_calls[0].get("args") or ""
    return reply


def _one_sentence(text: str, limit: int = 200) -> str:
    text = " ".join(str(text).split()).rstrip(".")
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --- the client -------------------------------------------------------------------------------------------


class StructuredModel:
    """A live model behind `ask(key, messages, schema)`, recording each exchange when given a log.

    With a log, a key that already has a successful exchange is answered from it (`cached=True`, no
    tokens): a resumed run never pays twice for a step whose answer it received. `on_call` sees every
    exchange, cached ones included (their usage says `cached=True`).
    """

    def __init__(
        self,
        settings: ModelSettings,
        log: ExchangeLog | None = None,
        on_call: Callable[[Exchange], None] | None = None,
        start_mode: Mode = "json_schema",
    ) -> None:
        """`start_mode`: where auto mode starts, e.g. what `disco models probe` found (agent.models.probe)."""
        if settings.offline:
            raise ModelConfigError(
                "The model is 'offline': there is no LLM to call; name a model to use one."
            )
        settings.check_usable()
        self.settings = settings
        self.log = log
        self.on_call = on_call
        self._lock = threading.Lock()
        self._totals = UsageTotals()
        self._mode: Mode = settings.structured if settings.structured != "auto" else start_mode
        self._llm: ChatOpenAI | None = None
        self._ask_llm: ChatOpenAI | None = None
        self.window: int | None = settings.context_tokens
        """The server's context window in tokens when known (set, probed, or learned from an overflow)."""
        self.chars_per_token = 3.0
        """For sizing prompts to the window: on the high side of tokens, lowered to what the server counted
        when an overflow says (a 135M model's tokenizer gives code about two characters a token)."""

    @property
    def totals(self) -> UsageTotals:
        """Running totals over every ask of this instance (a copy)."""
        with self._lock:
            return self._totals.model_copy()

    @property
    def mode(self) -> Mode:
        """How the next ask requests JSON; "auto" steps down LADDER for good at each rejection."""
        return self._mode

    def _step_down(self) -> Mode:
        at = LADDER.index(self._mode) if self._mode in LADDER else len(LADDER) - 1
        self._mode = LADDER[min(at + 1, len(LADDER) - 1)]
        return self._mode

    def chat_model(self) -> ChatOpenAI:
        """The underlying ChatOpenAI, configured from the settings, for tool-calling chat."""
        if self._llm is None:
            self._llm = build_chat_openai(self.settings)
        return self._llm

    # --- ask ---------------------------------------------------------------------------------------------

    def ask(self, key: str, messages: list[dict[str, str]], schema: type[T]) -> tuple[T, CallUsage]:
        """One validated answer for step `key`; raises ModelError when the endpoint or the model fails."""
        started = time.perf_counter()
        if self.log is not None and (hit := self._from_log(key, schema, started)) is not None:
            return hit
        conversation: list[dict[str, str]] = [dict(m) for m in messages]
        spent = _Spent(self.settings.model)
        try:
            answer = self._ask_live(conversation, schema, spent)
        except ModelError as err:
            err.usage = spent.usage(self.settings, started)
            self._finish(key, conversation, spent.last_text, None, err.usage, err)
            raise
        usage = spent.usage(self.settings, started)
        self._finish(key, conversation, spent.last_text, answer.model_dump(mode="json"), usage, None)
        return answer, usage

    def _from_log(self, key: str, schema: type[T], started: float) -> tuple[T, CallUsage] | None:
        assert self.log is not None
        ex = self.log.get(key)
        answer = cached_answer(ex, schema) if ex is not None else None
        if ex is None or answer is None:
            return None
        priced = self.settings.price(0, 0)
        usage = CallUsage(model=ex.model, usd=priced, latency_s=time.perf_counter() - started, cached=True)
        with self._lock:
            self._totals.add(usage)
        if self.on_call is not None:
            self.on_call(ex.model_copy(update={"usage": usage}))
        return answer, usage

    def _finish(
        self,
        key: str,
        conversation: list[dict[str, str]],
        reply: str,
        parsed: dict[str, Any] | None,
        usage: CallUsage,
        err: ModelError | None,
    ) -> None:
        with self._lock:
            self._totals.add(usage, failed=err is not None)
        ex = Exchange(
            key=key,
            model=self.settings.model,
            messages=conversation,
            reply=reply,
            parsed=parsed,
            usage=usage,
            error=err.message if err else None,
            error_kind=err.kind if err else None,
        )
        if self.log is not None:
            self.log.append(ex)
        if self.on_call is not None:
            self.on_call(ex)

    def _ask_live(self, conversation: list[dict[str, str]], schema: type[T], spent: _Spent) -> T:
        """Call, validate, send a bad reply back with its error; `conversation` grows with the fix rounds."""
        mode = self.mode
        if mode in ("prompt", "json_object"):
            add_schema_instruction(conversation, schema)
        kind: ErrorKind = "malformed"
        problem = ""
        attempt = overflows = 0
        while attempt <= self.settings.fix_attempts:
            try:
                reply = self._call(mode, conversation, schema, self._reply_cap(conversation))
            except _Stalled as stall:
                spent.add_stalled(conversation, stall.tokens, self.settings)
                raise self._stall_error(stall.tokens) from None
            except ModelError as err:
                spent.add_unreported(conversation, err.kind)
                raise
            except _ContextOverflow as over:  # refused before any generation: nothing spent
                overflows += 1
                said = _chars(conversation) / over.prompt_tokens if over.prompt_tokens else None
                denser = said is not None and said < self.chars_per_token
                if said is not None and denser:
                    self.chars_per_token = said
                learned = self.window is None or over.window < self.window
                if overflows > 3 or not (learned or denser):
                    raise self._too_long(self._prompt_tokens(conversation), over.window) from None
                self.window = over.window  # the next call is sized to it
                continue
            except _SchemaRejected as rejected:
                if self.settings.structured != "auto" or mode == "prompt":
                    raise self._error(
                        "refused", f"rejected {mode} output ({rejected}); set structured = 'prompt'"
                    ) from None
                before, mode = mode, self._step_down()  # for this instance: not a rejection per ask
                if before == "json_schema":
                    add_schema_instruction(conversation, schema)
                continue  # the rejected request produced nothing: not an attempt
            attempt += 1
            spent.add(reply, conversation)
            if reply.refusal:
                raise self._error("refused", f"refused to answer: {_one_sentence(reply.refusal)}")
            answer, kind, problem = self._validate(reply, schema)
            if answer is not None:
                return answer
            if (
                mode == "json_schema"
                and self.settings.structured == "auto"
                and kind == "malformed"
                and (reply.args is None and extract_json(reply.text) is None)
            ):
                # The server took response_format and ignored it: ask for JSON in the prompt from now on.
                self._mode = mode = "prompt"
                add_schema_instruction(conversation, schema)
            if attempt <= self.settings.fix_attempts:
                add_fix_round(conversation, reply.text, problem)
        what = "empty replies" if kind == "empty" else "no valid answer"
        tries = "1 attempt" if attempt == 1 else f"{attempt} attempts"
        raise self._error(kind, f"gave {what} in {tries}; last problem: {_one_sentence(problem, 300)}")

    def fits(self, messages: list[dict[str, str]]) -> bool:
        """Whether `messages` leave MIN_REPLY_TOKENS for the reply in the context window (True while the
        window is unknown: the server's refusal then teaches it)."""
        return self.window is None or self.window - self._prompt_tokens(messages) >= MIN_REPLY_TOKENS

    def _reply_cap(self, conversation: list[dict[str, str]]) -> int | None:
        """The cap for the next call: the configured one, lowered to what the context window leaves after
        the prompt; a prompt that leaves less than MIN_REPLY_TOKENS is too long (its caller may cut it)."""
        cap = self.settings.max_tokens
        if self.window is None:
            return cap
        prompt = self._prompt_tokens(conversation)
        room = self.window - prompt
        if room < MIN_REPLY_TOKENS:
            raise self._too_long(prompt, self.window)
        return room if cap is None or cap > room else cap

    def _prompt_tokens(self, conversation: list[dict[str, str]]) -> int:
        """A prompt's tokens for fitting the window, four a message for the chat template besides."""
        return sum(math.ceil(len(m.get("content") or "") / self.chars_per_token) + 4 for m in conversation)

    def _too_long(self, prompt: int, window: int) -> ModelError:
        return self._error(
            "too_long",
            f"has a context window of {window} tokens: a prompt of about {prompt} tokens leaves less than "
            f"{MIN_REPLY_TOKENS} for the reply (start the server with a larger context, e.g. llama.cpp's "
            "--n_ctx, or show fewer past attempts: k_best, k_similar, k_failures)",
        )

    def _validate(self, reply: _Reply, schema: type[T]) -> tuple[T | None, ErrorKind, str]:
        if reply.args is not None:
            data: dict[str, Any] | None = reply.args
        elif not reply.text.strip():
            return None, "empty", "the reply was empty"
        else:
            data = extract_json(reply.text)
        if data is None:
            cut = f" (it was cut off at max_tokens={self.settings.max_tokens})" if reply.truncated else ""
            return None, "malformed", f"the reply contains no complete JSON object{cut}"
        try:
            return schema.model_validate(data), "malformed", ""
        except ValidationError as err:
            return (
                None,
                "malformed",
                f"the JSON object does not match the schema:\n{describe_validation_error(err)}",
            )

    def _call(
        self, mode: Mode, conversation: list[dict[str, str]], schema: type[BaseModel], cap: int | None
    ) -> _Reply:
        """One call, streamed, with reply cap `cap`; connection failures, 429 and 5xx are re-sent up to
        max_retries times, a stall never (a server that handles one request at a time would still be
        working on it). Transport failures become ModelError."""
        import openai

        retries = 0
        while True:
            try:
                return self._stream(mode, conversation, schema, cap)
            except openai.APITimeoutError:  # no first token (the SDK's timeout covers the headers)
                raise _Stalled(0) from None
            except openai.APIStatusError as exc:
                # A server that cannot do this response format says so with 400, 422 or (llama-cpp-python's
                # request validation) 500: the body decides, not the status.
                if (overflow := _CONTEXT_OVERFLOW.search(exc.message)) is not None:
                    said = _PROMPT_TOKENS_SAID.search(exc.message)
                    counted = int(said.group(1) or said.group(2)) if said else None
                    raise _ContextOverflow(int(overflow.group(1)), counted) from exc
                if mode in ("json_schema", "json_object") and _SCHEMA_REJECTION.search(exc.message):
                    raise _SchemaRejected(_one_sentence(exc.message)) from exc
                if not _resendable(exc) or retries >= self.settings.max_retries:
                    raise self._from_sdk(exc, retries) from None
            except openai.APIConnectionError as exc:  # the request never reached a server: safe to re-send
                if retries >= self.settings.max_retries:
                    raise self._from_sdk(exc, retries) from None
            except openai.OpenAIError as exc:
                raise self._from_sdk(exc, retries) from None
            retries += 1
            time.sleep(_retry_wait(retries))

    def _stream(
        self, mode: Mode, conversation: list[dict[str, str]], schema: type[BaseModel], cap: int | None
    ) -> _Reply:
        """One streamed HTTP call. Arriving tokens are the server's sign of life: the timeout is a stall (no
        token for timeout_s), not a total; the cap is enforced here too, for servers that ignore it."""
        import httpx
        import openai

        runnable, kwargs = _request(self._structured_llm(cap), mode, schema)
        whole: Any = None
        tokens = chars = 0
        cut = False
        chunks = runnable.stream(conversation, **kwargs)
        try:
            for chunk in chunks:
                pieces = len(chunk.text) + sum(len(c.get("args") or "") for c in chunk.tool_call_chunks)
                if pieces:
                    if cap is not None and max(tokens + 1, _approx_tokens_of(chars + pieces)) > cap:
                        cut = True  # a server that ignores the cap: this call ends here
                        break
                    tokens, chars = tokens + 1, chars + pieces
                whole = chunk if whole is None else whole + chunk
        except (httpx.TimeoutException, openai.APITimeoutError):  # the SDK wraps a read timeout mid-stream
            raise _Stalled(tokens) from None
        except httpx.TransportError as exc:  # the server went away mid-reply
            # Only openai 2, on httpx, lets this through (openai 3's stream wraps httpx2's errors itself as
            # APIConnectionError), so the request is httpx's; openai 3's stubs name httpx2.Request.
            request = httpx.Request("POST", self.settings.endpoint)
            raise openai.APIConnectionError(request=request) from exc  # pyright: ignore[reportArgumentType]
        except ValueError as exc:  # langchain: "No generation chunks were returned"
            if "no generation chunks" not in str(exc).lower():
                raise
        finally:
            chunks.close()  # closes the connection: the server stops generating
        if whole is None:
            # An empty stream: llama-cpp-python streams a failure (a prompt over its context) as nothing at
            # all, and drops the kept-alive connection. The same request unstreamed says what it was; sent
            # again once if it met that dead connection (the server never read it there).
            try:
                return _from_ai_message(runnable.invoke(conversation, **kwargs), mode)
            except openai.APIConnectionError:
                return _from_ai_message(runnable.invoke(conversation, **kwargs), mode)
        reply = _from_ai_message(whole, mode)
        reply.streamed_tokens = tokens
        reply.truncated = reply.truncated or cut
        if cut:  # the server's own count, if any, never came
            reply.prompt_tokens = reply.completion_tokens = 0
        return reply

    def _structured_llm(self, cap: int | None) -> ChatOpenAI:
        """The client for `ask`: retries are ours (never after a stall), so the SDK makes none."""
        if cap == self.settings.max_tokens:
            if self._ask_llm is None:
                self._ask_llm = build_chat_openai(self.settings, sdk_retries=False)
            return self._ask_llm
        # a prompt near the context window: this call's reply gets what is left
        return build_chat_openai(self.settings.model_copy(update={"max_tokens": cap}), sdk_retries=False)

    # --- errors ------------------------------------------------------------------------------------------

    def _error(self, kind: ErrorKind, what: str) -> ModelError:
        where = f"{self.settings.endpoint} (model {self.settings.model})"
        return ModelError(kind, f"The model endpoint {where} {what}.")

    def _stall_error(self, tokens: int) -> ModelError:
        wait = f"{self.settings.timeout_s:g} s"
        said = f"sent nothing in {wait}"
        if tokens:
            said = f"stopped sending tokens: none for {wait} after {tokens}"
        return self._error(
            "timeout", f"{said} (slow or stuck; not re-sent: raise timeout_s if the server is just slow)"
        )

    def _from_sdk(self, exc: Exception, retries: int = 0) -> ModelError:
        """One sentence per SDK failure; checked most specific first (a timeout is a connection error)."""
        import openai

        detail = _one_sentence(re.sub(r"^Error code: \d+ - ", "", getattr(exc, "message", "") or str(exc)))
        retried = f" after {retries} retries" if retries else ""
        status = getattr(exc, "status_code", None)
        if isinstance(exc, openai.APIConnectionError):
            root: BaseException = exc
            while root.__cause__ is not None:  # langchain -> openai -> httpx: the socket error says most
                root = root.__cause__
            return self._error("unreachable", f"is unreachable{retried} ({_one_sentence(str(root), 120)})")
        if isinstance(exc, openai.RateLimitError):
            return self._error("rate_limited", f"is rate-limiting requests{retried}: {detail}")
        if isinstance(exc, (openai.AuthenticationError, openai.PermissionDeniedError)):
            return self._error("auth", f"refused the API key (HTTP {status}): {detail}")
        if isinstance(exc, openai.NotFoundError):
            return self._error(
                "not_found", f"answered 404 ({detail}): check the model name and that the URL ends in /v1"
            )
        if isinstance(exc, openai.APIStatusError) and exc.status_code >= 500:
            return self._error("server", f"failed with HTTP {exc.status_code}{retried}: {detail}")
        if isinstance(exc, openai.APIStatusError):
            return self._error("refused", f"rejected the request (HTTP {exc.status_code}): {detail}")
        return self._error("server", f"failed: {detail}")


class _Spent:
    """Tokens and attempts summed over the calls of one ask."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.attempts = 0
        self.estimated = 0
        self.last_text = ""

    def add(self, reply: _Reply, conversation: list[dict[str, str]]) -> None:
        self.attempts += 1
        if not reply.prompt_tokens and not reply.completion_tokens:  # no usage: reported none, or cut here
            reply.prompt_tokens = _approx_prompt(conversation)
            reply.completion_tokens = max(reply.streamed_tokens, _approx_tokens(reply.text))
            self.estimated += reply.prompt_tokens + reply.completion_tokens
        self.prompt_tokens += reply.prompt_tokens
        self.completion_tokens += reply.completion_tokens
        self.last_text = reply.text

    def add_unreported(self, conversation: list[dict[str, str]], kind: str) -> None:
        """A call that failed after the server read it (a server error): its prompt, counted here since no
        usage came back. A request never delivered (unreachable) or refused up front costs nothing."""
        if kind == "server":
            self._add_counted(_approx_prompt(conversation), 0)

    def add_stalled(self, conversation: list[dict[str, str]], tokens: int, settings: ModelSettings) -> None:
        """A call abandoned on a stall: its prompt, and the tokens that arrived, or, when none did, the cap
        (the server may have generated up to it before noticing the client had gone)."""
        prompt = _approx_prompt(conversation)
        self._add_counted(prompt, tokens or settings.max_tokens or 0)

    def _add_counted(self, prompt: int, completion: int) -> None:
        self.attempts += 1
        self.prompt_tokens += prompt
        self.completion_tokens += completion
        self.estimated += prompt + completion

    def usage(self, settings: ModelSettings, started: float) -> CallUsage:
        return CallUsage(
            model=self.model,
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            usd=settings.price(self.prompt_tokens, self.completion_tokens),
            latency_s=time.perf_counter() - started,
            attempts=self.attempts,
            estimated_tokens=self.estimated,
        )


def _approx_tokens(text: str) -> int:
    """About four characters a token (English and code, BPE tokenizers): for calls with no usage."""
    return _approx_tokens_of(len(text))


def _approx_tokens_of(chars: int) -> int:
    return (chars + 3) // 4


def _approx_prompt(conversation: list[dict[str, str]]) -> int:
    return sum(_approx_tokens(m.get("content") or "") for m in conversation)


def _resendable(exc: Exception) -> bool:
    """A status that says "try again" (the SDK's list): the server answered, so it is not still working."""
    return getattr(exc, "status_code", 0) in (408, 409, 429) or getattr(exc, "status_code", 0) >= 500


def _retry_wait(retry: int) -> float:
    """Seconds before re-sending: 0.5, 1, 2 … up to 8, jittered (the SDK's schedule)."""
    return min(0.5 * 2 ** (retry - 1), 8.0) * (0.75 + 0.25 * random.random())


def _chars(conversation: list[dict[str, str]]) -> int:
    return sum(len(m.get("content") or "") for m in conversation)


def _request(llm: ChatOpenAI, mode: Mode, schema: type[BaseModel]) -> tuple[Any, dict[str, Any]]:
    """The runnable and call arguments that ask `llm` for `schema` in `mode`. The response format goes in
    extra_body, not response_format: langchain would take the SDK's parse-and-stream path."""
    runnable: Any = llm
    extra = dict(llm.extra_body or {})
    if mode == "json_schema":
        _quiet_schema_warnings()
        doc, strict = strict_json_schema(schema)
        spec = {"name": schema.__name__, "schema": doc, "strict": strict}
        extra["response_format"] = {"type": "json_schema", "json_schema": spec}
    elif mode == "json_object":
        extra["response_format"] = {"type": "json_object"}
    elif mode == "function_calling":
        runnable = llm.bind_tools([schema], tool_choice=schema.__name__, parallel_tool_calls=False)
    return runnable, ({"extra_body": extra} if extra else {})


def _quiet_schema_warnings() -> None:
    """langchain-openai warns on a json_schema rejection; the fallback to prompt mode handles it.

    Idempotent (warnings drops an identical filter before adding it), and re-applied per call because
    pytest and other callers reset the filters.
    """
    warnings.filterwarnings("ignore", message="This model does not support OpenAI's structured output")
    warnings.filterwarnings("ignore", message="Invalid schema for OpenAI's structured output")


def build_chat_openai(settings: ModelSettings, *, sdk_retries: bool = True) -> ChatOpenAI:
    """ChatOpenAI with explicit timeout and retries, on Chat Completions (local servers lack Responses).

    `sdk_retries` False: the caller re-sends itself (the SDK would re-send a timed-out request too)."""
    if settings.api_key is not None:
        api_key: str | None = settings.api_key.get_secret_value()
    else:
        api_key = "not-needed" if settings.base_url else None  # None: the SDK reads OPENAI_API_KEY
    kwargs: dict[str, Any] = {
        "model": settings.model,
        "base_url": settings.base_url,
        "timeout": settings.timeout_s,
        "max_retries": settings.max_retries if sdk_retries else 0,
        "temperature": settings.temperature,
        "max_tokens": settings.max_tokens,
        "use_responses_api": False,
        "stream_usage": True,  # with a base_url, streamed replies carry usage only when asked
    }
    if settings.max_tokens is not None and settings.cap_in == "max_tokens":
        # langchain-openai renames max_tokens to max_completion_tokens, which llama.cpp's servers ignore:
        # the body gets the field itself.
        kwargs |= {"max_tokens": None, "extra_body": {"max_tokens": settings.max_tokens}}
    if api_key is not None:
        kwargs["api_key"] = api_key
    return _chat_openai_class()(**kwargs)


@cache
def _chat_openai_class() -> type[ChatOpenAI]:
    """ChatOpenAI that keeps a streamed `refusal` (langchain-openai 1.7 drops it from the deltas, so a
    refused structured answer would read as an empty one)."""
    from langchain_openai import ChatOpenAI

    class _ChatOpenAI(ChatOpenAI):
        def _convert_chunk_to_generation_chunk(self, chunk: dict, *args: Any, **kwargs: Any) -> Any:
            out = super()._convert_chunk_to_generation_chunk(chunk, *args, **kwargs)
            choices = chunk.get("choices") or []
            refusal = (choices[0].get("delta") or {}).get("refusal") if choices else None
            if out is not None and refusal:
                out.message.additional_kwargs["refusal"] = refusal  # chunks add: the pieces join
            return out

    return _ChatOpenAI
