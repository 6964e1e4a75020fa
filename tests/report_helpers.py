"""A real run for the report tests: the real loop on the DPO target's tiny preset, a scripted model behind
the fake OpenAI-compatible server, and one candidate of each fate.

    #1  evaluated, with markup and a `$` in its name and a <script> in its thought (escaping, mathtext)
    #2  check_failed: inf at extreme margins, then code that raises, through three repairs
    #3  rejected: vetoed by the person before it was checked
    #4  evaluated
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from agent_helpers import BROKEN_CODE, distinct, kind_of, start, tiny_config
from fake_openai import FakeOpenAI

from agent.control import parse_command, send
from agent.home import set_home
from agent.runs import RunDir, RunStatus

HOSTILE_NAME = r"good_<b>one</b>_$\alpha^$"
"""Markup for the HTML, and mathtext that matplotlib cannot parse unless the report escapes it."""
HOSTILE_THOUGHT = 'Sharper DPO. <script>alert("pwned")</script> & <img src="https://example.com/x.png">'
OVERFLOW_CODE = """
def overflow_loss(
    self, policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps
):
    rho = (policy_chosen_logps - policy_rejected_logps) - (reference_chosen_logps - reference_rejected_logps)
    return torch.exp(-self.beta * rho)  # (B,) finite on ordinary margins, inf at extreme ones
"""


def responder() -> Any:
    """Answers each step for the candidate being designed (counted by design requests)."""
    designs = {"n": 0}

    def answer(body: dict[str, Any]) -> dict[str, Any]:
        step = kind_of(body)
        if step == "design":
            designs["n"] += 1
        n = designs["n"]
        name, thought, code = f"cand_{n}", f"candidate {n}", distinct("design", n)
        if n == 1:
            name, thought = HOSTILE_NAME, HOSTILE_THOUGHT
        elif n == 2:
            name, code = "overflow_then_broken", BROKEN_CODE if step == "repair" else OVERFLOW_CODE
        reply = {"thought": thought, "name": name, "code": code}
        if step.startswith("reflect"):
            reply = {"reflection": "looks fine"} | reply
        return reply

    return answer


def build_run(runs_root: Path, run_id: str = "rep") -> tuple[RunDir, RunStatus]:
    with FakeOpenAI() as server:
        server.default = responder()
        meta = {
            "model": "fake-model",
            "base_url": server.base_url,
            "api_key": "k",
            "timeout_s": 10,
            "max_retries": 0,
            "usd_per_mtok_in": 1.0,
            "usd_per_mtok_out": 2.0,
        }
        config = tiny_config(models={"meta": meta}, budget={"max_candidates": 4})
        runner, run = start(runs_root, config, run_id)
        send(run.control_path, parse_command("veto", f"{run_id}-0003"))
        status = runner.execute()
    return run, status


_BUILT: list[tuple[Path, RunDir]] = []


@pytest.fixture(scope="session", name="report_run")
def report_run_fixture(tmp_path_factory: pytest.TempPathFactory, shared_cache: Path) -> tuple[Path, RunDir]:
    """(data dir, run) of `build_run`, built once per session for both report test files (each file that
    imports the fixture registers its own copy, hence the module-level memo)."""
    if _BUILT:
        return _BUILT[0]
    home = tmp_path_factory.mktemp("report-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DISCO_CACHE", str(shared_cache))
        set_home(home)
        try:
            run, status = build_run(home / "runs")
        finally:
            set_home(None)
    assert status.state == "finished", status.reason
    _BUILT.append((home, run))
    return home, run


def resource_urls(html: str) -> list[str]:
    """Every URL the page would load or link to: src/href attributes, CSS url(…) and @import."""
    attrs = re.findall(r"""\b(?:src|href|srcset|action|poster|data)\s*=\s*["']([^"']*)["']""", html, re.I)
    css = re.findall(r"""url\(\s*["']?([^"')]*)""", html, re.I)
    imports = re.findall(r"""@import\s+["']([^"']*)""", html, re.I)
    return attrs + css + imports
