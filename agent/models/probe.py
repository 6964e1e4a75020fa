"""What an OpenAI-compatible server honours, asked once per endpoint and model (issue 18.1).

Local servers differ in what they take: llama-cpp-python answers HTTP 500 to `response_format:
json_schema` but honours `json_object` and named tool calls, and ignores `max_completion_tokens`. A probe
asks each structured-output mode for a one-field object and each cap field for a reply it must cut,
cheaply (64 tokens a request), and the result is cached in the data dir, where a run's auto mode starts
from it (`best_mode`). `disco models probe` prints it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from agent.models.base import ModelError
from agent.models.client import Mode, StructuredModel, build_chat_openai
from agent.models.settings import OPENAI_DEFAULT_BASE_URL, ModelSettings

PREFERENCE: tuple[Mode, ...] = ("json_schema", "json_object", "function_calling", "prompt")
"""The modes in the order auto mode prefers them: the more the server enforces, the fewer fix rounds."""
JSON_REQUEST = "Reply with exactly this JSON object and nothing else:"
LONG_REQUEST = "Write a story of about 300 words about a lighthouse keeper."
"""What the cap-field probe asks: a reply far past the cap from any chat model (a small one, asked to count,
sometimes answered in seven tokens)."""
PROBE_CAP = 8
"""The cap a cap-field probe sets; the reply it asks for is far longer."""
CACHE_FILE = Path("models") / "capabilities.json"


class ProbeAnswer(BaseModel):
    """The object every mode is asked for."""

    answer: int


class Capabilities(BaseModel):
    """One endpoint and model: which modes gave a valid object, and which cap field the server honours."""

    base_url: str
    model: str
    modes: dict[str, str] = Field(default_factory=dict)
    """Mode → "ok" (a valid object came back), "accepted: …" (the server took the request, the model's
    answer did not validate: a small model's slip, not the server's refusal), or "refused: …"."""
    tools_auto: str = ""
    """ "ok" when, offered a tool with `tool_choice: auto` and asked to use it, the server called it;
    "ignored: …" when it answered in text (the chat then describes its tools in the prompt)."""
    caps: dict[str, str] = Field(default_factory=dict)
    """Cap field → "ok" (the reply stopped there), or what happened."""
    context_tokens: int | None = None
    """The context window the server states (vLLM's `max_model_len` in /v1/models, llama.cpp's `n_ctx` in
    /props); None when it states none (llama-cpp-python: learned from the first request that overflows)."""
    probed_at: float = Field(default_factory=time.time)
    seconds: float = 0.0

    @property
    def best_mode(self) -> Mode:
        """The first mode that gave a valid object, else the first the server accepted."""
        for verdict in ("ok", "accepted"):
            for mode in PREFERENCE:
                if self.modes.get(mode, "").split(":")[0] == verdict:
                    return mode
        return "prompt"

    @property
    def cap_field(self) -> Literal["max_tokens", "max_completion_tokens"] | None:
        for field in ("max_tokens", "max_completion_tokens"):
            if self.caps.get(field) == "ok":
                return field
        return None


def probe(settings: ModelSettings) -> Capabilities:
    """Ask the server; raises ModelError when it cannot be asked at all (down, wrong model, bad key)."""
    started = time.perf_counter()
    quick = settings.model_copy(
        update={
            "max_retries": 0,
            "fix_attempts": 0,
            "max_tokens": 64,
            "temperature": 0.0,
            "cap_field": "auto",
        }
    )
    found = Capabilities(base_url=settings.endpoint, model=settings.model)
    ask = [{"role": "user", "content": JSON_REQUEST + ' {"answer": 4}'}]
    for mode in PREFERENCE:
        try:
            StructuredModel(quick.model_copy(update={"structured": mode})).ask(
                f"probe/{mode}", ask, ProbeAnswer
            )
            found.modes[mode] = "ok"
        except ModelError as err:
            if err.kind in ("unreachable", "auth", "not_found", "rate_limited", "timeout"):
                raise
            said = " ".join(err.message.split(") ", 1)[-1].split())
            said = said if len(said) <= 160 else said[:159] + "…"
            verdict = "accepted" if err.kind in ("malformed", "empty") else "refused"
            found.modes[mode] = f"{verdict}: {said}"
    found.tools_auto = _tools_auto(quick)
    for field in ("max_tokens", "max_completion_tokens"):
        found.caps[field] = _cap_honoured(
            quick.model_copy(update={"cap_field": field, "max_tokens": PROBE_CAP})
        )
    found.context_tokens = stated_window(settings)
    found.seconds = round(time.perf_counter() - started, 2)
    return found


WINDOW_FIELDS = ("max_model_len", "context_length", "context_window", "n_ctx")
"""Where OpenAI-compatible servers state a model's context window in /v1/models (vLLM, OpenRouter, LM
Studio) or in llama.cpp's /props."""


def stated_window(settings: ModelSettings) -> int | None:
    """The context window the server states for the model, or None (nothing stated, or no answer)."""
    import httpx

    base = settings.endpoint.rstrip("/")
    root = base[: -len("/v1")] if base.endswith("/v1") else base
    try:
        with httpx.Client(timeout=10.0) as http:
            listed = http.get(f"{base}/models").json().get("data") or []
            for entry in listed:
                found = (
                    _window_in(entry)
                    if isinstance(entry, dict) and entry.get("id") == settings.model
                    else None
                )
                if found is not None:
                    return found
            props = http.get(f"{root}/props")
            if props.status_code == 200:
                return _window_in(props.json())
    except (httpx.HTTPError, ValueError, AttributeError):
        return None
    return None


def _window_in(doc: dict) -> int | None:
    for holder in (doc, doc.get("meta") or {}, doc.get("default_generation_settings") or {}):
        for name in WINDOW_FIELDS:
            value = holder.get(name) if isinstance(holder, dict) else None
            if isinstance(value, int) and value > 0:
                return value
    return None


LOOKUP_TOOL = {
    "type": "function",
    "function": {
        "name": "lookup",
        "description": "Look up the value stored under a key.",
        "parameters": {"type": "object", "properties": {"key": {"type": "string"}}, "required": ["key"]},
    },
}
TOOL_REQUEST = "Use the lookup tool to look up the key 'alpha'."


def _tools_auto(settings: ModelSettings) -> str:
    import openai

    try:
        llm = build_chat_openai(settings).bind_tools([LOOKUP_TOOL], tool_choice="auto")
        reply = llm.invoke([{"role": "user", "content": TOOL_REQUEST}])
    except openai.OpenAIError as exc:
        return f"refused: {' '.join(str(exc).split())[:120]}"
    if reply.tool_calls:
        return "ok"
    return f"ignored: answered in text ({' '.join(str(reply.content).split())[:60]!r})"


def _cap_honoured(settings: ModelSettings, tries: int = 3) -> str:
    """`ok` when the server cut the reply at the cap (finish_reason `length`), `ignored` when the reply ran
    past it. A reply that ended by itself under the cap says neither (a small model sampled at the server's
    default temperature sometimes stops after a few tokens): it is asked again, up to `tries` times."""
    count = [{"role": "user", "content": LONG_REQUEST}]
    import openai

    used = 0
    for _ in range(tries):
        try:
            reply = build_chat_openai(settings).invoke(count)
        except openai.OpenAIError as exc:  # a refusal of the field is an answer: not honoured
            return f"refused: {' '.join(str(exc).split())[:120]}"
        used = (reply.usage_metadata or {}).get("output_tokens") or 0
        if used > PROBE_CAP:
            return f"ignored: the reply ran to {used} tokens"
        if reply.response_metadata.get("finish_reason") == "length":
            return "ok"
    return f"unknown: {tries} replies ended by themselves within the cap ({used} tokens the last)"


# --- the cache --------------------------------------------------------------------------------------------


def _key(settings: ModelSettings) -> str:
    return f"{settings.endpoint.rstrip('/')} {settings.model}"


def cached(home: Path, settings: ModelSettings) -> Capabilities | None:
    """What an earlier probe of this endpoint and model found, or None (never probed, or unreadable)."""
    try:
        table = json.loads((home / CACHE_FILE).read_text(encoding="utf-8"))
        return Capabilities.model_validate(table[_key(settings)])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def remember(home: Path, settings: ModelSettings, found: Capabilities) -> Path:
    path = home / CACHE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        table = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        table = {}
    table[_key(settings)] = found.model_dump(mode="json")
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(table, indent=2), encoding="utf-8")
    tmp.replace(path)
    return path


def probed(home: Path, settings: ModelSettings) -> tuple[Capabilities | None, str]:
    """The endpoint's capabilities for a run: cached, else probed now and cached when auto mode needs them
    (OpenAI itself is known and not probed); and a sentence saying which, for the run's events."""
    found = cached(home, settings)
    if found is not None:
        return found, f"capabilities of {settings.model} from the probe of {time.ctime(found.probed_at)}"
    if settings.structured != "auto" or settings.endpoint.startswith(OPENAI_DEFAULT_BASE_URL):
        return None, ""
    try:
        found = probe(settings)
    except ModelError as err:
        return None, f"could not probe the endpoint ({err.message}); auto mode steps down as it is refused"
    remember(home, settings, found)
    return found, f"probed {settings.model} in {found.seconds:g} s"


def with_probed(settings: ModelSettings, found: Capabilities | None) -> tuple[ModelSettings, Mode]:
    """The settings a run uses and where its auto mode starts: the probed cap field and best mode, where
    the person left them on auto."""
    if found is None:
        return settings, "json_schema"
    update: dict[str, object] = {}
    if settings.cap_field == "auto" and found.cap_field is not None:
        update["cap_field"] = found.cap_field
    if settings.context_tokens is None and found.context_tokens is not None:
        update["context_tokens"] = found.context_tokens
    return settings.model_copy(update=update), found.best_mode
