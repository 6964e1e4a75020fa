"""The fake server speaks enough OpenAI for the real clients: streaming, tool calls, models, embeddings."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest
from fake_openai import Error, FakeOpenAI, ToolCall, ToolCalls, count_tokens
from langchain_core.messages import AIMessageChunk
from langchain_openai import ChatOpenAI


@pytest.fixture
def server() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as s:
        yield s


def chat(server: FakeOpenAI) -> ChatOpenAI:
    return ChatOpenAI(
        model="fake-model",
        base_url=server.base_url,
        api_key="not-needed",
        timeout=5,
        max_retries=0,
        use_responses_api=False,
        stream_usage=True,
    )


def stream(llm: Any, text: str) -> AIMessageChunk:
    chunks = list(llm.stream([{"role": "user", "content": text}]))
    full = chunks[0]
    for c in chunks[1:]:
        full += c
    return full


def test_streamed_text_arrives_in_pieces_with_a_usage_chunk(server: FakeOpenAI) -> None:
    reply = "a streamed reply longer than one chunk"
    server.script([reply])
    full = stream(chat(server), "hello there")

    assert full.content == reply
    assert full.usage_metadata is not None
    assert full.usage_metadata["input_tokens"] == count_tokens("hello there")
    assert full.usage_metadata["output_tokens"] == count_tokens(reply)
    assert server.requests[0]["stream"] is True
    assert server.requests[0]["stream_options"] == {"include_usage": True}


def test_streamed_tool_calls_reassemble(server: FakeOpenAI) -> None:
    args = {"command": "pytest -q tests/test_checks.py", "timeout": 60}
    server.script([ToolCalls([ToolCall("run_tests", args, id="call_1")])])

    def run_tests(command: str, timeout: int) -> str:
        """Run the unit tests."""
        return "ok"

    full = stream(chat(server).bind_tools([run_tests]), "run the tests")

    assert full.tool_calls == [{"name": "run_tests", "args": args, "id": "call_1", "type": "tool_call"}]
    assert server.requests[0]["tools"][0]["function"]["name"] == "run_tests"


def test_dynamic_and_default_responders(server: FakeOpenAI) -> None:
    llm = chat(server)
    server.script([lambda body: f"you said {body['messages'][-1]['content']}"])
    assert llm.invoke("ping").content == "you said ping"

    with pytest.raises(openai.InternalServerError):  # an empty script is a test bug, said loudly
        llm.invoke("nothing scripted")

    server.default = lambda body: "default answer"
    assert llm.invoke("anything").content == "default answer"
    assert server.pending == 0 and len(server.requests) == 3


def test_error_bodies_are_openai_shaped(server: FakeOpenAI) -> None:
    client = openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0)
    server.script([Error(400, "bad request body", code="invalid_value", param="messages")])
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    assert info.value.code == "invalid_value" and info.value.param == "messages"
    assert info.value.message.endswith("bad request body")


def test_models_and_embeddings(server: FakeOpenAI) -> None:
    client = openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0)
    assert [m.id for m in client.models.list()] == ["fake-model"]

    out = client.embeddings.create(model="emb", input=["a", "b", "a"])
    vectors = [d.embedding for d in out.data]
    assert vectors[0] == vectors[2] != vectors[1]
    assert "GET /v1/models" in server.paths and "POST /v1/embeddings" in server.paths
