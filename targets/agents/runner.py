"""One run of a candidate agent over tasks: the sandbox (no network) runs framework.run_agent, the proxy in
this process answers its model calls, and what comes back is every task's answer or error plus the
candidate's model usage. The sandbox gets each task's text and its proxy token, nothing else: no gold
answer, no item id (ids name the benchmark file's rows), no path; results come back by position and are
scored here."""

from __future__ import annotations

import math
import threading
from typing import Any

from pydantic import BaseModel, Field

from targets.agents.benchmarks import Item
from targets.agents.proxy import InnerModelProxy, ProxySettings, Usage
from targets.base import ModelEndpoint

STARTUP_S = 30.0
"""Room for the sandbox to start and install the code, on top of the waves' time: the first wave's tokens
live this long plus `task_timeout_s` from the session's start (see targets/agents/proxy.py)."""


class TaskOutcome(BaseModel):
    id: str
    answer: Any = None
    error: str | None = None
    seconds: float = 0.0


class RunOutcome(BaseModel):
    """What a sandbox run of the agent gave; `failure` is set when no task result came back at all."""

    tasks: list[TaskOutcome] = Field(default_factory=list)
    usage: Usage = Field(default_factory=Usage)
    call_log: list[tuple[str, float | None, str]] = Field(default_factory=list)
    """Every model call the agent made: (item id, temperature asked for, system prompt); the item is the
    one whose token the call carried."""
    failure: str = ""
    stderr: str = ""
    seconds: float = 0.0

    def blocked_by(self) -> str:
        """Why the inner model, not the agent's code, failed this run (every call the agent made failed, or
        the proxy found the endpoint down); "" when it did not."""
        u = self.usage
        if u.calls == 0 and (u.errors or u.refusals.get("endpoint_down")):
            detail = u.last_error or "no detail"
            return f"the inner model answered none of the agent's calls ({u.errors} failed: {detail})"
        return ""


def offline_sentence(endpoint: ModelEndpoint) -> str | None:
    """Why the inner model cannot be called, in one sentence; None when it can."""
    if endpoint.offline:
        return (
            "the agent-system target needs an inner model for its agents: set [models.inner] model and "
            "base_url (an OpenAI-compatible endpoint) in the config file"
        )
    if endpoint.base_url is None and endpoint.api_key is None:
        return (
            f"the inner model {endpoint.model!r} has no endpoint: set [models.inner] base_url, or "
            "OPENAI_API_KEY to use OpenAI"
        )
    return None


class AgentRunner:
    """Owns the proxy and the sandbox for one target; thread-safe enough for one evaluation at a time."""

    def __init__(
        self,
        endpoint: ModelEndpoint,
        proxy_settings: ProxySettings,
        sandbox: str = "local",
        concurrency: int = 4,
        memory_mb: int = 1024,
    ) -> None:
        self.proxy = InnerModelProxy(endpoint, proxy_settings)
        self.backend = sandbox
        self.concurrency = concurrency
        self.memory_mb = memory_mb
        self._sandbox: Any = None
        self._lock = threading.Lock()

    def sandbox(self) -> Any:
        if self._sandbox is None:
            from targets.kit import open_sandbox

            self._sandbox = open_sandbox(self.backend)
        return self._sandbox

    def run(
        self,
        code: str,
        items: list[Item],
        answer_hint: str,
        seed: int = 0,
        max_calls: int | None = None,
    ) -> RunOutcome:
        from sandbox.models import SandboxLimits, SandboxRequest

        with self._lock:
            self.proxy.start()
            settings = self.proxy.settings
            if max_calls is not None:
                settings = settings.model_copy(update={"max_calls": max_calls})
            timeout = settings.task_timeout_s
            waves = math.ceil(len(items) / max(1, self.concurrency))
            wall = waves * timeout + STARTUP_S
            with self.proxy.session(settings, wall_s=wall) as session:
                tokens = session.mint_waves([it.id for it in items], self.concurrency, STARTUP_S)
                request = SandboxRequest(
                    call="targets.agents.framework:run_agent",
                    kwargs={
                        "code": code,
                        "tasks": [
                            {"content": it.content, "token": token}
                            for it, token in zip(items, tokens, strict=True)
                        ],
                        "socket_path": self.proxy.socket_path,
                        "answer_hint": answer_hint,
                        "task_timeout_s": timeout,
                        "concurrency": self.concurrency,
                        "seed": seed,
                    },
                    preload=("targets.agents.framework",),
                    shared_dirs=(self.proxy.shared_dir,),
                    limits=SandboxLimits(
                        timeout_s=wall,
                        cpu_s=wall,
                        memory_mb=self.memory_mb,
                        max_processes=self.concurrency + 32,
                    ),
                )
                result = self.sandbox().run(request)
            usage, log = session.usage.model_copy(deep=True), list(session.log)
        outcome = RunOutcome(
            usage=usage, call_log=log, stderr=result.stderr[-4000:], seconds=result.duration_s
        )
        value = result.value if isinstance(result.value, dict) else None
        if result.status != "ok" or value is None:
            outcome.failure = f"the agent's sandbox run ended with {result.status}: {result.reason}"
            return outcome
        if value.get("error"):
            outcome.failure = str(value["error"])
            return outcome
        outcome.tasks = [
            TaskOutcome(
                id=it.id, **{k: r.get(k) for k in ("answer", "error")}, seconds=r.get("seconds") or 0.0
            )
            for it, r in zip(items, value.get("results") or [], strict=False)
        ]
        return outcome

    def close(self) -> None:
        self.proxy.close()
        if self._sandbox is not None:
            self._sandbox.close()
            self._sandbox = None
