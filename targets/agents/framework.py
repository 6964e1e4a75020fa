"""The LLM-agent framework of ADAS, run INSIDE the sandbox: `Info`, `LLMAgentBase`, `AgentSystem`, and the
loop that runs a candidate's `forward(self, taskInfo)` over tasks, one forked process per task.

Unlike ADAS's search.py, no API client and no key live here: every model call is one JSON line to the
proxy in the parent process (targets/agents/proxy.py) over a Unix socket, carrying the token that the
parent minted for the task; the proxy picks the inner model and enforces the rate limit, the task's
deadline and the candidate's budget. Each task runs in its own child process (and process group) that is
killed at its deadline, so a candidate stuck in a loop costs one task, not the run; when a task is over,
its token is given back (`end`), so nothing it left behind can call the model on its behalf. Tasks carry
their text and token only: no item id, no gold answer.
Imports: the standard library only (this module is the sandbox worker's preload).
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import random
import re
import select
import signal
import socket
import string
import time
import traceback
from collections import namedtuple
from collections.abc import Callable
from typing import Any

Info = namedtuple("Info", ["name", "author", "content", "iteration_idx"])

FORMAT_INST = (
    "Reply EXACTLY with the following JSON format.\n{fields}\n"
    "DO NOT MISS ANY REQUEST FIELDS and ensure that your response is a well-formed JSON object!\n"
)
MAX_REPLY_BYTES = 4 << 20
_STATE: dict[str, Any] = {
    "socket": None,
    "token": "",
    "hint": "",
    "deadline": None,
    "seed": None,
}
"""Set by `run_agent` in each task's process: where the proxy listens and the task's token."""


class ModelCallError(RuntimeError):
    """The proxy refused the call (budget, timeout, rate) or the inner model failed."""


def _ask(system: str, prompt: str, temperature: float | None) -> str:
    """One chat call through the proxy; the reply's text."""
    if not _STATE["socket"]:
        raise ModelCallError("no model proxy is configured for this process")
    left = None if _STATE["deadline"] is None else _STATE["deadline"] - time.monotonic()
    if left is not None and left <= 0:
        raise ModelCallError("the task has no time left for a model call")
    request = {
        "token": _STATE["token"],
        "system": system,
        "prompt": prompt,
        "temperature": temperature,
        "seed": _STATE.get("seed"),
    }
    reply = _send(_STATE["socket"], request, None if left is None else left + 5.0)
    if not reply.get("ok"):
        raise ModelCallError(str(reply.get("error") or "the model call failed"))
    return str(reply.get("content") or "")


def _send(path: str, request: dict[str, Any], timeout: float | None) -> dict[str, Any]:
    """One request line to the proxy and its one reply line."""
    data = b""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(timeout)
        try:
            conn.connect(path)
            conn.sendall(json.dumps(request).encode() + b"\n")
            while not data.endswith(b"\n") and len(data) < MAX_REPLY_BYTES:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                data += chunk
        except OSError as exc:
            raise ModelCallError(f"the model proxy did not answer: {exc}") from None
    if not data:
        raise ModelCallError(
            "the model proxy closed the connection without an answer (the evaluation's time is up, or too "
            "many calls were open at once)"
        )
    try:
        reply = json.loads(data)
    except ValueError:
        raise ModelCallError("the model proxy sent a malformed reply") from None
    if not isinstance(reply, dict):
        raise ModelCallError("the model proxy sent a malformed reply")
    return reply


def _end_task(token: str) -> None:
    """Tell the proxy that a task is over, so that its token dies now (best effort: it dies at its
    deadline anyway)."""
    if not _STATE["socket"] or not token:
        return
    with contextlib.suppress(ModelCallError):
        _send(_STATE["socket"], {"op": "end", "token": token}, 2.0)


def parse_json_reply(text: str) -> dict[str, Any]:
    """The JSON object in a model's reply: plain, fenced in ``` or embedded in prose; {} when none."""
    candidates = [text.strip()]
    fenced = re.search(r"```(?:json)?\s*(.*?)```", text, re.DOTALL)
    if fenced:
        candidates.append(fenced.group(1).strip())
    start, end = text.find("{"), text.rfind("}")
    if 0 <= start < end:
        candidates.append(text[start : end + 1])
    for candidate in candidates:
        try:
            value = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return {}


def _random_id(length: int = 4) -> str:
    return "".join(random.choice(string.ascii_letters + string.digits) for _ in range(length))


class LLMAgentBase:
    """An agent that asks the inner model for the named JSON fields (ADAS's block). `model` is accepted for
    ADAS's code but ignored: the inner model is the configuration's, applied by the proxy."""

    def __init__(
        self,
        output_fields: list[str],
        agent_name: str,
        role: str = "helpful assistant",
        model: str | None = None,
        temperature: float = 0.5,
    ) -> None:
        self.output_fields = list(output_fields)
        self.agent_name = agent_name
        self.role = role
        self.model = model
        self.temperature = temperature
        self.id = _random_id()

    def generate_prompt(self, input_infos: list[Any], instruction: str) -> tuple[str, str]:
        hint = _STATE["hint"]
        fields = {
            key: f"Your {key}." if "answer" not in key else f"Your {key}. {hint}".strip()
            for key in self.output_fields
        }
        system = f"You are a {self.role}.\n\n" + FORMAT_INST.format(fields=json.dumps(fields, indent=1))
        text = ""
        for info in input_infos:
            if not isinstance(info, Info):
                continue
            name, author, content, iteration_idx = info
            if author == repr(self):
                author += " (yourself)"
            if name == "task":
                text += f"# Your Task:\n{content}\n\n"
            elif iteration_idx != -1:
                text += f"### {name} #{iteration_idx + 1} by {author}:\n{content}\n\n"
            else:
                text += f"### {name} by {author}:\n{content}\n\n"
        return system, text + instruction

    def query(self, input_infos: list[Any], instruction: str, iteration_idx: int = -1) -> list[Info]:
        system, prompt = self.generate_prompt(input_infos, instruction)
        reply = parse_json_reply(_ask(system, prompt, self.temperature))
        # In the order asked for (ADAS returned the reply's own key order, so `thinking, answer = ...` could
        # swap); a field the model left out is empty, as in ADAS.
        return [Info(key, repr(self), _text(reply.get(key, "")), iteration_idx) for key in self.output_fields]

    def __repr__(self) -> str:
        return f"{self.agent_name} {self.id}"

    def __call__(self, input_infos: list[Any], instruction: str, iteration_idx: int = -1) -> list[Info]:
        return self.query(input_infos, instruction, iteration_idx=iteration_idx)


def _text(value: Any) -> Any:
    """Field values as ADAS's agents expect them: strings, except lists (grids) and numbers kept as JSON."""
    return value if isinstance(value, str | int | float | list) else json.dumps(value)


class AgentSystem:
    """The object whose `forward` is the candidate's."""

    forward: Callable[[Any], Any]


def install(code: str) -> Any:
    """Execute the candidate's module and return an AgentSystem whose `forward` is its function."""
    namespace: dict[str, Any] = {"Info": Info, "LLMAgentBase": LLMAgentBase, "AgentSystem": AgentSystem}
    exec(compile(code, "<candidate>", "exec"), namespace)  # inside the sandbox, by design
    forward = namespace.get("forward")
    if not callable(forward):
        raise NameError("the code defines no function `forward(self, taskInfo)`")
    system = AgentSystem()
    system.forward = forward.__get__(system)
    return system


def describe_error(exc: BaseException) -> str:
    """`Type: message (candidate line N)`: what a model needs to repair the code."""
    lines = [f.lineno for f in traceback.extract_tb(exc.__traceback__) if f.filename == "<candidate>"]
    where = f" (candidate line {lines[-1]})" if lines else ""
    return f"{type(exc).__name__}: {exc}{where}"[:1000]


def _jsonable(answer: Any, max_chars: int) -> Any:
    if isinstance(answer, Info):
        answer = answer.content
    try:
        json.dumps(answer)
    except (TypeError, ValueError):
        answer = str(answer)
    if isinstance(answer, str):
        answer = answer[:max_chars]
    return answer


def _task(system: Any, task: dict[str, str], seed: int, max_chars: int) -> dict[str, Any]:
    start = time.monotonic()
    random.seed(seed)
    try:
        answer = system.forward(Info("task", "User", task["content"], -1))
        out: dict[str, Any] = {"answer": _jsonable(answer, max_chars), "error": None}
    except BaseException as exc:  # the candidate's failure on this task is data, whatever it raised
        out = {"answer": None, "error": describe_error(exc)}
    out["seconds"] = round(time.monotonic() - start, 3)
    return out


def run_agent(
    code: str,
    tasks: list[dict[str, str]],
    socket_path: str,
    answer_hint: str = "",
    task_timeout_s: float = 60.0,
    concurrency: int = 4,
    seed: int = 0,
    max_answer_chars: int = 2000,
) -> dict[str, Any]:
    """The sandbox's entry point: every task's answer or error, in order. Each task is
    `{"content": text, "token": its proxy token}`. `error` is set (and `results` is empty) when the code
    itself cannot be installed."""
    _STATE.update(socket=socket_path, token="", hint=answer_hint, seed=seed)
    try:
        system = install(code)
    except BaseException as exc:  # a syntax error, a failing top level or no forward: the candidate's fault
        return {"error": describe_error(exc), "results": []}
    results: list[dict[str, Any] | None] = [None] * len(tasks)
    running: dict[int, tuple[int, int, float, bytearray]] = {}  # read fd -> (index, pid, deadline, data)
    queue = list(range(len(tasks)))
    while queue or running:
        while queue and len(running) < max(1, concurrency):
            index = queue.pop(0)
            fd, pid = _fork_task(system, tasks[index], index, seed, task_timeout_s, max_answer_chars)
            running[fd] = (index, pid, time.monotonic() + task_timeout_s, bytearray())
        nearest = min(d for _, _, d, _ in running.values())
        ready, _, _ = select.select(list(running), [], [], max(0.0, nearest - time.monotonic()))
        for fd in ready:
            chunk = os.read(fd, 65536)
            if chunk:
                running[fd][3].extend(chunk)
                continue
            index, pid, _, data = running.pop(fd)
            os.close(fd)
            _, status = os.waitpid(pid, 0)
            _stop_task(pid, tasks[index])
            results[index] = _decode(data, status)
        now = time.monotonic()
        for fd in [fd for fd, (_, _, d, _) in running.items() if d <= now]:
            index, pid, _, _ = running.pop(fd)
            _kill(pid)
            os.waitpid(pid, 0)
            _stop_task(pid, tasks[index])
            os.close(fd)
            message = f"TimeoutError: the task ran past its {task_timeout_s:g} s limit and was stopped"
            results[index] = {"answer": None, "error": message, "seconds": task_timeout_s}
    return {"error": None, "results": results}


def _kill(pid: int) -> None:
    """SIGKILL a task's process group (the task and what it started), or the task alone."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def _stop_task(pid: int, task: dict[str, str]) -> None:
    """A task is over: whatever it left running is killed and its token given back."""
    _kill(pid)
    _end_task(task.get("token", ""))


def _fork_task(
    system: Any, task: dict[str, str], index: int, seed: int, timeout_s: float, max_chars: int
) -> tuple[int, int]:
    read_fd, write_fd = os.pipe()
    # What the child inherits stays out of its garbage collector: a finalizer of the parent's garbage may
    # wait for a thread the child does not have, and hang the task (see sandbox/fork.py; stdlib only here).
    enabled = gc.isenabled()
    gc.disable()
    pid = os.fork()
    if pid == 0:
        gc.freeze()
    if enabled:
        gc.enable()
    if pid == 0:  # the task's own process: run, write one JSON result, leave without cleanup
        code = 0
        try:
            os.setpgid(0, 0)  # its own group: the task and its children are stopped together
            os.close(read_fd)
            _STATE.update(token=task.get("token", ""), deadline=time.monotonic() + timeout_s)
            payload = json.dumps(_task(system, task, seed * 1_000_003 + index, max_chars)).encode()
            view = memoryview(payload)
            while view:
                view = view[os.write(write_fd, view) :]
        except BaseException:
            code = 1
        os._exit(code)
    os.close(write_fd)
    return read_fd, pid


def _decode(data: bytearray, status: int) -> dict[str, Any]:
    try:
        return json.loads(bytes(data))
    except ValueError:
        code = os.waitstatus_to_exitcode(status)
        why = f"signal {-code}" if code < 0 else f"exit status {code}"
        return {"answer": None, "error": f"the task's process died ({why}) without an answer", "seconds": 0.0}
