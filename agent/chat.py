"""The chat agent: a tool-calling conversation about the memory and the runs (the TUI's chat pane).

A plain loop over `bind_tools` (ask → run the tool calls → send the results back, at most `max_rounds`
times), so that every tool call and result is an event and nothing happens that the person cannot see.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from agent.prompting import render
from sandbox.redact import redact

if TYPE_CHECKING:
    from tools.toolbox import OnCall


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
        on_call: OnCall | None = None,
        text_tools: bool = False,
    ) -> None:
        """`text_tools`: for servers that ignore `tool_choice: auto` (they answer in text when offered
        tools, agent.models.probe): the tools are described in the prompt and called by a JSON reply."""
        from langchain_core.messages import SystemMessage

        self.text_tools = text_tools
        self.model = chat_model if text_tools else chat_model.bind_tools(tools)
        self.tools = {t.name: t for t in tools}
        self.max_rounds = max_rounds
        self.on_call = on_call
        system = render("chat", target=target, description=description)
        if text_tools:
            system += "\n\n" + text_tool_protocol(tools)
        self.history: list[Any] = [SystemMessage(system)]

    @property
    def tool_protocol(self) -> str:
        """Which way tools are called, in words, for the person."""
        if self.text_tools:
            return "tools by a JSON reply in text (the server ignores tool_choice: auto)"
        return "native tool calls"

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
            if self.text_tools:
                call = _text_tool_call(str(message.content or ""), self.tools)
                if call is None:
                    reply.text = str(message.content or "").strip() or "(the model gave an empty answer)"
                    break
                result = self._run(reply, call[0], call[1])
                self.history.append(HumanMessage(f"Result of {call[0]}:\n{result}"))
                continue
            if not message.tool_calls:
                reply.text = str(message.content or "").strip() or "(the model gave an empty answer)"
                break
            for call in message.tool_calls:
                result = self._run(reply, call["name"], call["args"])
                self.history.append(ToolMessage(content=result, tool_call_id=call["id"]))
        else:
            reply.text = f"(stopped after {self.max_rounds} rounds of tool calls without an answer)"
        return reply

    def _run(self, reply: ChatReply, name: str, args: dict[str, Any]) -> str:
        tool = self.tools.get(name)
        result = tool.invoke(args) if tool else f"error: there is no tool {name!r}"
        result = redact(str(result))  # it may quote a candidate, and goes to the model and the TUI
        reply.tool_calls.append(ToolCallRecord(name=name, args=args, result=result))
        if self.on_call is not None:
            from tools.toolbox import ToolCall

            self.on_call(ToolCall(tool=name, args=args, result=result[:500], chat=True))
        return result


def text_tool_protocol(tools: list[Any]) -> str:
    """The tools as the prompt describes them when the server will not call them itself."""
    lines = [
        "You can use these tools. To use one, reply with only a JSON object "
        '{"tool": NAME, "args": {...}} and nothing else; you will get its result. To answer the person, '
        "reply in plain text (no JSON).",
    ]
    for tool in tools:
        args = json.dumps(tool.args) if getattr(tool, "args", None) else "{}"
        lines.append(f"- {tool.name}: {tool.description.strip().splitlines()[0]} Arguments: {args}")
    return "\n".join(lines)


def _text_tool_call(text: str, tools: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """(name, args) when the reply is a tool call of the text protocol, else None (it is the answer)."""
    from agent.models.jsontext import extract_json

    data = extract_json(text)
    if not data or data.get("tool") not in tools:
        return None
    args = data.get("args")
    return str(data["tool"]), args if isinstance(args, dict) else {}
