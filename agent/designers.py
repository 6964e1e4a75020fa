"""Who writes candidates: a model through the prompt templates, or the target's offline proposer.

Both satisfy `Designer`, so the graph is the same with or without an LLM. Every answer is keyed by its
step (`<candidate>/design`, `/reflect1`, `/repair2` …) and kept in the run's exchange log: a resumed
run gets the answer it already paid for, and `--replay` answers every step from a recorded run.
"""

from __future__ import annotations

import inspect
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar, cast

from pydantic import BaseModel

from agent.context import DesignContext, shrunk
from agent.models import CallUsage, Exchange, ExchangeLog, Model, ModelError
from agent.prompting import design_messages, reflect_messages, repair_messages
from agent.schemas import Draft, Reflection, RepairRequest
from targets.base import OfflineProposer, ParentInfo, Proposal, SeedCandidate

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)
OFFLINE = "offline"


@dataclass
class StepResult(Generic[T]):
    value: T
    usage: CallUsage | None = None
    parent_ids: list[str] = field(default_factory=list)
    hints_ignored: list[str] = field(default_factory=list)
    """The person's hints that this design could not act on (a model reads them all in its prompt)."""


class Designer(Protocol):
    model_name: str
    reflects: bool
    """False when reflection rounds are skipped by design (no model to critique with)."""

    def design(self, key: str, ctx: DesignContext) -> StepResult[Draft]: ...

    def reflect(
        self, key: str, ctx: DesignContext, draft: Draft, round_: int
    ) -> StepResult[Reflection | None]: ...

    def repair(self, key: str, ctx: DesignContext, request: RepairRequest) -> StepResult[Draft]: ...


def _inspiration(ctx: DesignContext) -> list[str]:
    """Lineage of a model's design: the pinned candidates and the best one it was shown."""
    ids = [p.id for p in ctx.pinned]
    if ctx.best and ctx.best[0].id not in ids:
        ids.append(ctx.best[0].id)
    return ids


class ModelDesigner:
    """An LLM (StructuredModel, or ReplayModel for `--replay`) writing through the prompt templates."""

    reflects = True

    def __init__(self, model: Model, model_name: str, own_log: ExchangeLog | None = None) -> None:
        self.model = model
        self.model_name = model_name
        self.own_log = own_log
        """Set when `model` answers from another run's log (replay): answers are copied into this run's."""

    def _ask(self, key: str, messages: list[dict[str, str]], schema: type[M]) -> tuple[M, CallUsage]:
        value, usage = self.model.ask(key, messages, schema)
        if self.own_log is not None and self.own_log.get(key) is None:
            self.own_log.append(
                Exchange(
                    key=key,
                    model=usage.model,
                    messages=messages,
                    reply=value.model_dump_json(),
                    parsed=value.model_dump(),
                    usage=usage,
                )
            )
        return value, usage

    def _fitted(
        self,
        key: str,
        ctx: DesignContext,
        messages: Callable[[DesignContext], list[dict[str, str]]],
        schema: type[M],
    ) -> tuple[M, CallUsage]:
        """Ask with the prompt `messages(ctx)` builds; when it is too long for the model's context window,
        with one past attempt fewer at a time until it fits: checked before asking where the window is
        known (no call, nothing logged), and after a refusal that taught it (`too_long`)."""
        while True:
            prompt = messages(ctx)
            if not self.model.fits(prompt) and (shorter := shrunk(ctx)) is not None:
                ctx = shorter
                continue
            try:
                return self._ask(key, prompt, schema)
            except ModelError as err:
                shorter = shrunk(ctx) if err.kind == "too_long" else None
                if shorter is None:
                    raise
                ctx = shorter

    def design(self, key: str, ctx: DesignContext) -> StepResult[Draft]:
        draft, usage = self._fitted(key, ctx, design_messages, Draft)
        return StepResult(draft, usage, _inspiration(ctx))

    def reflect(
        self, key: str, ctx: DesignContext, draft: Draft, round_: int
    ) -> StepResult[Reflection | None]:
        reflection, usage = self._fitted(key, ctx, lambda c: reflect_messages(c, draft, round_), Reflection)
        return StepResult(reflection, usage)

    def repair(self, key: str, ctx: DesignContext, request: RepairRequest) -> StepResult[Draft]:
        fixed, usage = self._fitted(key, ctx, lambda c: repair_messages(c, request), Draft)
        return StepResult(fixed, usage)


class _ProposeWithHints(Protocol):
    """A proposer's `propose` that also takes the person's hints (optional in `OfflineProposer`)."""

    def __call__(self, index: int, parents: list[ParentInfo], *, hints: list[str]) -> Proposal: ...


class OfflineDesigner:
    """The target's proposer in the designer's seat; reflection rounds are recorded as skipped.

    Proposals go into the exchange log like model answers (model "offline"), so that resume and replay
    treat both designers alike. With `replay` set, answers come only from that log.
    """

    model_name = OFFLINE
    reflects = False

    def __init__(
        self, proposer: OfflineProposer, log: ExchangeLog, replay: ExchangeLog | None = None
    ) -> None:
        self.proposer = proposer
        self.log = log
        self.replay = replay

    def _answer(self, key: str, make: Callable[[], Proposal]) -> StepResult[Draft]:
        for source in (self.log, self.replay):
            ex = source.get(key) if source is not None else None
            if ex is not None and ex.parsed is not None:
                if source is self.replay and self.log.get(key) is None:
                    self.log.append(ex)
                parsed = dict(ex.parsed)
                parents = list(parsed.pop("parent_ids", []))
                ignored = list(parsed.pop("hints_ignored", []))
                return StepResult(
                    Draft.model_validate(parsed), CallUsage(model=OFFLINE, cached=True), parents, ignored
                )
        if self.replay is not None:
            raise ModelError("replay_missing", f"The recorded run has no proposal for step {key}.")
        started = time.perf_counter()
        proposal = make()
        usage = CallUsage(model=OFFLINE, latency_s=time.perf_counter() - started, attempts=1)
        parsed = {
            "thought": proposal.thought,
            "name": proposal.name,
            "code": proposal.code,
            "parent_ids": proposal.parent_ids,
            "hints_ignored": proposal.hints_ignored,
        }
        self.log.append(
            Exchange(
                key=key, model=OFFLINE, messages=[], reply=json.dumps(parsed), parsed=parsed, usage=usage
            )
        )
        draft = Draft(thought=proposal.thought, name=proposal.name, code=proposal.code)
        return StepResult(draft, usage, list(proposal.parent_ids), list(proposal.hints_ignored))

    def design(self, key: str, ctx: DesignContext) -> StepResult[Draft]:
        seen: dict[str, ParentInfo] = {}
        for p in [*ctx.pinned, *ctx.best]:
            fitness = p.fitness.value if p.fitness else None
            seen.setdefault(p.id, ParentInfo(id=p.id, name=p.name, code=p.code, fitness=fitness))
        return self._answer(key, lambda: self._propose(ctx.candidate_index, list(seen.values()), ctx.hints))

    def _propose(self, index: int, parents: list[ParentInfo], hints: list[str]) -> Proposal:
        """The proposer's design; the hints go to a proposer that takes them, else all are not acted on."""
        if not hints:
            return self.proposer.propose(index, parents)
        if "hints" in inspect.signature(self.proposer.propose).parameters:
            return cast(_ProposeWithHints, self.proposer.propose)(index, parents, hints=list(hints))
        proposal = self.proposer.propose(index, parents)
        return proposal.model_copy(update={"hints_used": [], "hints_ignored": list(hints)})

    def reflect(
        self, key: str, ctx: DesignContext, draft: Draft, round_: int
    ) -> StepResult[Reflection | None]:
        return StepResult(None)

    def repair(self, key: str, ctx: DesignContext, request: RepairRequest) -> StepResult[Draft]:
        r = request
        return self._answer(
            key, lambda: self.proposer.repair(ctx.candidate_index, r.draft.code, r.failures, r.attempt)
        )


class SeedArchiveDesigner:
    """The target's seed archive first, then `inner` (ADAS measures its archive before it searches).

    Candidates 1 … len(seeds) are the seeds as they are: no model call, no reflection (they are known
    designs), but the same checks, evaluation, evidence and memory as any candidate, so that the first
    designs are shown measured seeds. A seed that fails its checks is repaired by `inner`. The seeds come
    from the target in a fixed order, so a resumed or replayed run sees the same ones at the same index.
    """

    def __init__(self, seeds: list[SeedCandidate], inner: Designer) -> None:
        self.seeds = seeds
        self.inner = inner
        self.model_name = inner.model_name
        self.reflects = inner.reflects

    @property
    def seed_count(self) -> int:
        return len(self.seeds)

    def _seed(self, ctx: DesignContext) -> SeedCandidate | None:
        return self.seeds[ctx.candidate_index - 1] if 1 <= ctx.candidate_index <= len(self.seeds) else None

    def design(self, key: str, ctx: DesignContext) -> StepResult[Draft]:
        seed = self._seed(ctx)
        if seed is None:
            return self.inner.design(key, ctx)
        draft = Draft(thought=seed.thought, name=seed.name, code=seed.code)
        return StepResult(draft, hints_ignored=list(ctx.hints))  # a seed is a fixed, known design

    def reflect(
        self, key: str, ctx: DesignContext, draft: Draft, round_: int
    ) -> StepResult[Reflection | None]:
        if self._seed(ctx) is not None:
            return StepResult(None)
        return self.inner.reflect(key, ctx, draft, round_)

    def repair(self, key: str, ctx: DesignContext, request: RepairRequest) -> StepResult[Draft]:
        return self.inner.repair(key, ctx, request)
