"""`disco jobs` through typer: a real SPEC.toml, a real detached job, one-sentence errors.

The sub-app is mounted on a test-local Typer app, as agent/cli.py mounts it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from test_jobs_helpers import HANG, make_model_and_data, wait_for
from typer.testing import CliRunner

from agent.commands.jobs import jobs_app

app = typer.Typer()
app.add_typer(jobs_app, name="jobs")
runner = CliRunner()

SPEC = """
candidate_name = "hangs"
candidate_file = "hangs.py"
time_limit_s = 300

[train]
model = "tiny-model"
dataset = "pairs.jsonl"
eval_fraction = 0.25

[train.train]
device = "cpu"
max_steps = 6
per_device_train_batch_size = 4
max_length = 48

[resources]
cpus = 1
memory_gb = 6
"""


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("jobs-cli")
    make_model_and_data(folder)
    (folder / "hangs.py").write_text(HANG)
    (folder / "spec.toml").write_text(SPEC)
    return folder


@pytest.fixture(autouse=True)
def data_dir(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISCO_HOME", str(home / "disco"))


def jobs(*args: str):  # type: ignore[no-untyped-def]
    return runner.invoke(app, ["jobs", *args])


def test_submit_list_show_logs_cancel(home):
    first = jobs("submit", str(home / "spec.toml"), "--json")
    assert first.exit_code == 0, first.output
    job = json.loads(first.stdout)
    assert job["state"] == "running" and job["backend"] == "local"
    # The spec's relative paths were taken from its folder; the candidate file's code is in the spec.
    assert job["spec"]["train"]["model"] == str(home / "tiny-model")
    assert job["spec"]["candidate_code"] == HANG
    again = json.loads(jobs("submit", str(home / "spec.toml"), "--json").stdout)
    assert again["id"] == job["id"] and again["launches"] == 1

    listed = jobs("list", "--json")
    assert [j["id"] for j in json.loads(listed.stdout)] == [job["id"]]
    table = jobs("list")
    assert table.exit_code == 0 and "hangs" in table.stdout and "running" in table.stdout

    prefix = job["id"][4:12]  # `job-` may be left out, and a unique prefix is enough
    shown = json.loads(jobs("show", prefix, "--json").stdout)
    assert shown["id"] == job["id"]
    assert "candidate: hangs" in jobs("show", job["id"]).stdout

    wait_for(lambda: "[train] " in jobs("logs", job["id"]).stdout, 90, "training to start")
    page = json.loads(jobs("logs", job["id"], "--json").stdout)
    assert any("queued on the local backend" in line for line in page["lines"])
    assert json.loads(jobs("logs", job["id"], "--since", str(page["offset"]), "--json").stdout)["lines"] == []

    cancelled = jobs("cancel", job["id"])
    assert cancelled.exit_code == 0 and "cancelled" in cancelled.stdout
    assert json.loads(jobs("show", job["id"], "--json").stdout)["state"] == "cancelled"
    assert "cancelled on request" in jobs("logs", job["id"]).stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["submit", "nowhere.toml"], "does not exist"),
        (["submit", "{home}/bad.toml"], "is not valid TOML"),
        (["submit", "{home}/nocandidate.toml"], "exactly one of candidate_code"),
        (["submit", "{home}/badfield.toml"], "bad training config train.train.beta"),
        (["submit", "{home}/policy.toml"], "breaks the sandbox policy"),
        (["submit", "{home}/spec.toml", "--backend", "slurm"], "--backend must be local or ray"),
        (["show", "job-0000000000000000"], "no job in"),
        (["logs", "nothing"], "no job in"),
        (["cancel", "nothing"], "no job in"),
    ],
)
def test_user_errors_are_one_sentence_and_exit_2(home, args, message):
    (home / "bad.toml").write_text("candidate_name = ")
    (home / "nocandidate.toml").write_text('candidate_name = "x"\n[train]\nmodel = "m"\ndataset = "d"\n')
    (home / "badfield.toml").write_text(SPEC.replace("device = ", 'beta = "high"\ndevice = '))
    (home / "evil.py").write_text(HANG.replace("while True", "import os\n    while True"))
    (home / "policy.toml").write_text(SPEC.replace("hangs.py", "evil.py"))
    result = jobs(*[a.format(home=home) for a in args])
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert result.stderr.strip().count("\n") == 0 and "Traceback" not in result.output
