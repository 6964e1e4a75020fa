"""The loop as a LangGraph StateGraph: one invocation designs, checks, evaluates and records one candidate.

    START → plan → design → reflect ×N → check ─ok→ evaluate ─ok→ confirm → record → END | gpu_job → END
                      │                  │  ▲           │                   ▲
                      │                  │  └─ repair   └─ failed ──────────┤
                      └─ model failed ───┴─ still failing after max_repairs ─┘

`confirm` is evidence before best (docs/evidence.md): only a candidate that a paired bootstrap over seeds
shows better than the incumbent becomes the run's best.

The runner invokes it once per candidate on one checkpointed thread, so the recursion limit bounds one
candidate's steps, and a crash resumes the candidate in flight from its last completed node.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

from langgraph.graph import END, START, StateGraph

from agent.events import NodePayload
from agent.nodes import Loop
from agent.state import LoopState

NODES = ("plan", "design", "reflect", "check", "repair", "evaluate", "confirm", "record", "gpu_job")


class Node(Protocol):
    """A node as LangGraph calls it (by the parameter's name, `state`)."""

    def __call__(self, state: LoopState) -> dict[str, Any]: ...


def _timed(loop: Loop, name: str, fn: Callable[[LoopState], dict[str, Any]]) -> Node:
    """Wrap a node so that entering and leaving it are events (the TUI's "where is it now")."""

    def node(state: LoopState) -> dict[str, Any]:
        cid = state.get("candidate_id") if name != "plan" else None
        loop.s.events.append(NodePayload(node=name, phase="enter"), cid)
        started = time.perf_counter()
        update = fn(state)
        cid = update.get("candidate_id", cid)
        seconds = round(time.perf_counter() - started, 4)
        loop.s.events.append(NodePayload(node=name, phase="leave", seconds=seconds), cid)
        return update

    node.__name__ = name
    return node


def build_graph(loop: Loop, checkpointer: Any) -> Any:
    graph = StateGraph(LoopState)
    for name in NODES:
        graph.add_node(name, _timed(loop, name, getattr(loop, name)))
    graph.add_edge(START, "plan")
    graph.add_edge("plan", "design")
    graph.add_conditional_edges("design", loop.after_design, ["reflect", "check", "record"])
    graph.add_conditional_edges("reflect", loop.after_reflect, ["reflect", "check"])
    graph.add_conditional_edges("check", loop.after_check, ["evaluate", "repair", "record"])
    graph.add_conditional_edges("repair", loop.after_repair, ["check", "record"])
    graph.add_conditional_edges("evaluate", loop.after_evaluate, ["confirm", "record"])
    graph.add_edge("confirm", "record")
    graph.add_conditional_edges("record", loop.after_record, ["gpu_job", END])
    graph.add_edge("gpu_job", END)
    return graph.compile(checkpointer=checkpointer)
