"""Prompts that fit a local server's context window (issue 18.4): a design whose bounded context is still too
long for the server's n_ctx shows fewer past attempts until it fits, the person's pins stay, and the probe
reads the window where the server states it. The real client against the fake server on loopback."""

from __future__ import annotations

import pytest
from fake_openai import FakeOpenAI, count_tokens

from agent.context import DesignContext, shrunk
from agent.designers import ModelDesigner
from agent.models import ModelError, ModelSettings, StructuredModel
from agent.models.probe import probe, with_probed
from memory.records import PastAttempt

DRAFT = {"thought": "scale the margin", "name": "scaled", "code": "def loss(self, a, b, c, d):\n    return a"}


def attempt(section: str, i: int) -> PastAttempt:
    body = f"    # {section} {i}: " + "a long comment about the loss " * 70 + "\n"
    return PastAttempt(
        id=f"{section}{i}", name=f"{section}_{i}", status="evaluated", code=body * 1, thought="t"
    )


def crowded() -> DesignContext:
    return DesignContext(
        target="dpo",
        description="Design a DPO loss.",
        interface="def loss(self, policy_chosen_logps, ...)",
        rules=["Return one loss per pair."],
        fitness_meaning="higher is better",
        best=[attempt("best", i) for i in range(5)],
        similar=[attempt("similar", i) for i in range(4)],
        failures=[attempt("failure", i) for i in range(3)],
        pinned=[attempt("pinned", 0)],
        archive_size=40,
    )


def settings(server: FakeOpenAI, **more: object) -> ModelSettings:
    return ModelSettings(
        model="fake-model", base_url=server.base_url, timeout_s=5, max_retries=0, max_tokens=1024, **more
    )


@pytest.mark.parametrize("empty_stream", [False, True])
def test_a_design_too_long_for_the_window_shows_fewer_attempts_and_keeps_the_pins(empty_stream: bool) -> None:
    """`empty_stream`: the server streams the refusal as nothing at all (llama-cpp-python); the request is
    then sent unstreamed, which names the window."""
    with FakeOpenAI() as server:
        server.context_window = 3000
        server.empty_stream_errors = empty_stream
        server.default = lambda body: DRAFT
        designer = ModelDesigner(StructuredModel(settings(server)), "fake-model")
        step = designer.design("c1/design", crowded())
    assert step.value.name == "scaled"
    refused, sent = server.requests[0], server.requests[-1]
    assert len(server.requests) == 2 + empty_stream, "after the refusal naming the window, it is cut here"
    tokens = sum(count_tokens(m["content"]) for m in sent["messages"])
    assert tokens + sent["max_tokens"] <= 3000 < sum(count_tokens(m["content"]) for m in refused["messages"])
    text = sent["messages"][-1]["content"]
    assert "pinned_0" in text, "a pin was dropped for space"
    assert "best_0" in text and "similar_3" not in text  # the best go last, the fuller sections first


def test_a_known_window_cuts_the_prompt_before_any_call_and_logs_no_failure() -> None:
    """With the window known (set, or probed) the prompt is fitted before asking: one request, and no
    failed exchange or failed call in the books for the attempts that were dropped."""
    seen: list[object] = []
    with FakeOpenAI() as server:
        server.context_window = 3000
        server.default = lambda body: DRAFT
        model = StructuredModel(settings(server, context_tokens=3000), on_call=seen.append)
        step = ModelDesigner(model, "fake-model").design("c1/design", crowded())
    assert step.value.name == "scaled" and len(server.requests) == 1
    assert model.totals.failed_calls == 0 and model.totals.calls == 1
    assert [getattr(ex, "error", None) for ex in seen] == [None]


def test_a_window_no_prompt_fits_is_one_sentence() -> None:
    with FakeOpenAI() as server:
        designer = ModelDesigner(StructuredModel(settings(server, context_tokens=300)), "fake-model")
        try:
            designer.design("c1/design", crowded())
        except ModelError as err:
            assert err.kind == "too_long" and "context window of 300 tokens" in err.message
        else:
            raise AssertionError("a design that cannot fit was sent")
        assert server.requests == [], "nothing is sent when even the pins alone cannot fit"


def test_shrinking_drops_one_attempt_at_a_time_and_never_a_pin() -> None:
    ctx, seen = crowded(), []
    while (ctx := shrunk(ctx)) is not None:
        seen.append((len(ctx.best), len(ctx.similar), len(ctx.failures), len(ctx.pinned), ctx.omitted))
    assert seen[0] == (5, 3, 3, 1, 1) and seen[-1] == (0, 0, 0, 1, 12)
    assert [s[4] for s in seen] == list(range(1, 13))


def test_the_probe_reads_the_window_the_server_states() -> None:
    with FakeOpenAI() as server:
        server.model_fields = {"max_model_len": 6144}  # vLLM's /v1/models
        found = probe(settings(server, structured="auto"))
        assert found.context_tokens == 6144
        used, _ = with_probed(settings(server), found)
        assert used.context_tokens == 6144
        assert with_probed(settings(server, context_tokens=2048), found)[0].context_tokens == 2048
        server.model_fields = {}
        assert probe(settings(server)).context_tokens is None  # llama-cpp-python states none
