"""The chat agent: a tool-calling conversation about the memory and the runs (the TUI's chat pane).

A plain loop over `bind_tools` (ask → run the tool calls → send the results back, at most `max_rounds`
times), so that every tool call and result is an event and nothing happens that the person cannot see.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, Field

from agent.prompting import render
from sandbox.redact import redact


class ToolCallRecord(BaseModel):
    name: str
    args: dict[str, Any]
    result: str


class ChatReply(BaseModel):
    text: str
    tool_calls: list[ToolCallRecord] = Field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0


class ChatAgent:
    def __init__(
        self,
        chat_model: Any,
        tools: list[Any],
        *,
        target: str,
        description: str,
        max_rounds: int = 6,
        event: Callable[..., Any] | None = None,
    ) -> None:
        from langchain_core.messages import SystemMessage

        self.model = chat_model.bind_tools(tools)
        self.tools = {t.name: t for t in tools}
        self.max_rounds = max_rounds
        self.event = event
        self.history: list[Any] = [SystemMessage(render("chat", target=target, description=description))]

    def ask(self, text: str) -> ChatReply:
        from langchain_core.messages import HumanMessage, ToolMessage

        self.history.append(HumanMessage(text))
        reply = ChatReply(text="")
        for _ in range(self.max_rounds):
            message = self.model.invoke(self.history)
            self.history.append(message)
            usage = message.usage_metadata or {}
            reply.prompt_tokens += usage.get("input_tokens", 0)
            reply.completion_tokens += usage.get("output_tokens", 0)
            if not message.tool_calls:
                reply.text = str(message.content or "").strip() or "(the model gave an empty answer)"
                break
            for call in message.tool_calls:
                tool = self.tools.get(call["name"])
                result = tool.invoke(call["args"]) if tool else f"error: there is no tool {call['name']!r}"
                result = redact(str(result))  # it may quote a candidate, and goes to the model and the TUI
                reply.tool_calls.append(
                    ToolCallRecord(name=call["name"], args=call["args"], result=str(result))
                )
                if self.event is not None:
                    self.event(
                        "tool",
                        None,
                        tool=call["name"],
                        args=call["args"],
                        result=str(result)[:500],
                        chat=True,
                    )
                self.history.append(ToolMessage(content=str(result), tool_call_id=call["id"]))
        else:
            reply.text = f"(stopped after {self.max_rounds} rounds of tool calls without an answer)"
        return reply
