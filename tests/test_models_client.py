"""The model layer against a real HTTP server: the real ChatOpenAI client talks to FakeOpenAI on loopback."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fake_openai import (
    JSON_SCHEMA_UNSUPPORTED,
    Delay,
    Empty,
    Error,
    FakeOpenAI,
    Refusal,
    ToolCall,
    ToolCalls,
    Trickle,
    count_tokens,
    free_port,
)
from pydantic import SecretStr

from agent.models import (
    CallUsage,
    Exchange,
    ExchangeLog,
    Model,
    ModelConfigError,
    ModelError,
    ModelSettings,
    ReplayModel,
    StructuredModel,
    extract_json,
    settings_from_env,
)
from agent.schemas import Draft

DRAFT = {
    "thought": "scale the margin",
    "name": "scaled_sigmoid",
    "code": "def loss(self, a, b, c, d):\n    return {}",
}
MESSAGES = [
    {"role": "system", "content": "You design DPO losses."},
    {"role": "user", "content": "Propose a new loss."},
]


@pytest.fixture
def server() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as s:
        yield s


def settings_for(server: FakeOpenAI, **overrides: Any) -> ModelSettings:
    """Fast settings: short timeout, no SDK retries unless a test asks for them."""
    values: dict[str, Any] = {
        "model": "fake-model",
        "base_url": server.base_url,
        "timeout_s": 5.0,
        "max_retries": 0,
        "fix_attempts": 2,
    }
    return ModelSettings(**(values | overrides))


def last_user_text(request: dict[str, Any]) -> str:
    return next(m["content"] for m in reversed(request["messages"]) if m["role"] == "user")


# --- settings ---------------------------------------------------------------------------------------------


def test_default_settings_are_offline_and_usable() -> None:
    s = ModelSettings()
    assert s.offline
    s.check_usable()  # the offline proposer needs nothing


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        (ModelSettings(model="gpt-x"), "OPENAI_API_KEY"),
        (ModelSettings(model="gpt-x", base_url="localhost:8000/v1"), "not a URL"),
        (ModelSettings(model=" ", api_key=SecretStr("k")), "empty"),
        (ModelSettings(model="gpt-x", api_key=SecretStr("k")), None),
        (ModelSettings(model="llama", base_url="http://127.0.0.1:8000/v1"), None),
    ],
)
def test_check_usable(settings: ModelSettings, problem: str | None) -> None:
    if problem is None:
        settings.check_usable()
        return
    with pytest.raises(ModelConfigError, match=problem) as info:
        settings.check_usable()
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("base", "env", "expected"),
    [
        (ModelSettings(), {}, {"model": "offline", "base_url": None, "key": None}),
        # an endpoint or key alone never switches an offline run to an LLM
        (
            ModelSettings(),
            {"OPENAI_BASE_URL": "http://h/v1", "OPENAI_API_KEY": "k"},
            {"model": "offline", "base_url": "http://h/v1", "key": "k"},
        ),
        (
            ModelSettings(model="from-toml", base_url="http://toml/v1"),
            {"DISCO_MODEL": "from-env", "OPENAI_BASE_URL": "http://env/v1/"},
            {"model": "from-env", "base_url": "http://env/v1", "key": None},
        ),
        (
            ModelSettings(),
            {"OPENAI_API_BASE": "http://a/v1", "OPENAI_BASE_URL": "http://b/v1", "DISCO_MODEL": "m"},
            {"model": "m", "base_url": "http://a/v1", "key": None},
        ),
        (
            ModelSettings(model="kept"),
            {"DISCO_MODEL": "", "OPENAI_API_KEY": ""},
            {"model": "kept", "base_url": None, "key": None},
        ),
    ],
)
def test_settings_from_env(base: ModelSettings, env: dict[str, str], expected: dict[str, Any]) -> None:
    s = settings_from_env(base, env)
    assert s.model == expected["model"]
    assert s.base_url == expected["base_url"]
    assert (s.api_key.get_secret_value() if s.api_key else None) == expected["key"]


def _role(models: Any, role: str) -> tuple[str, str | None, str | None]:
    s = getattr(models, role)
    return s.model, s.base_url, s.api_key.get_secret_value() if s.api_key else None


@pytest.mark.parametrize(
    ("toml", "env", "expected"),
    [
        # one configured model serves every role the file leaves offline
        ({}, {"DISCO_MODEL": "m", "OPENAI_BASE_URL": "http://h/v1"}, {"inner": ("m", "http://h/v1", None)}),
        # the file's inner model is not overridden by the meta agent's variables (ADAS issue #22)
        (
            {"inner": {"model": "inner-m", "base_url": "http://inner/v1"}},
            {"DISCO_MODEL": "gpt-x", "OPENAI_BASE_URL": "http://meta/v1", "OPENAI_API_KEY": "k"},
            {"meta": ("gpt-x", "http://meta/v1", "k"), "inner": ("inner-m", "http://inner/v1", "k")},
        ),
        # a role with its own model but no endpoint takes the endpoint from OPENAI_*
        (
            {"judge": {"model": "judge-m"}},
            {"OPENAI_BASE_URL": "http://h/v1"},
            {"judge": ("judge-m", "http://h/v1", None), "meta": ("offline", "http://h/v1", None)},
        ),
        # role-specific variables win
        (
            {"inner": {"model": "inner-m"}},
            {
                "DISCO_INNER_MODEL": "other",
                "DISCO_INNER_BASE_URL": "http://i/v1/",
                "DISCO_INNER_API_KEY": "ik",
            },
            {"inner": ("other", "http://i/v1", "ik"), "judge": ("offline", None, None)},
        ),
    ],
)
def test_models_from_env_keeps_the_roles_separate(
    toml: dict[str, Any], env: dict[str, str], expected: dict[str, tuple[str, str | None, str | None]]
) -> None:
    from agent.models.settings import ModelsConfig, models_from_env

    models = models_from_env(ModelsConfig.model_validate(toml), env)
    for role, want in expected.items():
        assert _role(models, role) == want, role


def test_offline_settings_cannot_build_a_client() -> None:
    with pytest.raises(ModelConfigError, match="offline"):
        StructuredModel(ModelSettings())


# --- JSON out of text -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"a": 1}', {"a": 1}),
        ('```json\n{"a": 1}\n```', {"a": 1}),
        ('Here you go:\n{"a": {"b": "}{"}}\nHope this helps!', {"a": {"b": "}{"}}),
        ('{not json} then {"a": 2}', {"a": 2}),
        ('{"code": "line one\nline two"}', {"code": "line one\nline two"}),  # a raw newline in a string
        ("[1, 2]", None),
        ("no json here", None),
        ('{"a": 1', None),  # cut off at max_tokens
    ],
)
def test_extract_json(text: str, expected: dict[str, Any] | None) -> None:
    assert extract_json(text) == expected


# --- structured answers -----------------------------------------------------------------------------------


def test_json_schema_answer_is_parsed(server: FakeOpenAI) -> None:
    server.script([DRAFT])
    draft, usage = StructuredModel(settings_for(server)).ask("c1/design", MESSAGES, Draft)

    assert draft == Draft(**DRAFT)
    assert usage.attempts == 1 and not usage.cached
    (request,) = server.requests
    fmt = request["response_format"]
    assert fmt["type"] == "json_schema"
    assert fmt["json_schema"]["name"] == "Draft" and fmt["json_schema"]["strict"] is True
    assert fmt["json_schema"]["schema"]["additionalProperties"] is False
    assert request["messages"] == MESSAGES  # nothing added when the server does the schema


def test_server_rejecting_json_schema_falls_back_to_json_object_mode() -> None:
    with FakeOpenAI(reject_json_schema=True) as server:
        model = StructuredModel(settings_for(server))
        server.script([f"Sure, here it is:\n```json\n{json.dumps(DRAFT)}\n```\nGood luck!", DRAFT])

        draft, usage = model.ask("c1/design", MESSAGES, Draft)

        assert draft == Draft(**DRAFT)
        assert usage.attempts == 1  # the rejected request produced nothing and is not an attempt
        rejected, fallback = server.requests
        assert rejected["response_format"]["type"] == "json_schema"
        assert fallback["response_format"] == {"type": "json_object"}
        assert '"thought"' in last_user_text(fallback) and "JSON schema" in last_user_text(fallback)
        assert model.mode == "json_object"

        model.ask("c2/design", MESSAGES, Draft)  # remembered: no second rejection
        assert len(server.requests) == 3 and server.requests[2]["response_format"] == {"type": "json_object"}


@pytest.mark.parametrize("status", [400, 422, 500])
def test_each_rejected_format_steps_down_whatever_the_status(status: int) -> None:
    """llama-cpp-python answers 500 to `json_schema` (its request validation): the body names the response
    format, so it is a rejection to fall back from, not an outage to retry for hours."""
    with FakeOpenAI() as server:
        server.reject = {"json_schema": status, "json_object": status}
        model = StructuredModel(settings_for(server).model_copy(update={"max_retries": 0}))
        server.script([DRAFT])

        draft, usage = model.ask("c1/design", MESSAGES, Draft)

        assert draft == Draft(**DRAFT) and usage.attempts == 1
        asked = [(r.get("response_format") or {}).get("type") for r in server.requests]
        assert asked == ["json_schema", "json_object", None] and model.mode == "prompt"
        assert "JSON schema" in last_user_text(server.requests[-1])


def test_a_forced_format_the_server_rejects_is_one_sentence() -> None:
    with FakeOpenAI() as server:
        server.reject = {"json_object": 500}
        settings = settings_for(server).model_copy(update={"structured": "json_object", "max_retries": 0})
        with pytest.raises(ModelError) as err:
            StructuredModel(settings).ask("c1/design", MESSAGES, Draft)
    assert err.value.kind == "refused" and "rejected json_object output" in err.value.message


def test_the_cap_reaches_a_local_server_as_max_tokens(server: FakeOpenAI) -> None:
    """langchain-openai sends `max_completion_tokens`, which llama.cpp ignores; OpenAI itself gets that."""
    server.script([DRAFT])
    StructuredModel(settings_for(server).model_copy(update={"max_tokens": 321})).ask("c1", MESSAGES, Draft)
    assert server.requests[0]["max_tokens"] == 321 and "max_completion_tokens" not in server.requests[0]
    assert ModelSettings(model="m", api_key=SecretStr("k")).cap_in == "max_completion_tokens"
    assert (
        settings_for(server).model_copy(update={"cap_field": "max_completion_tokens"}).cap_in != "max_tokens"
    )


def _long_messages(chars: int) -> list[dict[str, str]]:
    return [
        MESSAGES[0],
        {"role": "user", "content": "Past attempts:\n" + "x = 1  # an old loss\n" * (chars // 21)},
    ]


def test_a_prompt_over_the_servers_window_is_too_long_after_one_refused_request(server: FakeOpenAI) -> None:
    """llama-cpp-python refuses a prompt longer than its n_ctx with HTTP 400 and names the window: the client
    learns it from the one refusal and says in a sentence what to change, sending nothing more."""
    server.context_window = 2000
    model = StructuredModel(settings_for(server))
    with pytest.raises(ModelError) as err:
        model.ask("c1/design", _long_messages(12_000), Draft)  # ~3000 tokens
    assert err.value.kind == "too_long" and "context window of 2000 tokens" in err.value.message
    assert "--n_ctx" in err.value.message and len(server.requests) == 1 and model.window == 2000
    with pytest.raises(ModelError):
        model.ask("c2/design", _long_messages(12_000), Draft)
    assert len(server.requests) == 1, "a prompt known not to fit was sent again"
    server.script([DRAFT])
    assert model.ask("c3/design", MESSAGES, Draft)[0].name == DRAFT["name"]  # a short one still goes


def test_the_reply_cap_shrinks_to_what_the_window_leaves(server: FakeOpenAI) -> None:
    """vLLM refuses when prompt + max_tokens exceed max_model_len: the client retries with the cap lowered to
    what is left; with the window known up front (--context-tokens) nothing is refused at all."""
    server.context_window, server.window_counts_cap = 4096, True
    server.script([DRAFT, DRAFT])
    model = StructuredModel(settings_for(server, max_tokens=4096))
    assert model.ask("c1/design", _long_messages(4000), Draft)[0].name == DRAFT["name"]
    refused, sent = server.requests
    assert refused["max_tokens"] == 4096 and 256 <= sent["max_tokens"] < 4096 - 1000
    known = StructuredModel(settings_for(server, max_tokens=4096, context_tokens=4096))
    known.ask("c2/design", _long_messages(4000), Draft)
    assert len(server.requests) == 3 and server.requests[-1]["max_tokens"] == sent["max_tokens"]


def test_a_fix_round_quotes_an_excerpt_of_a_long_bad_reply(server: FakeOpenAI) -> None:
    rambling = "I will think about this loss step by step. " * 400  # ~17k characters, no JSON
    server.script([rambling, DRAFT])
    model = StructuredModel(settings_for(server).model_copy(update={"structured": "prompt"}))
    model.ask("c1/design", MESSAGES, Draft)
    echoed = server.requests[1]["messages"][-2]
    assert echoed["role"] == "assistant" and len(echoed["content"]) < 1700 < len(rambling)
    assert "characters cut" in echoed["content"]


def test_tokens_of_failed_calls_are_counted(server: FakeOpenAI) -> None:
    """A call that sent nothing in timeout_s was read and possibly answered up to the cap by the server:
    budgets must see it, though no usage came back; it is not re-sent (retries are for connection errors
    and 429/5xx). A server that reports no usage at all gets its tokens counted here."""
    settings = settings_for(server).model_copy(update={"timeout_s": 0.3, "max_retries": 1, "max_tokens": 50})
    server.script([Delay(2, DRAFT), Delay(2, DRAFT)])
    model = StructuredModel(settings)
    with pytest.raises(ModelError) as err:
        model.ask("c1/design", MESSAGES, Draft)
    assert err.value.kind == "timeout" and "sent nothing in 0.3 s" in err.value.message
    spent = err.value.usage
    assert spent is not None and spent.completion_tokens == 50 and spent.prompt_tokens > 0
    assert spent.estimated_tokens == spent.prompt_tokens + spent.completion_tokens
    assert model.totals.failed_calls == 1 and model.totals.completion_tokens == 50
    assert len(server.requests) == 1

    server.report_usage = False
    server.script([DRAFT])
    _, usage = StructuredModel(settings.model_copy(update={"timeout_s": 30})).ask("c2", MESSAGES, Draft)
    assert usage.prompt_tokens > 0 and usage.completion_tokens > 0
    assert usage.estimated_tokens == usage.prompt_tokens + usage.completion_tokens


def test_json_schema_ignored_by_server_falls_back_to_prompt_mode(server: FakeOpenAI) -> None:
    server.script(["I think a scaled sigmoid would work well.", DRAFT])
    model = StructuredModel(settings_for(server))

    draft, usage = model.ask("c1/design", MESSAGES, Draft)

    assert draft == Draft(**DRAFT) and usage.attempts == 2
    assert "response_format" not in server.requests[1]
    assert "no complete JSON object" in last_user_text(server.requests[1])
    assert model.mode == "prompt"


@pytest.mark.parametrize(
    ("structured", "bad", "good"),
    [
        ("auto", {"name": "n", "code": "c"}, DRAFT),
        ("prompt", 'Here: {"name": "n", "code": "c"}', f"```json\n{json.dumps(DRAFT)}\n```"),
        (
            "function_calling",
            ToolCalls([ToolCall("Draft", {"name": "n", "code": "c"})]),
            ToolCalls([ToolCall("Draft", DRAFT)]),
        ),
    ],
)
def test_invalid_answer_is_fixed_in_a_fix_round(
    server: FakeOpenAI, structured: str, bad: Any, good: Any
) -> None:
    server.script([bad, good])
    draft, usage = StructuredModel(settings_for(server, structured=structured)).ask("k", MESSAGES, Draft)

    assert draft == Draft(**DRAFT) and usage.attempts == 2
    fix = server.requests[1]
    assert fix["messages"][-2]["role"] == "assistant"  # the model sees its own reply ...
    assert '"name": "n"' in fix["messages"][-2]["content"]
    assert "- thought: Field required" in fix["messages"][-1]["content"]  # ... and the exact error
    if structured == "function_calling":
        assert fix["tool_choice"]["function"]["name"] == "Draft"


@pytest.mark.parametrize("structured", ["auto", "json_schema", "prompt", "function_calling"])
@pytest.mark.parametrize("fix_attempts", [0, 2])
def test_malformed_forever_gives_up_after_the_fix_rounds(
    server: FakeOpenAI, structured: str, fix_attempts: int
) -> None:
    server.script(["this is not json {oops}"] * 5)
    model = StructuredModel(settings_for(server, structured=structured, fix_attempts=fix_attempts))

    with pytest.raises(ModelError) as info:
        model.ask("k", MESSAGES, Draft)

    assert info.value.kind == "malformed"
    assert len(server.requests) == 1 + fix_attempts
    assert info.value.usage is not None and info.value.usage.attempts == 1 + fix_attempts
    assert "no complete JSON object" in info.value.message


@pytest.mark.parametrize("structured", ["auto", "function_calling"])
def test_empty_replies_raise_empty(server: FakeOpenAI, structured: str) -> None:
    server.script([Empty()] * 3)
    with pytest.raises(ModelError) as info:
        StructuredModel(settings_for(server, structured=structured)).ask("k", MESSAGES, Draft)

    assert info.value.kind == "empty"
    assert len(server.requests) == 3
    # an empty reply is not echoed back as an assistant turn (servers reject empty assistant messages)
    assert all(m["content"] for m in server.requests[-1]["messages"])


def test_empty_then_valid_succeeds(server: FakeOpenAI) -> None:
    server.script([Empty(), DRAFT])
    draft, usage = StructuredModel(settings_for(server)).ask("k", MESSAGES, Draft)
    assert draft.name == DRAFT["name"] and usage.attempts == 2


def test_refusal_raises_refused(server: FakeOpenAI) -> None:
    server.script([Refusal("I can't help with that.")])
    with pytest.raises(ModelError) as info:
        StructuredModel(settings_for(server)).ask("k", MESSAGES, Draft)
    assert info.value.kind == "refused" and "can't help" in info.value.message
    assert len(server.requests) == 1


# --- transport failures -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("script", "overrides", "kind", "requests"),
    [
        ([Error(429), DRAFT], {"max_retries": 2}, None, 2),  # the SDK's retry absorbs one 429
        ([Error(503), DRAFT], {"max_retries": 1}, None, 2),
        ([Error(429)] * 3, {"max_retries": 1}, "rate_limited", 2),
        ([Error(500)] * 3, {"max_retries": 1}, "server", 2),
        ([Error(401, "Incorrect API key provided")], {}, "auth", 1),
        ([Error(403, "Project has no access")], {}, "auth", 1),
        ([Error(404, "The model `fake-model` does not exist")], {}, "not_found", 1),
        ([Error(400, "messages must alternate")], {}, "refused", 1),
        ([Delay(2.0, DRAFT)], {"timeout_s": 0.5}, "timeout", 1),
        ([Error(400, JSON_SCHEMA_UNSUPPORTED)], {"structured": "json_schema"}, "refused", 1),
    ],
)
def test_transport_failures(
    server: FakeOpenAI, script: list[Any], overrides: dict[str, Any], kind: str | None, requests: int
) -> None:
    server.script(script)
    model = StructuredModel(settings_for(server, **overrides))
    if kind is None:
        draft, _ = model.ask("k", MESSAGES, Draft)
        assert draft.name == DRAFT["name"]
    else:
        with pytest.raises(ModelError) as info:
            model.ask("k", MESSAGES, Draft)
        err = info.value
        assert err.kind == kind
        assert_one_sentence(err, server.base_url)
    assert len(server.requests) == requests


def test_unreachable_endpoint() -> None:
    base_url = f"http://127.0.0.1:{free_port()}/v1"
    settings = ModelSettings(model="fake-model", base_url=base_url, timeout_s=2, max_retries=0)
    with pytest.raises(ModelError) as info:
        StructuredModel(settings).ask("k", MESSAGES, Draft)
    assert info.value.kind == "unreachable"
    assert_one_sentence(info.value, base_url)


def assert_one_sentence(err: ModelError, base_url: str) -> None:
    """What a person reads: one line naming the endpoint and the model, no traceback."""
    assert base_url in err.message and "fake-model" in err.message
    assert "\n" not in err.message and "Traceback" not in err.message
    assert err.message.endswith(".")


# --- usage ------------------------------------------------------------------------------------------------


def test_usage_and_cost_are_summed_over_attempts(server: FakeOpenAI) -> None:
    bad = json.dumps({"name": "n", "code": "c"})
    server.script([bad, DRAFT, DRAFT])
    model = StructuredModel(settings_for(server, usd_per_mtok_in=2.0, usd_per_mtok_out=8.0))

    _, usage = model.ask("k1", MESSAGES, Draft)

    prompt = sum(count_tokens(m["content"]) for r in server.requests for m in r["messages"])
    completion = count_tokens(bad) + count_tokens(json.dumps(DRAFT))
    assert (usage.prompt_tokens, usage.completion_tokens, usage.attempts) == (prompt, completion, 2)
    assert usage.usd == pytest.approx((prompt * 2.0 + completion * 8.0) / 1e6)
    assert usage.latency_s > 0

    _, second = model.ask("k2", MESSAGES, Draft)
    totals = model.totals
    assert totals.calls == 2
    assert totals.prompt_tokens == usage.prompt_tokens + second.prompt_tokens
    assert totals.usd == pytest.approx((usage.usd or 0) + (second.usd or 0))


def test_usage_without_prices_has_no_cost(server: FakeOpenAI) -> None:
    server.script([DRAFT])
    _, usage = StructuredModel(settings_for(server)).ask("k", MESSAGES, Draft)
    assert usage.usd is None and usage.prompt_tokens > 0


# --- record, resume, replay -------------------------------------------------------------------------------


def exchange(key: str, name: str = "n", error: str | None = None) -> Exchange:
    parsed = None if error else {**DRAFT, "name": name}
    return Exchange(
        key=key,
        model="m",
        messages=MESSAGES,
        reply=json.dumps(parsed),
        parsed=parsed,
        usage=CallUsage(model="m", prompt_tokens=3, completion_tokens=4, attempts=1),
        error=error,
        error_kind="malformed" if error else None,
    )


def test_exchange_log_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "runs" / "r1" / "exchanges.jsonl"
    log = ExchangeLog(path)
    for ex in [exchange("a", "first"), exchange("b"), exchange("a", "second"), exchange("a", error="bad")]:
        log.append(ex)

    reopened = ExchangeLog(path)
    assert [ex.key for ex in reopened] == ["a", "b", "a", "a"]
    hit = reopened.get("a")
    assert hit is not None and hit.parsed is not None and hit.parsed["name"] == "second"  # latest success
    latest = reopened.latest("a")
    assert latest is not None and latest.error == "bad"
    assert reopened.get("missing") is None
    assert reopened.get("a") == log.get("a")  # every field survives the JSON round trip


def test_exchange_log_tolerates_a_torn_last_line(tmp_path: Path) -> None:
    path = tmp_path / "exchanges.jsonl"
    ExchangeLog(path).append(exchange("a"))
    whole = exchange("b").model_dump_json()
    with path.open("a") as f:
        f.write(whole[: len(whole) // 2])  # kill -9 mid-write

    log = ExchangeLog(path)
    assert [ex.key for ex in log] == ["a"] and log.skipped_lines == 1

    log.append(exchange("c"))  # starts on a fresh line: the torn fragment does not swallow it
    again = ExchangeLog(path)
    assert [ex.key for ex in again] == ["a", "c"] and again.skipped_lines == 1


def test_ask_records_and_a_resumed_ask_is_answered_from_the_log(server: FakeOpenAI, tmp_path: Path) -> None:
    path = tmp_path / "exchanges.jsonl"
    seen: list[Exchange] = []
    server.script([DRAFT])
    first, usage = StructuredModel(settings_for(server), log=ExchangeLog(path), on_call=seen.append).ask(
        "c1/design", MESSAGES, Draft
    )
    assert len(server.requests) == 1 and usage.prompt_tokens > 0

    # a new process after a crash: same log file, and the server would now fail
    server.script([Error(500)])
    resumed = StructuredModel(settings_for(server), log=ExchangeLog(path), on_call=seen.append)
    again, cached = resumed.ask("c1/design", MESSAGES, Draft)

    assert again == first
    assert cached.cached and cached.prompt_tokens == cached.completion_tokens == 0
    assert len(server.requests) == 1  # no HTTP request at all
    assert [ex.usage.cached for ex in seen] == [False, True]
    assert resumed.totals.cached_calls == 1


def test_failed_asks_are_recorded_but_not_reused(server: FakeOpenAI, tmp_path: Path) -> None:
    log = ExchangeLog(tmp_path / "exchanges.jsonl")
    server.script([Error(400, "bad request")])
    model = StructuredModel(settings_for(server), log=log)
    with pytest.raises(ModelError):
        model.ask("k", MESSAGES, Draft)
    recorded = log.latest("k")
    assert recorded is not None and recorded.error_kind == "refused" and log.get("k") is None

    server.script([DRAFT])
    draft, usage = model.ask("k", MESSAGES, Draft)
    assert draft.name == DRAFT["name"] and not usage.cached and len(server.requests) == 2


def test_a_log_hit_that_no_longer_fits_the_schema_is_asked_again(server: FakeOpenAI, tmp_path: Path) -> None:
    log = ExchangeLog(tmp_path / "exchanges.jsonl")
    log.append(exchange("k").model_copy(update={"parsed": {"unrelated": 1}}))
    server.script([DRAFT])
    _, usage = StructuredModel(settings_for(server), log=log).ask("k", MESSAGES, Draft)
    assert not usage.cached and len(server.requests) == 1


def test_replay_model_answers_by_key(tmp_path: Path) -> None:
    path = tmp_path / "exchanges.jsonl"
    log = ExchangeLog(path)
    log.append(exchange("c1/design", "recorded"))
    log.append(exchange("c2/design", error="The model endpoint gave no valid answer."))
    replay: Model = ReplayModel(path)

    draft, usage = replay.ask("c1/design", [], Draft)
    assert draft.name == "recorded" and usage.cached and usage.prompt_tokens == 0

    with pytest.raises(ModelError) as missing:
        replay.ask("c9/design", [], Draft)
    assert missing.value.kind == "replay_missing"
    assert missing.value.message == "The recorded run has no exchange for step c9/design."

    with pytest.raises(ModelError) as failed:  # a recorded failure replays as that failure
        replay.ask("c2/design", [], Draft)
    assert failed.value.kind == "malformed"


# --- streaming: slow is not down, and the cap holds ----------------------------------------------------


def test_a_slow_but_working_server_is_waited_for(server: FakeOpenAI) -> None:
    """Tokens arriving are the server's sign of life: a reply that takes far longer than timeout_s in all,
    with no gap that long, is received whole, in one request."""
    server.script([Trickle(DRAFT, gap_s=0.15)])
    started = time.monotonic()
    draft, usage = StructuredModel(settings_for(server, timeout_s=0.6)).ask("k", MESSAGES, Draft)
    assert draft.name == DRAFT["name"]
    assert time.monotonic() - started > 3 * 0.6 and usage.latency_s > 3 * 0.6
    assert len(server.requests) == 1 and server.requests[0]["stream"] is True


def test_a_stalled_server_is_given_up_and_not_re_sent(server: FakeOpenAI) -> None:
    """No token for timeout_s mid-reply: a timeout naming the stall, the tokens that came counted, and no
    second request however many retries are allowed (a one-at-a-time server would queue it)."""
    server.script([Trickle(DRAFT, gap_s=0.01, stall_after=5, stall_s=3), DRAFT])
    model = StructuredModel(settings_for(server, timeout_s=0.5, max_retries=3))
    with pytest.raises(ModelError) as info:
        model.ask("k", MESSAGES, Draft)
    err = info.value
    assert err.kind == "timeout" and "none for 0.5 s after 4" in err.message
    assert_one_sentence(err, server.base_url)
    assert err.usage is not None and err.usage.completion_tokens == 4 and err.usage.prompt_tokens > 0
    assert len(server.requests) == 1 and server.pending == 1


def test_the_cap_holds_on_a_server_that_ignores_it(server: FakeOpenAI) -> None:
    """The cap is sent, and where the server goes past it the reply is cut here and the connection closed:
    no reply over the cap, counted as cut, and the server stops streaming."""
    long_reply = "x" * 4000  # 500 deltas of 8 characters, a second apart in all
    server.script([Trickle(long_reply, gap_s=0.002)])
    model = StructuredModel(settings_for(server, max_tokens=40, fix_attempts=0, structured="prompt"))
    with pytest.raises(ModelError) as info:
        model.ask("k", MESSAGES, Draft)
    err = info.value
    assert err.kind == "malformed" and "cut off at max_tokens=40" in err.message
    assert server.requests[0]["max_tokens"] == 40
    assert err.usage is not None and err.usage.completion_tokens <= 40
    time.sleep(0.5)
    assert server.streamed < 500
