"""The conversation's back end: the tool-calling chat agent (agent/chat.py) and memory queries, built on
first use. Every method blocks (a model call, loading the embedder): the TUI calls them from workers.

With no model configured the agent answers plainly that none is, and the slash commands still work.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sandbox.redact import redact
from tui.commands import MemoryQuery
from tui.view import Line

if TYPE_CHECKING:
    from memory.records import PastAttempt
    from tools.toolbox import ToolCall

OFFLINE_REPLY = (
    "No model is configured for chat, so I cannot answer in words. Name one with --model and --base-url, "
    "DISCO_MODEL and OPENAI_BASE_URL, or [models.meta] in config.toml. The /commands still work: /best, "
    "/similar TEXT, /failures, and, for a run, /pause /resume /stop /hint TEXT /pin ID /veto ID /budget "
    "KEY=VALUE."
)


def _fit(brief: PastAttempt) -> str:
    return brief.fitness.text() if brief.fitness else brief.status


class ChatService:
    def __init__(
        self,
        target: str | None = None,
        target_options: dict[str, Any] | None = None,
        toolbox: Any | None = None,
        chat_model: Any | None = None,
        overrides: dict[str, Any] | None = None,
        config_file: Path | None = None,
    ) -> None:
        self.target_name = target
        self.target_options = target_options
        self.overrides = overrides or {}
        """Config overrides: `--model`/`--base-url` of `disco chat`, or the attached run's own model."""
        self.config_file = config_file
        self._toolbox = toolbox
        self._chat_model = chat_model
        self._agent: Any = None
        self._settings: Any = None
        self._on_tool: Callable[[Line], None] | None = None
        self._lock = threading.Lock()
        """One question at a time: the agent's history is a list, not a queue."""

    def settings(self) -> Any:
        """The meta model's settings from the config file and environment (raises ConfigError)."""
        if self._settings is None:
            from agent.config import find_config_file, load_config
            from agent.home import disco_home

            config = load_config(find_config_file(self.config_file, disco_home()), self.overrides)
            self._settings = config.models.meta
            self.target_name = self.target_name or config.target
            if self.target_options is None:
                self.target_options = config.targets.get(self.target_name) or {}
        return self._settings

    def model_name(self) -> str:
        from agent.config import ConfigError

        try:
            return "offline" if self.settings().offline else self.settings().model
        except ConfigError:
            return "unconfigured"

    def toolbox(self) -> Any:
        if self._toolbox is None:
            from agent.home import cache_dir
            from agent.session import jobs_dir, open_store
            from targets.registry import get_target
            from tools.toolbox import Toolbox

            self.settings()
            target = get_target(self.target_name or "dpo", self.target_options, cache_dir())
            self._toolbox = Toolbox(target, open_store(), jobs_dir=jobs_dir())
        return self._toolbox

    def _build_agent(self) -> Any:
        from agent.chat import ChatAgent
        from tools.langchain_tools import as_langchain_tools

        box = self.toolbox()
        if self._chat_model is None:
            from agent.models import StructuredModel

            self._chat_model = StructuredModel(self.settings()).chat_model()
        return ChatAgent(
            self._chat_model,
            as_langchain_tools(box),
            target=box.target.name,
            description=box.target.description,
            on_call=self._tool_event,
            text_tools=self._text_tools(),
        )

    def _text_tools(self) -> bool:
        """The probe (agent.models.probe, cached in the data dir) found that the server answers in text
        when offered tools with `tool_choice: auto`: the chat describes them in the prompt instead."""
        from agent.config import ConfigError
        from agent.home import disco_home
        from agent.models.probe import cached

        try:
            found = cached(disco_home(), self.settings())
        except ConfigError:
            return False
        return found is not None and found.tools_auto.startswith("ignored")

    def _tool_event(self, call: ToolCall) -> None:
        if self._on_tool is not None:
            args = json.dumps(call.args)[:200]
            result = call.result.replace("\n", " ")[:300]
            self._on_tool(Line(f"tool {call.tool}({args}) → {result}", "dim", "tool"))

    def ask(self, text: str, on_tool: Callable[[Line], None] | None = None, context: str = "") -> list[Line]:
        """The agent's answer to `text`; each tool call goes to `on_tool` as it happens. `context` (the
        runs, the run being watched) goes with the first question of the conversation."""
        from openai import APIError

        from agent.config import ConfigError
        from agent.models import ModelConfigError

        with self._lock:
            try:
                if self._chat_model is None and self.settings().offline:
                    return [Line(OFFLINE_REPLY, "", "agent")]
                said: list[Line] = []
                if self._agent is None:
                    self._agent = self._build_agent()
                    if self._agent.text_tools:  # native tool calls go without saying
                        said.append(Line(f"chat: {self._agent.tool_protocol}", "dim", "system"))
                self._on_tool = on_tool
                first = len(self._agent.history) == 1  # only the system prompt so far
                reply = self._agent.ask(f"{context}\n\n{text}" if first and context else text)
            except (ConfigError, ModelConfigError) as exc:
                return [Line(f"the chat model is not usable: {exc}", "red", "system")]
            except APIError as exc:
                return [Line(f"the model did not answer: {exc}", "red", "system")]
            finally:
                self._on_tool = None
        return [*said, Line(reply.text, "", "agent")]

    def query(self, q: MemoryQuery) -> list[Line]:
        """A memory query typed as a slash command: no model needed."""
        from agent.config import ConfigError
        from memory.embeddings import EmbeddingError

        try:
            box = self.toolbox()
            if q.kind == "best":
                found = box.best(q.k)
                lines = [f"{b.id}  {b.name}  {_fit(b)}" for b in found]
            elif q.kind == "similar":
                found = box.similar(q.text, q.k)
                lines = [f"{b.id}  {b.name}  {_fit(b)}  similarity {b.similarity or 0:.2f}" for b in found]
            else:
                found = box.failures(q.k)
                lines = [
                    f"{x['failed']['id']}  {x['failed']['name']}: {redact(x['error'])[:160]}"
                    + (f"  → fixed by {x['fixed_by']['id']}" if x["fixed_by"] else "")
                    for x in found
                ]
        except (ConfigError, EmbeddingError) as exc:
            return [Line(f"/{q.kind} failed: {exc}", "red", "system")]
        head = Line(
            f"/{q.kind}: {len(lines)} found in memory" if lines else f"/{q.kind}: nothing in memory", "bold"
        )
        return [head, *(Line("  " + t, "", "tool") for t in lines)]
