"""JSON from models that may not do JSON: the prompt-mode instruction, extraction, and the fix round.

Pure functions on text and message lists, so the repair path is the same whatever the transport.
"""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import BaseModel, ValidationError

# --- JSON out of free text --------------------------------------------------------------------------------

_DECODER = json.JSONDecoder(strict=False)  # strict=False: models put raw newlines inside code strings


def extract_json(text: str) -> dict[str, Any] | None:
    """The first complete JSON object in `text`: ```json fences and prose around it are skipped."""
    for match in re.finditer(r"\{", text):
        try:
            value, _ = _DECODER.raw_decode(text, match.start())
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            return value
    return None


def describe_validation_error(err: ValidationError) -> str:
    """The validation errors, one per line, as a model can act on them (no pydantic URLs)."""
    lines = []
    for e in err.errors(include_url=False):
        where = ".".join(str(p) for p in e["loc"]) or "the object"
        lines.append(f"- {where}: {e['msg']}")
    return "\n".join(lines)


def schema_instruction(schema: type[BaseModel]) -> str:
    """What prompt mode adds to the request: the JSON schema and "one object, nothing else"."""
    return (
        "Reply with a single JSON object and nothing else (no prose, no code fences), valid against "
        f"this JSON schema:\n{json.dumps(schema.model_json_schema(), indent=2)}"
    )


def strict_json_schema(schema: type[BaseModel]) -> tuple[dict[str, Any], bool]:
    """The schema for `response_format`, and whether OpenAI's strict mode can take it.

    Strict mode needs `additionalProperties: false` on every object and every property required; a
    schema with optional fields is sent non-strict rather than rejected.
    """
    doc = schema.model_json_schema()
    strict = True

    def visit(node: Any) -> None:
        nonlocal strict
        if isinstance(node, dict):
            if node.get("type") == "object" and "properties" in node:
                node.setdefault("additionalProperties", False)
                strict &= set(node.get("required", [])) == set(node["properties"])
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    visit(doc)
    return doc, strict


# --- the conversation ----------------------------------------------------------------------------------


def add_schema_instruction(conversation: list[dict[str, str]], schema: type[BaseModel]) -> None:
    """Append the JSON instruction to the last user turn (a second user turn in a row breaks some chat
    templates, e.g. strictly alternating ones in llama.cpp)."""
    instruction = schema_instruction(schema)
    if conversation and conversation[-1].get("role") == "user":
        conversation[-1] = {**conversation[-1], "content": f"{conversation[-1]['content']}\n\n{instruction}"}
    else:
        conversation.append({"role": "user", "content": instruction})


FIX_EXCERPT_CHARS = 1500
"""The most of a bad reply a fix round quotes back: a small model that rambled to its token cap would
otherwise overflow the server's context with its own echo (issue 18.4)."""


def excerpt(text: str, limit: int = FIX_EXCERPT_CHARS) -> str:
    """`text`, or its head and tail with the middle cut and said to be cut."""
    if len(text) <= limit:
        return text
    keep = limit // 2
    return f"{text[:keep]}\n… [{len(text) - 2 * keep} characters cut] …\n{text[-keep:]}"


def add_fix_round(conversation: list[dict[str, str]], reply_text: str, problem: str) -> None:
    """Show the model (an excerpt of) its reply and the exact problem; an empty reply is not echoed
    (servers reject it)."""
    if reply_text.strip():
        conversation.append({"role": "assistant", "content": excerpt(reply_text)})
    conversation.append(
        {
            "role": "user",
            "content": f"Your previous reply could not be used: {problem}\n\nReply again with one corrected "
            "JSON object only, matching the schema, with no text before or after it.",
        }
    )
