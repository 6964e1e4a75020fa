"""Prompts as template files: render agent/prompts/*.j2 into chat messages for each step of the loop.

Templates are Jinja2 with StrictUndefined, so a missing variable is an error and never an empty string,
and every printed value passes a finaliser that refuses None: the two ways earlier systems sent the
model nothing where an error should be (DiscoPOP's `None` as stderr, ADAS's literal `{e}` from a
missing f-string prefix) fail here at render time instead.
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from typing import Any

import jinja2
from pydantic import BaseModel

from agent.context import DesignContext, clip
from agent.schemas import Draft, Reflection, RepairRequest
from sandbox.redact import redact
from targets.results import CheckResult

Message = dict[str, str]
MAX_TRACEBACK_CHARS = 1500
"""Tracebacks keep mostly their tail: the last frames and the exception say what broke."""
MAX_CHECK_MESSAGE_CHARS = 1200


class PromptError(Exception):
    """A prompt could not be rendered: a missing template, a missing variable or a None to print."""


def _load(name: str) -> tuple[str, str, Any] | None:
    path = resources.files("agent.prompts").joinpath(name)
    if not path.is_file():
        return None  # Jinja turns this into TemplateNotFound
    return path.read_text(encoding="utf-8"), name, lambda: True


def _refuse_none(value: Any) -> Any:
    if value is None:
        raise PromptError("a prompt template printed None; guard the value with `is not none`")
    return value


@functools.cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FunctionLoader(_load),
        undefined=jinja2.StrictUndefined,
        finalize=_refuse_none,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,  # plain text for a model, not HTML
        keep_trailing_newline=False,
    )


def render(template: str, **variables: Any) -> str:
    """Render agent/prompts/<template>.j2 (the suffix may be given or not) with `variables`.

    Raises PromptError for a missing template or variable, or a None that would be printed. The text is
    redacted (sandbox.redact); the pieces that are clipped were redacted before the cut (agent.context.clip).
    """
    name = template if template.endswith(".j2") else f"{template}.j2"
    try:
        text = _environment().get_template(name).render(**variables)
    except jinja2.TemplateNotFound:
        raise PromptError(f"no prompt template {name!r} in agent/prompts") from None
    except jinja2.UndefinedError as exc:
        raise PromptError(f"prompt template {name!r}: {exc.message}") from None
    # The last net before the endpoint: a prompt quotes candidates (checks, tracebacks, memory written by
    # any version of disco), and a secret one of them read must not reach the model.
    return redact(text.strip()) + "\n"


def _reply_spec(schema: type[BaseModel]) -> dict[str, Any]:
    """The keys the model must return, taken from the schema so that the prompt never drifts from it."""
    fields = [
        {"name": name, "description": field.description or ""} for name, field in schema.model_fields.items()
    ]
    example = json.dumps({f["name"]: "…" for f in fields}, ensure_ascii=False)
    return {"fields": fields, "example": example}


def _messages(ctx: DesignContext, template: str, schema: type[BaseModel], **variables: Any) -> list[Message]:
    system = render("system", target=ctx.target)
    user = render(template, ctx=ctx, **_reply_spec(schema), **variables)
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def design_messages(ctx: DesignContext) -> list[Message]:
    """System and user messages asking for a new candidate (a Draft) from the bounded context."""
    return _messages(ctx, "design", Draft)


def reflect_messages(ctx: DesignContext, draft: Draft, round: int) -> list[Message]:
    """Round 1: is the draft new compared with the similar attempts in memory? Round 2: the target's
    rules, correctness and numerical stability. Both ask for a Reflection.

    For round 1 the context should be built with the draft's thought and code as the query, so that
    "similar" means similar to the draft.
    """
    if round == 1:
        near = [a for a in (*ctx.pinned, *ctx.best, *ctx.failures) if a.similarity is not None]
        near = sorted([*near, *ctx.similar], key=lambda a: -(a.similarity or 0.0))
        shown = {a.id for a in near}
        others = [a for a in ctx.best if a.id not in shown]
        return _messages(ctx, "reflect_1", Reflection, draft=draft, near=near, others=others)
    if round == 2:
        return _messages(ctx, "reflect_2", Reflection, draft=draft)
    raise ValueError(f"reflection round must be 1 or 2, not {round}")


def _numbers(numbers: dict[str, float]) -> str:
    return ", ".join(f"{k} = {v:g}" for k, v in numbers.items())


def _check_view(check: CheckResult, code_lines: list[str], traceback: str | None) -> dict[str, Any]:
    """A failing check as the repair prompt shows it: nothing printed may be None or empty."""
    line = check.line
    code_line = code_lines[line - 1].strip() if line is not None and 0 < line <= len(code_lines) else ""
    tb = (check.traceback or "").strip()
    if tb and traceback is not None and tb == traceback.strip():
        tb = ""  # shown once, under the run's traceback
    return {
        "name": check.name,
        "level": check.level,
        "message": clip(check.message.strip(), MAX_CHECK_MESSAGE_CHARS)
        or f"the check `{check.name}` failed without a message",
        "numbers": _numbers(check.numbers),
        "line": line,
        "code_line": code_line,
        "traceback": clip(tb, MAX_TRACEBACK_CHARS, tail_share=2 / 3),
    }


def numbered(code: str) -> str:
    """The code with right-aligned 1-based line numbers, as check results count lines."""
    lines = code.rstrip("\n").split("\n")
    width = len(str(len(lines)))
    return "\n".join(f"{i:>{width}} | {line}".rstrip() for i, line in enumerate(lines, 1))


def repair_messages(ctx: DesignContext, request: RepairRequest) -> list[Message]:
    """System and user messages asking to repair `request.draft`, fed its failing checks and/or the
    traceback of the run that broke. Raises ValueError when there is nothing to report: a repair prompt
    without a reason is exactly the `None`-as-error bug this module exists to prevent."""
    draft, failures, traceback = request.draft, request.failures, request.traceback
    attempt, max_attempts = request.attempt, request.max_attempts
    if not 1 <= attempt <= max_attempts:
        raise ValueError(f"repair attempt {attempt} is outside 1..{max_attempts}")
    tb = (traceback or "").strip()
    if not failures and not tb:
        raise ValueError("a repair prompt needs at least one failing check or a traceback")
    code_lines = draft.code.rstrip("\n").split("\n")
    checks = [_check_view(c, code_lines, tb) for c in failures]
    return _messages(
        ctx,
        "repair",
        Draft,
        draft=draft,
        checks=checks,
        traceback=clip(tb, MAX_TRACEBACK_CHARS, tail_share=2 / 3),
        numbered_code=numbered(draft.code),
        attempt_no=attempt,
        max_attempts=max_attempts,
    )
