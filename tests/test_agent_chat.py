"""The chat agent and the tools: the real ChatOpenAI client calls tools against real memory through a
fake OpenAI-compatible server, and tool results go back to the model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fake_openai import FakeOpenAI, ToolCall, ToolCalls
from test_memory_helpers import rec, shared_minilm

from agent.chat import ChatAgent
from agent.models import ModelSettings, StructuredModel
from memory.records import Fitness, VsBaseline
from memory.store import MemoryStore
from targets.dpo.target import DPOTarget, DPOTargetConfig
from targets.dpo.zoo import get_zoo_loss
from tools.langchain_tools import as_langchain_tools
from tools.toolbox import Toolbox
from tools.toolbox import ToolCall as ToolCallMade


@pytest.fixture
def toolbox(tmp_path: Path) -> Toolbox:
    memory = MemoryStore(tmp_path / "memory", embedder=shared_minilm())
    memory.record(
        rec(
            "hinge_loss",
            get_zoo_loss("slic").code,
            status="evaluated",
            fitness=Fitness(value=0.12, ci_low=0.05, ci_high=0.2),
        )
    )
    memory.record(
        rec("exp_blowup", get_zoo_loss("cell").code, status="check_failed", error="finite_extreme: NaN")
    )
    calls: list[ToolCallMade] = []
    box = Toolbox(DPOTarget(DPOTargetConfig(preset="tiny")), memory, on_call=calls.append)
    box.calls = calls  # type: ignore[attr-defined]
    return box


def test_chat_agent_answers_from_memory_tools(toolbox: Toolbox) -> None:
    with FakeOpenAI() as server:
        server.script(
            [
                ToolCalls([ToolCall("similar_candidates", {"query": "hinge margin loss", "k": 2})]),
                "You tried hinge_loss: fitness +0.12 [0.05, 0.20].",
            ]
        )
        settings = ModelSettings(model="fake-model", base_url=server.base_url, api_key="k", timeout_s=10)
        agent = ChatAgent(
            StructuredModel(settings).chat_model(),
            as_langchain_tools(toolbox),
            target="dpo",
            description="losses",
            on_call=lambda call: None,
        )
        reply = agent.ask("What have you tried that resembles a hinge loss?")
        second = server.requests[1]["messages"]
    assert reply.text.startswith("You tried hinge_loss")
    (call,) = reply.tool_calls
    assert call.name == "similar_candidates"
    found = json.loads(call.result)
    assert found[0]["name"] == "hinge_loss" and found[0]["fitness"]["value"] == pytest.approx(0.12)
    tool_turn = [m for m in second if m["role"] == "tool"]
    assert tool_turn and "hinge_loss" in tool_turn[0]["content"], "the tool's result went back to the model"
    assert server.requests[0]["tools"], "the tools were offered to the model"
    assert any(call.tool == "similar" for call in toolbox.calls), "tool calls are reported"  # type: ignore[attr-defined]


def test_a_server_that_ignores_tool_choice_auto_gets_the_text_protocol(
    toolbox: Toolbox, tmp_path: Path
) -> None:
    """Issue 18.7: llama-cpp-python (chatml) answers in text when offered tools with `tool_choice: auto`.
    The probe finds it; the chat then lists its tools in the prompt, runs the one a JSON reply names, and
    the TUI's chat says which protocol is in use."""
    from agent.models.probe import probe, remember
    from tui.chat import ChatService

    with FakeOpenAI() as server:
        server.ignore_tool_choice_auto = True
        settings = ModelSettings(model="fake-model", base_url=server.base_url, api_key="k", timeout_s=10)
        found = probe(settings)
        assert found.tools_auto.startswith("ignored: answered in text"), found.tools_auto
        remember(tmp_path, settings, found)
        server.script(
            [
                '{"tool": "similar_candidates", "args": {"query": "hinge margin loss", "k": 2}}',
                "You tried hinge_loss: fitness +0.12.",
            ]
        )
        service = ChatService("dpo", toolbox=toolbox, overrides={"models": {"meta": {
            "model": "fake-model", "base_url": server.base_url}}})  # fmt: skip
        from agent.home import set_home

        set_home(tmp_path)
        try:
            lines = service.ask("What have you tried that resembles a hinge loss?")
        finally:
            set_home(None)
        first, second = server.requests
    assert [line.text for line in lines] == [
        "chat: tools by a JSON reply in text (the server ignores tool_choice: auto)",
        "You tried hinge_loss: fitness +0.12.",
    ]
    assert "tools" not in first and '"tool": NAME' in first["messages"][0]["content"]
    assert "similar_candidates" in first["messages"][0]["content"], "the tools are listed in the prompt"
    result = second["messages"][-1]
    assert result["role"] == "user" and result["content"].startswith("Result of similar_candidates:")
    assert "hinge_loss" in result["content"]


def test_best_candidates_is_ranked_by_and_quotes_the_fresh_difference(toolbox: Toolbox) -> None:
    """Issue 16.5: the chat's best_candidates tool ranks by the fresh-seed difference to DPO, not by the
    in-sample fitness, and gives the model its interval and n."""
    vs = VsBaseline(diff=0.02, ci_low=0.005, ci_high=0.035, n_seeds=16)
    low = Fitness(value=-0.5, ci_low=-0.6, ci_high=-0.4)
    toolbox.memory.record(rec("ipo", status="evaluated", fitness=low, vs_baseline=vs))
    best = toolbox.best(k=2)
    assert [b.name for b in best] == ["ipo", "hinge_loss"] and best[0].vs_baseline == vs
    tools = {t.name: t for t in as_langchain_tools(toolbox)}
    shown = json.loads(tools["best_candidates"].invoke({"k": 1}))
    assert shown[0]["vs_baseline"] == vs.model_dump()


def test_tools_report_errors_to_the_model_instead_of_raising(toolbox: Toolbox) -> None:
    tools = {t.name: t for t in as_langchain_tools(toolbox)}
    assert tools["show_candidate"].invoke({"candidate_id": "nope"}) == "error: no candidate 'nope' in memory"
    out = tools["launch_dpo_job"].invoke({"candidate_id": "nope"})
    assert out.startswith("error: no candidate")
    failures = json.loads(tools["recent_failures"].invoke({"k": 3}))
    assert failures[0]["failed"]["name"] == "exp_blowup" and "finite_extreme" in failures[0]["error"]


def test_run_unit_tests_tool_checks_in_the_sandbox(toolbox: Toolbox) -> None:
    tools = {t.name: t for t in as_langchain_tools(toolbox)}
    broken = "def f(self, a, b, c, d):\n    import os\n    return a\n"
    result = json.loads(tools["run_unit_tests"].invoke({"code": broken}))
    assert result["passed"] is False and result["checks"][0]["name"] == "policy"
    good = json.loads(tools["run_unit_tests"].invoke({"code": get_zoo_loss("ipo").code}))
    names = [c["name"] for c in good["checks"]]
    assert good["passed"] is True and "novelty" in names and "finite_extreme" in names
    toolbox.target.close()
