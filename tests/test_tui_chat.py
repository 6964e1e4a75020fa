"""`disco chat` and the conversation: the real chat agent (ChatOpenAI against a fake OpenAI-compatible
server) answers with its tools, tool calls show as they happen, the UI stays responsive while the model
is slow, an offline setup answers plainly, and a past run can be opened from the list."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fake_openai import Delay, Error, FakeOpenAI, ToolCall, ToolCalls
from test_memory_helpers import rec, trigram_embedding
from test_tui_helpers import RUN_ID, text_of, until, write_run

from agent.config import load_config
from agent.models import ModelSettings, StructuredModel
from agent.runs import create_run
from memory.records import Fitness
from memory.store import MemoryStore
from targets.dpo.target import DPOTarget, DPOTargetConfig
from targets.dpo.zoo import get_zoo_loss
from tools.toolbox import Toolbox
from tui.app import make_app
from tui.chat import OFFLINE_REPLY, ChatService
from tui.screens.chat import ChatScreen
from tui.screens.run import RunScreen

pytestmark = pytest.mark.anyio
SIZE = (160, 50)


class Trigrams:
    """A cheap text embedder for memory in these tests (the chat, not the embeddings, is under test)."""

    key = "test-trigrams-64"

    def embed(self, texts: list[str]) -> np.ndarray:
        v = np.array([trigram_embedding(t) for t in texts], dtype=np.float32)
        return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-9)


@pytest.fixture
def toolbox(tmp_path: Path) -> Toolbox:
    memory = MemoryStore(tmp_path / "memory", embedder=Trigrams())
    fit = Fitness(value=0.12, ci_low=0.05, ci_high=0.2)
    memory.record(rec("hinge_loss", get_zoo_loss("slic").code, status="evaluated", fitness=fit))
    return Toolbox(DPOTarget(DPOTargetConfig(preset="tiny")), memory)


def _model(server: FakeOpenAI) -> object:
    settings = ModelSettings(
        model="fake-model", base_url=server.base_url, api_key="k", timeout_s=20, max_retries=0
    )
    return StructuredModel(settings).chat_model()


async def _ask(pilot, text: str) -> None:
    prompt = pilot.app.screen.query_one("#prompt")
    prompt.focus()
    prompt.value = text
    await pilot.press("enter")


async def test_the_agent_answers_with_its_tools_and_each_call_shows(home: Path, toolbox: Toolbox) -> None:
    with FakeOpenAI() as server:
        server.script(
            [
                ToolCalls([ToolCall("best_candidates", {"k": 2})]),
                "hinge_loss leads at +0.12; try a smoother hinge.",
            ]
        )
        write_run(home)
        app = make_app(home, chat=ChatService("dpo", toolbox=toolbox, chat_model=_model(server)))
        async with app.run_test(size=SIZE) as pilot:
            assert isinstance(app.screen, ChatScreen)
            await _ask(pilot, "what works best so far?")
            await until(pilot, lambda: "agent: hinge_loss leads" in text_of(app), what="the answer")
            story = text_of(app)
            assert story.index("you: what works best so far?") < story.index('tool best_candidates({"k": 2})')
            assert story.index("→ [") < story.index("agent: hinge_loss leads"), (
                "the call shows before the answer"
            )
            assert not app.screen.query_one("#busy").display
        tool_turn = [m for m in server.requests[1]["messages"] if m["role"] == "tool"]
        first = server.requests[0]["messages"][-1]["content"]
    assert "hinge_loss" in tool_turn[0]["content"], "the tool's result went back to the model"
    runs = "[Runs in the data dir, newest first: demo (finished, 4 candidates in 1m23s, "
    runs += "best +0.31[+0.23,+0.37] n4).]"
    assert first == f"{runs}\n\nwhat works best so far?", (
        "the agent hears of the runs with the first question"
    )


async def test_the_ui_stays_responsive_while_the_model_is_slow(home: Path, toolbox: Toolbox) -> None:
    with FakeOpenAI() as server:
        server.script([Delay(3.0, "done thinking")])
        app = make_app(home, chat=ChatService("dpo", toolbox=toolbox, chat_model=_model(server)))
        async with app.run_test(size=SIZE) as pilot:
            await _ask(pilot, "think hard")
            await until(pilot, lambda: app.screen.query_one("#busy").display, what="the busy line")
            await _ask(pilot, "/best 1")
            await until(pilot, lambda: "/best: 1 found in memory" in text_of(app), what="memory, meanwhile")
            assert "agent: done thinking" not in text_of(app), "the memory answered while the model was slow"
            await until(pilot, lambda: "agent: done thinking" in text_of(app), what="the slow answer")


async def test_an_endpoint_that_fails_gets_one_line(home: Path, toolbox: Toolbox) -> None:
    with FakeOpenAI() as server:
        server.script([Error(500, "the GPU fell over")])
        app = make_app(home, chat=ChatService("dpo", toolbox=toolbox, chat_model=_model(server)))
        async with app.run_test(size=SIZE) as pilot:
            await _ask(pilot, "hello?")
            await until(pilot, lambda: "the model did not answer: Error code: 500" in text_of(app))
            assert "the GPU fell over" in text_of(app)
            assert "Traceback" not in text_of(app) and app.is_running


async def test_offline_chat_answers_plainly_and_memory_commands_work(
    home: Path, toolbox: Toolbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in ("DISCO_MODEL", "OPENAI_BASE_URL", "OPENAI_API_BASE", "OPENAI_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    app = make_app(home, chat=ChatService("dpo", toolbox=toolbox))
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: "model offline" in text_of(app, "#status"), what="the model's name")
        await _ask(pilot, "what should I try?")
        await until(pilot, lambda: OFFLINE_REPLY[:40] in text_of(app))
        await _ask(pilot, "/best")
        await until(pilot, lambda: "hinge_loss +0.120 [+0.050, +0.200]" in text_of(app))
        await _ask(pilot, "/similar a hinge on the margin")
        await until(pilot, lambda: "/similar: 1 found in memory" in text_of(app))
        await _ask(pilot, "/pause")
        await until(pilot, lambda: "/pause steers a run, and none is attached" in text_of(app))


async def test_chat_lists_runs_and_opens_one(home: Path, toolbox: Toolbox) -> None:
    write_run(home)
    app = make_app(home, chat=ChatService("dpo", toolbox=toolbox))
    async with app.run_test(size=SIZE) as pilot:
        table = app.screen.query_one("#runs")
        await until(pilot, lambda: table.row_count == 1, what="the runs")
        assert [str(c) for c in table.get_row_at(0)] == [
            RUN_ID,
            "finished",
            "4 in 1m23s",
            "+0.31[+0.23,+0.37] n4",
        ]
        table.focus()
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, RunScreen) and app.screen.updates > 0)
        assert "finished" in text_of(app, "#status")


async def test_a_runs_chat_talks_to_the_model_the_run_was_given(
    home: Path, toolbox: Toolbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`disco tui --model M --base-url U` (or attaching to such a run): the chat asks M at U, not the
    environment's model and not "No model is configured"."""
    for var in ("DISCO_MODEL", "OPENAI_BASE_URL", "OPENAI_API_BASE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", "k")
    with FakeOpenAI(model="run-model") as server:
        server.script(["Ask me about hinge_loss."])
        config = load_config(None, {"models": {"meta": {"model": "run-model", "base_url": server.base_url}}})
        create_run(home / "runs", config, "with-a-model")
        app = make_app(home, "with-a-model")
        app.services.chat._toolbox = toolbox  # the memory under test elsewhere; the model is under test here
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: isinstance(app.screen, RunScreen))
            assert app.services.chat.model_name() == "run-model"
            answer = app.services.chat.ask("what now?")
        assert [line.text for line in answer] == ["Ask me about hinge_loss."]
        assert server.requests[0]["model"] == "run-model"
