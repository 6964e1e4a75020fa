"""Budgets mean what the person said (issue 19.2, 19.6): a budget not given does not bind when another is
given, the effective budgets are printed at start and kept in run.json, and zero or negative budgets are
refused with one sentence and exit code 2 everywhere — flags, config file, `disco control`, the TUI."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from agent_helpers import cli

from agent.config import load_config
from agent.runs import RunDir, RunMeta
from tui.commands import InputError, parse_input

CLEAN_ENV = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "DISCO_"))}
NO_LIMIT = dict.fromkeys(
    ("max_candidates", "hours", "max_tokens", "max_usd", "max_cpu_hours", "max_gpu_hours")
)


@pytest.mark.parametrize(
    ("file_budget", "flags", "effective", "defaulted"),
    [
        (None, None, {"max_candidates": 10}, True),
        ("", None, {"max_candidates": 10}, True),  # an empty [budget] table gives no budget
        (None, {"hours": 8}, {"hours": 8}, False),  # the README's `--hours 8` alone
        ("hours = 8", None, {"hours": 8}, False),
        (
            None,
            {"hours": 8, "max_usd": 5, "max_gpu_hours": 4},
            {"hours": 8, "max_usd": 5, "max_gpu_hours": 4},
            False,
        ),
        ("max_candidates = 50", {"hours": 1}, {"max_candidates": 50, "hours": 1}, False),
        ("max_candidates = 50\nhours = 8", {"hours": 2}, {"max_candidates": 50, "hours": 2}, False),
    ],
)
def test_only_the_budgets_given_bind(
    tmp_path: Path, file_budget: str | None, flags: dict[str, Any] | None, effective: dict, defaulted: bool
) -> None:
    path = None
    if file_budget is not None:
        path = tmp_path / "c.toml"
        path.write_text(f"[budget]\n{file_budget}\n")
    budget = load_config(path, {"budget": flags} if flags else None, env={}).budget
    assert budget.model_dump() == NO_LIMIT | effective
    assert budget.defaulted is defaulted


def test_hours_alone_has_no_candidate_limit_and_the_run_says_and_keeps_it(tmp_path: Path) -> None:
    env = CLEAN_ENV | {"DISCO_MODEL": "offline", "DISCO_CACHE": str(tmp_path / "cache")}
    proc = cli(tmp_path / "home", "run", "--hours", "0.000001", "--run-id", "h", "--quiet", env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    line = next(x for x in proc.stderr.splitlines() if x.startswith("budgets:"))
    assert line == "budgets: 1e-06 h; no limit on candidates, tokens, cost, CPU hours, GPU hours"
    meta = json.loads((tmp_path / "home" / "runs" / "h" / "run.json").read_text())
    assert meta["config"]["budget"] == NO_LIMIT | {"hours": 0.000001}, "a default must not bind"
    assert "time budget reached" in proc.stderr


def test_the_help_states_the_rule(tmp_path: Path) -> None:
    proc = cli(tmp_path, "run", "--help", env=CLEAN_ENV | {"COLUMNS": "100"})
    text = " ".join(proc.stdout.split())
    assert "--hours 8 alone runs for eight hours" in text
    assert "Only with no budget at all does a run stop after 10 candidates" in text


FLAG_ROWS = [
    ("--max-candidates", "-1"),
    ("--max-candidates", "0"),
    ("--hours", "-1"),
    ("--hours", "0"),
    ("--max-tokens", "0"),
    ("--max-usd", "-5"),
    ("--max-cpu-hours", "0"),
    ("--max-gpu-hours", "-0.5"),
]


@pytest.mark.parametrize(("flag", "value"), FLAG_ROWS)
def test_a_flag_that_is_not_positive_is_refused(tmp_path: Path, flag: str, value: str) -> None:
    proc = cli(tmp_path / "home", "run", flag, value, env=CLEAN_ENV)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"{flag} must be a positive number (leave it out for no limit), not {float(value):g}."
    ]
    assert not (tmp_path / "home").exists(), "nothing recorded"


@pytest.mark.parametrize(("flag", "value"), [("--hours", "-1"), ("--max-candidates", "0")])
def test_the_tui_refuses_them_before_starting_a_run(tmp_path: Path, flag: str, value: str) -> None:
    proc = cli(tmp_path / "home", "tui", flag, value, "--run-id", "t", env=CLEAN_ENV)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert f"{flag} must be a positive number" in proc.stderr
    assert not (tmp_path / "home" / "runs").exists() and not (tmp_path / "home" / "logs").exists()


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("hours = -1", "budget.hours: must be a positive number (leave it out for no limit), not -1"),
        ("max_candidates = 0", "budget.max_candidates: must be a positive number"),
        ("max_usd = nan", "budget.max_usd: must be a positive number"),
    ],
)
def test_a_config_budget_that_is_not_positive_is_refused(tmp_path: Path, toml: str, message: str) -> None:
    config = tmp_path / "c.toml"
    config.write_text(f"[budget]\n{toml}\n")
    proc = cli(tmp_path / "home", "run", "--config", str(config), env=CLEAN_ENV)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "home" / "runs").exists()


BUDGET_COMMANDS = [
    ("candidates=-5", "budget candidates must not be negative"),
    ("hours=0", "budget hours must be a positive number, or `none` for no limit"),
    ("usd=nan", "budget usd must be a positive number"),
]


@pytest.mark.parametrize(("arg", "message"), BUDGET_COMMANDS)
def test_control_and_the_tui_refuse_them_too(tmp_path: Path, arg: str, message: str) -> None:
    RunDir.create(tmp_path / "home" / "runs", RunMeta(run_id="r1", target="dpo", model="offline"))
    proc = cli(tmp_path / "home", "control", "r1", "budget", arg, env=CLEAN_ENV)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert message in proc.stderr
    assert not (tmp_path / "home" / "runs" / "r1" / "control.jsonl").exists(), "nothing sent"
    typed = parse_input(f"/budget {arg}", "r1")
    assert isinstance(typed, InputError) and message.replace("`none`", "none") in typed.message
