"""How a run leaves its step loop: `StopRun` at a step boundary, and the signals that ask for one."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
"""What a person, `timeout`, systemd, Slurm or a closing terminal sends: each asks for a clean stop."""


EndState = Literal["stopped", "finished", "failed"]
"""How a run's session ends (agent.runs.StatusState has these and the live states)."""


class StopRun(Exception):
    """Leave the step loop at a boundary; carries the run's final state and why."""

    def __init__(self, state: EndState, reason: str) -> None:
        super().__init__(reason)
        self.state: EndState = state
        self.reason = reason


@contextmanager
def stop_signals(flag: threading.Event) -> Iterator[None]:
    """A first SIGINT / SIGTERM / SIGHUP asks for a stop at the next step boundary (the step finishes and
    is recorded); a second one stops inside the step (still resumable: the step is re-run)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in STOP_SIGNALS}

    def handler(signum: int, frame: Any) -> None:
        if flag.is_set():  # a second signal: the person means it
            signal.signal(signal.SIGINT, signal.default_int_handler)
            raise KeyboardInterrupt
        flag.set()
        name = signal.Signals(signum).name
        print(f"{name}: stopping after the current step (again to stop now; both resume)", file=sys.stderr)

    for s in previous:
        signal.signal(s, handler)
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
