"""The composition root: the services of a run or a chat, opened in one place for the runner, the TUI's
chat and the CLI. The layers below (tools, memory, targets) are handed what they need (the data dir's
job folder, an event sink) and never look for the data dir or import the agent."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the CLI imports this module to open memory: the rest is imported when a run opens
    from agent.config import RunConfig
    from agent.control import ControlState
    from agent.designers import Designer
    from agent.events import EventLog
    from agent.run_state import RunState
    from agent.runs import RunDir
    from memory.store import MemoryStore
    from targets.base import Target
    from tools.toolbox import OnCall, Toolbox, ToolCall


@dataclass
class Services:
    """What the loop's nodes use; `state` is the run's event log folded so far (agent.run_state), kept
    current as events are appended, so a node re-run after a kill logs nothing twice."""

    run: RunDir
    events: EventLog
    state: RunState
    target: Target
    memory: MemoryStore
    designer: Designer
    control: ControlState
    config: RunConfig
    tools: Toolbox


def open_store() -> MemoryStore:
    """The memory of the data dir in force, with the embedder the environment selects."""
    from agent.home import disco_home
    from memory.embeddings import EmbeddingConfig, make_embedder
    from memory.store import MemoryStore

    return MemoryStore(disco_home() / "memory", embedder=make_embedder(EmbeddingConfig.from_env()))


def jobs_dir() -> Path:
    """Where the data dir in force keeps its GPU job queue."""
    from agent.home import disco_home

    return disco_home() / "jobs"


def open_target(config: RunConfig) -> Target:
    from agent.config import target_env
    from agent.home import cache_dir
    from targets.registry import get_target

    return get_target(config.target, config.targets.get(config.target), target_env(config, cache_dir()))


def open_toolbox(
    config: RunConfig, target: Target, memory: MemoryStore | None = None, on_call: OnCall | None = None
) -> Toolbox:
    from tools.toolbox import Toolbox

    memory = memory if memory is not None else open_store()
    return Toolbox(target, memory, job_defaults=config.gpu.spec, on_call=on_call, jobs_dir=jobs_dir())


def tool_event(events: EventLog) -> OnCall:
    """A toolbox's calls as the run's `tool` events."""
    from agent.events import ToolPayload

    def on_call(call: ToolCall) -> None:
        events.append(ToolPayload(tool=call.tool, args=call.args, result=call.result), call.candidate)

    return on_call


def open_session(
    run: RunDir,
    config: RunConfig,
    events: EventLog,
    state: RunState,
    control: ControlState,
    target: Target,
    replay_of: RunDir | None = None,
) -> Services:
    """Everything a run's loop needs, in the order it must be opened: the designer (which probes the model
    endpoint), memory (with the target's baselines), the seed archive, the toolbox."""
    from agent.models import ExchangeLog

    designer = _designer(run, config, target, ExchangeLog(run.exchanges_path), replay_of, events)
    memory = open_store()
    if config.loop.baselines_in_memory:
        _baselines_into(memory, target, events)
    designer = _with_seed_archive(run, config, designer, target, memory, replay_of)
    tools = open_toolbox(config, target, memory, tool_event(events))
    if replay_of is not None:
        tools.ignore_runs = (replay_of.run_id,)
    return Services(run, events, state, target, memory, designer, control, config, tools)


def seed_count(run: RunDir) -> int:
    """Candidates 1 … n of a run are its target's seed archive (they do not count towards the budget)."""
    path = run.root / "seed_archive.json"
    return len(json.loads(path.read_text(encoding="utf-8"))) if path.exists() else 0


def _proposer_seed(run: RunDir, config: RunConfig) -> int:
    if config.loop.seed is not None:
        return config.loop.seed
    return int.from_bytes(hashlib.sha256(run.run_id.encode()).digest()[:4], "big")


def _designer(
    run: RunDir, config: RunConfig, target: Target, log: Any, replay_of: RunDir | None, events: EventLog
) -> Designer:
    from agent.designers import ModelDesigner, OfflineDesigner
    from agent.events import LlmPayload, ToolPayload
    from agent.models import ExchangeLog

    if replay_of is not None:
        recorded = replay_of.meta()
        replay_log = ExchangeLog(replay_of.exchanges_path)
        if recorded.model == "offline":
            return OfflineDesigner(
                target.offline_proposer(_proposer_seed(run, config)), log, replay=replay_log
            )
        from agent.models import ReplayModel

        return ModelDesigner(ReplayModel(replay_log), f"replay:{recorded.model}", own_log=log)
    settings = config.models.meta
    if settings.offline:
        return OfflineDesigner(target.offline_proposer(_proposer_seed(run, config)), log)
    from agent.models import StructuredModel
    from agent.models.probe import probed, with_probed

    settings.check_usable()
    # What the endpoint honours, probed once per data dir (runs/<id> is in it): the cap field and the mode
    # auto starts in. Without it, auto steps down as the server refuses formats.
    found, said = probed(run.root.parent.parent, settings)
    if said:
        args = {"endpoint": settings.endpoint, "model": settings.model}
        events.append(ToolPayload(tool="probe_model", args=args, result=said))
    settings, start_mode = with_probed(settings, found)

    def llm_event(ex: Any) -> None:
        """Every model call is an event: its step, tokens, cost, latency, and why it failed if it did."""
        u = ex.usage
        call = LlmPayload(
            key=ex.key,
            model=ex.model,
            prompt_tokens=u.prompt_tokens,
            completion_tokens=u.completion_tokens,
            usd=u.usd,
            latency_s=round(u.latency_s, 3),
            attempts=u.attempts,
            cached=u.cached,
            error=ex.error,
        )
        if u.estimated_tokens:
            call.estimated_tokens = u.estimated_tokens
        events.append(call)

    model = StructuredModel(settings, log=log, on_call=llm_event, start_mode=start_mode)
    return ModelDesigner(model, settings.model)


def _baselines_into(memory: MemoryStore, target: Target, events: EventLog) -> None:
    """The target's published methods into memory before the first candidate (once per data dir)."""
    from agent.events import ToolPayload
    from memory.baselines import seed_baselines

    baselines = getattr(target, "baselines", None)
    if baselines is None:
        return
    known = baselines()
    added = seed_baselines(memory, target.name, known)
    if added:
        names = ", ".join(b.name for b in known)
        events.append(
            ToolPayload(tool="seed_baselines", args={"target": target.name}, result=f"{added} {names}")
        )


def _with_seed_archive(
    run: RunDir,
    config: RunConfig,
    designer: Designer,
    target: Target,
    memory: MemoryStore,
    replay_of: RunDir | None,
) -> Designer:
    """Measure the target's seed archive first when the config or the target asks for it.

    The list is chosen once, without the seeds that memory already holds evaluated for this target, and
    kept in the run dir (`seed_archive.json`): a resumed run sees the same seeds at the same index although
    memory now holds them.
    """
    from agent.designers import SeedArchiveDesigner
    from agent.runs import write_json_atomically
    from memory.records import code_hash
    from targets.base import SeedCandidate, evaluates_seeds_first

    path = run.root / "seed_archive.json"
    if path.exists():
        seeds = [SeedCandidate.model_validate(s) for s in json.loads(path.read_text(encoding="utf-8"))]
    else:
        mode = config.loop.seed_archive
        wanted = mode == "evaluate" or (mode == "auto" and evaluates_seeds_first(target))
        seeds = []
        if wanted and replay_of is None:
            measured = memory.evaluated_code_hashes(target.name)
            seeds = [s for s in target.seeds() if code_hash(s.code) not in measured]
        write_json_atomically(path, json.dumps([s.model_dump() for s in seeds]))
    return SeedArchiveDesigner(seeds, designer) if seeds else designer
