"""Model access: settings per role, the live client, and record/replay of exchanges.

- `settings.py`: `ModelSettings` / `ModelsConfig`, layered with `settings_from_env`.
- `client.py`: `StructuredModel`, validated answers from any OpenAI-compatible endpoint (ChatOpenAI).
- `recording.py`: `ExchangeLog` (the run's exchanges.jsonl, also the resume cache) and `ReplayModel`.
- `jsontext.py`: JSON out of free text, the prompt-mode instruction and the fix round.
- `base.py`: `CallUsage`, `UsageTotals`, `ModelError` and its kinds.

langchain-openai is imported only when a model is first called, so importing this package is cheap.
"""

from __future__ import annotations

from typing import Protocol, TypeVar

from pydantic import BaseModel

from agent.models.base import CallUsage, ErrorKind, ModelError, UsageTotals
from agent.models.client import StructuredModel
from agent.models.jsontext import extract_json
from agent.models.recording import Exchange, ExchangeLog, ReplayModel
from agent.models.settings import (
    OFFLINE,
    ModelConfigError,
    ModelsConfig,
    ModelSettings,
    settings_from_env,
)

T = TypeVar("T", bound=BaseModel)


class Model(Protocol):
    """The seam between the loop and whatever answers it: a live endpoint, a replay, a scripted test."""

    def ask(self, key: str, messages: list[dict[str, str]], schema: type[T]) -> tuple[T, CallUsage]:
        """A validated `schema` object for step `key`, and what it cost; raises ModelError on failure."""
        ...

    def fits(self, messages: list[dict[str, str]]) -> bool:
        """Whether the prompt leaves room for a reply in the model's context window, as far as known: a
        caller shortens it before asking rather than spend a failed call."""
        ...


__all__ = [
    "OFFLINE",
    "CallUsage",
    "ErrorKind",
    "Exchange",
    "ExchangeLog",
    "Model",
    "ModelConfigError",
    "ModelError",
    "ModelSettings",
    "ModelsConfig",
    "ReplayModel",
    "StructuredModel",
    "UsageTotals",
    "extract_json",
    "settings_from_env",
]
