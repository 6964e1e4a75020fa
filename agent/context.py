"""The bounded design context: what of memory a design, reflect or repair prompt may show.

DiscoPOP and ADAS pasted the whole archive into every prompt, so each call grew with the run until it
no longer fitted. disco shows a fixed-size selection instead: the target's own texts, the k fittest
candidates, the k attempts most similar to what is being worked on, the k latest failures with what
fixed them, and the person's recent hints and pins. The size of a prompt therefore depends on k and on
the per-field caps below, never on how many attempts memory holds (evals/bench_prompt_tokens.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from pydantic import BaseModel, Field

from memory.records import FAILED_STATUSES, CandidateRecord, PastAttempt
from memory.store import FailureLesson, MemoryStore
from sandbox.redact import redact


class TargetText(Protocol):
    """The prompt material of a target (a subset of targets.base.Target, so plain holders work too)."""

    name: str
    description: str
    interface: str
    rules: list[str]
    fitness_meaning: str


class DesignContext(BaseModel):
    """Everything a design, reflect or repair prompt shows; bounded by ContextLimits."""

    target: str
    description: str
    interface: str
    rules: list[str]
    fitness_meaning: str
    best: list[PastAttempt] = Field(default_factory=list)
    """The fittest evaluated candidates, best first."""
    similar: list[PastAttempt] = Field(default_factory=list)
    """The attempts nearest to the query that no other section already shows, nearest first."""
    failures: list[PastAttempt] = Field(default_factory=list)
    """The latest failed attempts, each with its error and the candidate that fixed it."""
    hints: list[str] = Field(default_factory=list)
    """The person's latest hints, oldest first (the last one is the freshest)."""
    pinned: list[PastAttempt] = Field(default_factory=list)
    """Candidates the person pinned: always shown, never dropped for space."""
    vetoed: list[str] = Field(default_factory=list)
    """Names (ids when unknown) of candidates the person vetoed; their code never appears."""
    candidate_index: int = 0
    archive_size: int = 0
    """How many attempts of this target memory holds, so that the model knows it sees a selection."""
    omitted: int = 0
    """Attempts selected but left out to keep within `ContextLimits.max_attempt_chars`."""


class ContextLimits(BaseModel):
    """How much of memory a prompt may show. Every field caps a count or a length, so that the prompt
    has a fixed upper size whatever the archive's."""

    k_best: int = 5
    k_similar: int = 4
    k_failures: int = 3
    max_hints: int = 5
    max_code_chars: int = 2500
    """Longer code keeps its head and tail with a marker in between (the return is at the end)."""
    max_error_chars: int = 800
    """Longer errors keep mostly their tail (the last lines of a traceback say what broke)."""
    max_thought_chars: int = 1000
    """For pinned and best candidates, whose reasoning is what to build on."""
    max_brief_thought_chars: int = 400
    """For similar attempts and failures: there the code and the error carry the lesson."""
    max_hint_chars: int = 400
    max_pinned: int = 3
    max_vetoed_names: int = 12
    max_attempt_chars: int = 17_000
    """Cap on the code, thoughts and errors of all shown attempts together. When attempts are long, the
    last entries of the fuller of similar and failures go first (down to one each, then to none), then
    best down to one; pins are never dropped. With the caps above the whole design prompt stays under
    8k tokens (evals/results/prompt_tokens)."""


def clip(text: str, limit: int, *, tail_share: float = 1 / 3) -> str:
    """`text` redacted (it may quote a candidate) and cut to about `limit` characters with a visible
    marker where the cut is.

    Keeps `1 - tail_share` of the budget from the start and `tail_share` from the end, cut at line
    boundaries (else at spaces) when there are any, so that a clipped function still shows its
    signature and its return, and prose is not cut mid-word.
    """
    text = redact(text)  # before the cut: a secret cut in two is no longer recognised
    if len(text) <= limit:
        return text
    tail_n = int(limit * tail_share)
    head, tail = text[: limit - tail_n], text[len(text) - tail_n :] if tail_n else ""
    for sep in ("\n", " "):
        if sep in head[len(head) // 2 :]:
            head = head[: head.rindex(sep)]
            break
    for sep in ("\n", " "):
        if sep in tail[: len(tail) // 2]:
            tail = tail[tail.index(sep) + 1 :]
            break
    cut = len(text) - len(head) - len(tail)
    return f"{head}\n[… truncated: {cut} characters cut …]\n{tail}".rstrip("\n")


def attempt_from_record(
    rec: CandidateRecord,
    limits: ContextLimits,
    *,
    error: str | None = None,
    fixed_by: str | None = None,
    similarity: float | None = None,
    brief: bool = False,
) -> PastAttempt:
    """A record as a prompt shows it. The error is shown for failed attempts only: a proposed or
    evaluated record's stale error would tell the model something false. `brief` shortens the thought."""
    failed = rec.status in FAILED_STATUSES
    reason = (error or rec.failure_text()) if failed else None
    thought_limit = limits.max_brief_thought_chars if brief else limits.max_thought_chars
    return PastAttempt(
        id=rec.id,
        name=rec.name or rec.id,
        status=rec.status,
        fitness=rec.fitness,
        vs_baseline=rec.vs_baseline,
        # A thought states its idea first: keep the head.
        thought=clip(rec.thought.strip(), thought_limit, tail_share=0),
        code=clip(rec.code.strip("\n"), limits.max_code_chars),
        error=clip(reason.strip(), limits.max_error_chars, tail_share=2 / 3) if reason else None,
        fixed_by=fixed_by,
        similarity=similarity,
    )


def _size(a: PastAttempt) -> int:
    return len(a.code) + len(a.thought) + len(a.error or "")


def _fit_budget(ctx: DesignContext, budget: int) -> None:
    """Drop the least informative attempts until the shown attempts fit in `budget` characters.

    Similar attempts and failures shrink together (from the fuller one) so that neither lesson is lost
    entirely while the other is intact; the best go last, and one always stays.
    """
    total = sum(_size(a) for a in [*ctx.pinned, *ctx.best, *ctx.similar, *ctx.failures])
    rounds = (((ctx.similar, 1), (ctx.failures, 1)), ((ctx.similar, 0), (ctx.failures, 0)), ((ctx.best, 1),))
    for floors in rounds:
        while total > budget:
            fuller = [section for section, keep in floors if len(section) > keep]
            if not fuller:
                break
            total -= _size(max(fuller, key=len).pop())
            ctx.omitted += 1


def shrunk(ctx: DesignContext) -> DesignContext | None:
    """`ctx` with one attempt fewer, for a prompt too long for the model's context window (a local server's
    n_ctx): from the fuller of similar and failures first, then the best (the person's pins stay); None
    when only pins are left. Returns a copy: the caller's context is what the step records."""
    out = ctx.model_copy(deep=True)
    for section in (max(out.similar, out.failures, key=len), out.similar, out.failures, out.best):
        if section:
            section.pop()
            out.omitted += 1
            return out
    return None


def build_context(
    memory: MemoryStore,
    target: TargetText,
    *,
    query: str,
    hints: Sequence[str] = (),
    pinned_ids: Sequence[str] = (),
    vetoed_ids: Sequence[str] = (),
    candidate_index: int = 0,
    limits: ContextLimits | None = None,
) -> DesignContext:
    """The design context for the next candidate of `target`.

    `query` is what similar attempts are searched for: the last candidate's thought and code, or the
    target's description at the start. `vetoed_ids` may hold ids or names. A candidate appears once, in
    the most informative section it qualifies for: pinned (the person asked), best (fitness and code),
    failures (error and fix), similar; when a search hit is already shown above, that entry carries the
    similarity instead. Reads only; an empty memory gives a context with empty sections.
    """
    limits = limits or ContextLimits()
    vetoed = set(vetoed_ids)
    size = memory.count(target.name)  # a run sees its own target's attempts only, and counts only those

    def allowed(rec: CandidateRecord) -> bool:
        return rec.target == target.name and rec.id not in vetoed and rec.name not in vetoed

    shown: dict[str, PastAttempt] = {}

    def take(recs: Sequence[CandidateRecord], k: int) -> list[PastAttempt]:
        out = []
        for rec in recs:
            if len(out) < k and allowed(rec) and rec.id not in shown:
                shown[rec.id] = attempt_from_record(rec, limits)
                out.append(shown[rec.id])
        return out

    pinned_recs = memory.get_many(list(dict.fromkeys(pinned_ids))[-limits.max_pinned :]) if size else []
    pinned = take(pinned_recs, limits.max_pinned)
    # Ask for as many more as can be filtered out, so that vetoes and dedupe never shrink a section.
    extra = len(vetoed) + len(shown)
    best = take(memory.top_by_score(target.name, limits.k_best + extra), limits.k_best) if size else []

    failures: list[PastAttempt] = []
    if size and limits.k_failures:
        lessons = memory.recent_failures(target.name, limits.k_failures + len(vetoed) + len(shown))
        failures = _take_lessons(lessons, limits, allowed, shown, limits.k_failures)

    similar: list[PastAttempt] = []
    if size and limits.k_similar and query.strip():
        hits = memory.search(query, k=limits.k_similar + len(vetoed) + len(shown), target=target.name)
        for hit in hits:
            if hit.id in shown:  # already shown in a richer section: note how close it is there
                shown[hit.id].similarity = hit.similarity
            elif len(similar) < limits.k_similar and allowed(hit.record):
                similar.append(attempt_from_record(hit.record, limits, similarity=hit.similarity, brief=True))

    ctx = DesignContext(
        target=target.name,
        description=target.description.strip(),
        interface=target.interface.strip("\n"),
        rules=[r.strip() for r in target.rules if r.strip()],
        fitness_meaning=target.fitness_meaning.strip(),
        best=best,
        similar=similar,
        failures=failures,
        hints=[clip(h.strip(), limits.max_hint_chars, tail_share=0) for h in hints if h.strip()][
            -limits.max_hints :
        ],
        pinned=pinned,
        vetoed=_vetoed_names(memory, list(vetoed_ids), size)[-limits.max_vetoed_names :],
        candidate_index=candidate_index,
        archive_size=size,
    )
    _fit_budget(ctx, limits.max_attempt_chars)
    return ctx


def _take_lessons(
    lessons: list[FailureLesson],
    limits: ContextLimits,
    allowed: Callable[[CandidateRecord], bool],
    shown: dict[str, PastAttempt],
    k: int,
) -> list[PastAttempt]:
    """Failures not shown yet, each naming its fix (unless the fix itself was vetoed)."""
    out = []
    for lesson in lessons:
        rec, fixer = lesson.candidate, lesson.fixed_by
        if len(out) >= k or not allowed(rec) or rec.id in shown:
            continue
        fixed_by = (fixer.name or fixer.id) if fixer is not None and allowed(fixer) else None
        shown[rec.id] = attempt_from_record(
            rec, limits, error=lesson.error or None, fixed_by=fixed_by, brief=True
        )
        out.append(shown[rec.id])
    return out


def _vetoed_names(memory: MemoryStore, vetoed_ids: list[str], size: int) -> list[str]:
    """What the prompt calls the vetoed candidates: their names, or the given string when unknown."""
    found = {r.id: r.name or r.id for r in memory.get_many(vetoed_ids)} if size and vetoed_ids else {}
    return list(dict.fromkeys(found.get(v, v) for v in vetoed_ids))
