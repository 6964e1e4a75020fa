"""`disco bench losses` end to end: the real CLI, the real toy task, TRL training in worker processes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

NAN_LOSS = """
def always_nan(
    self, policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps
):
    rho = (policy_chosen_logps - policy_rejected_logps) - (reference_chosen_logps - reference_rejected_logps)
    return -F.logsigmoid(self.beta * rho) * float("nan")  # (B,) NaN from the first step
"""

ESCAPING_LOSS = """
def escaping(
    self, policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps
):
    import os
    os.system("touch /tmp/disco-escaped")
    return policy_chosen_logps * 0
"""


@pytest.fixture(scope="module")
def bench_json(tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("bench")
    (tmp / "always_nan.py").write_text(NAN_LOSS)
    (tmp / "escaping.py").write_text(ESCAPING_LOSS)
    losses = f"slic,{tmp / 'always_nan.py'},{tmp / 'escaping.py'}"
    cmd = [
        sys.executable,
        "-m",
        "agent.cli",
        "--home",
        str(tmp / "home"),
        "bench",
        "losses",
        "--losses",
        losses,
        "--betas",
        "0.5",
        "--seeds",
        "1",
        "--json",
        "--out",
        str(tmp / "out"),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=Path(__file__).parent.parent)
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(proc.stdout)  # one JSON document on stdout, nothing else
    doc["_out"] = str(tmp / "out")
    return doc


def test_reports_reward_kl_and_fitness_with_ci_per_loss(bench_json: dict) -> None:
    assert bench_json["losses"] == ["slic", "always_nan", "escaping", "dpo"]  # DPO added as the baseline
    for name in ("slic", "dpo"):
        res = bench_json["results"][name]
        point = res["frontier"][0]
        assert point["beta"] == 0.5 and point["statuses"] == ["ok"]
        assert -1.0 <= point["reward"] <= 1.0
        assert point["kl"] > 0.0  # training moved the policy away from the reference
        fit = res["fitness"]
        assert fit["ci_low"] <= fit["value"] <= fit["ci_high"]
    assert bench_json["protocol"]["name"] == "fresh" and bench_json["protocol"]["beta"] == "fixed"
    vs = bench_json["results"]["slic"]["vs_dpo"]
    assert set(vs) >= {"diff", "ci_low", "ci_high", "n_seeds", "verdict", "tested_at"}
    assert vs["ci_low"] <= vs["diff"] <= vs["ci_high"] and vs["n_seeds"] == 1
    assert vs["verdict"] in ("better", "worse", "not_separated")
    assert bench_json["results"]["dpo"]["vs_dpo"] is None  # the baseline


def test_a_diverging_loss_is_a_failed_run_not_a_crash(bench_json: dict) -> None:
    res = bench_json["results"]["always_nan"]
    point = res["frontier"][0]
    assert point["statuses"] == ["diverged"] and point["reward"] is None
    assert any("step" in r for r in point["reasons"])
    assert res["fitness"]["value"] == pytest.approx(-1.0)  # the failure score
    assert res["vs_dpo"]["verdict"] == "worse" and res["vs_dpo"]["ci_high"] < 0


def test_code_refused_by_the_policy_never_runs(bench_json: dict) -> None:
    point = bench_json["results"]["escaping"]["frontier"][0]
    assert point["statuses"] == ["error"]
    assert any("policy" in r and "os" in r for r in point["reasons"])
    assert not Path("/tmp/disco-escaped").exists()


def test_out_dir_has_csv_json_and_plot(bench_json: dict) -> None:
    out = Path(bench_json["_out"])
    rows = (out / "runs.csv").read_text().splitlines()
    assert rows[0].startswith("loss,beta,seed,status") and len(rows) == 1 + 4
    assert json.loads((out / "summary.json").read_text())["losses"] == bench_json["losses"]
    assert (out / "frontier.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_unknown_loss_is_one_clear_error(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "agent.cli",
            "--home",
            str(tmp_path),
            "bench",
            "losses",
            "--losses",
            "nosuchloss",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "unknown loss 'nosuchloss'" in proc.stderr and "Traceback" not in proc.stderr
