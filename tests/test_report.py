"""`disco report RUN` on a real run (the real loop, sandboxed checks, toy-task training, a scripted model
behind the fake OpenAI server): sections, leaderboard, numbers, failures by kind, a self-contained and
escaped HTML page, figures that decode, and clear failures."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from agent_helpers import REPO, cli, tiny_config
from PIL import Image
from report_helpers import HOSTILE_NAME, report_run_fixture, resource_urls  # noqa: F401 (the fixture `report_run`)

from agent.events import ErrorPayload, EventLog, EvidencePayload, JobPayload, read_events
from agent.report.collect import Interval, Job, collect
from agent.report.plots import edge_bends
from agent.report.questions import open_questions
from agent.report.render import write_report
from agent.runs import RunDir, create_run

SECTIONS = (
    "## Summary",
    "## Open questions",
    "## Leaderboard",
    "## Fitness over time",
    "## Reward–KL frontier",
    "## Lineage",
    "## Failures",
    "## The best candidate's code",
)


@pytest.fixture(scope="module")
def built(report_run: tuple[Path, RunDir]) -> tuple[Path, RunDir]:
    return report_run


@pytest.fixture(scope="module")
def written(built: tuple[Path, RunDir]) -> dict:
    home, run = built
    proc = cli(home, "report", run.run_id, "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _table(md: str, heading: str) -> list[dict[str, str]]:
    """The rows of the first markdown table under `heading`, by column header."""
    section = md.split(heading, 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("|")]
    cells = [[c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]] for line in lines]
    return [dict(zip(cells[0], row, strict=True)) for row in cells[2:]]


def _records(run: RunDir) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in (run.root / "candidates").glob("*/record.json")}


def test_report_writes_markdown_and_html_into_the_run_directory(built, written) -> None:
    _, run = built
    assert Path(written["markdown"]) == run.root / "report.md"
    assert Path(written["html"]) == run.root / "report.html"
    assert set(written["images"]) == {"fitness", "frontier", "failures", "lineage"}
    md = (run.root / "report.md").read_text()
    positions = [md.index(s) for s in SECTIONS]
    assert positions == sorted(positions), "every section, in order"


def test_leaderboard_ranks_scored_candidates_with_their_intervals(built, written) -> None:
    _, run = built
    records = _records(run)
    scored = sorted((r for r in records.values() if r["fitness"]), key=lambda r: -r["fitness"]["value"])
    rest = sorted((r for r in records.values() if not r["fitness"]), key=lambda r: r["generation"])
    rows = _table((run.root / "report.md").read_text(), "## Leaderboard")
    assert [(row["#"], row["status"]) for row in rows] == [
        (str(r["generation"]), r["status"]) for r in scored + rest
    ]
    assert [row["rank"] for row in rows] == [str(i + 1) for i in range(len(scored))] + [""] * len(rest)
    assert {r["status"] for r in records.values()} == {"evaluated", "check_failed", "rejected"}
    for row, rec in zip(rows, scored, strict=False):
        fit = rec["fitness"]
        # the in-sample fitness is labelled as the screen's (this tiny run raced nothing)
        screen = row["screen fitness (in-sample)"]
        assert screen == f"{fit['value']:+.3f} [{fit['ci_low']:+.3f}, {fit['ci_high']:+.3f}]"
        assert "vs DPO, fresh seeds [95% CI]" in row, "the column names what the target pairs against"
    html = (run.root / "report.html").read_text()
    for rec in records.values():
        assert f'<tr data-candidate="{rec["id"]}"' in html


def test_summary_numbers_match_status_json(built, written) -> None:
    _, run = built
    status = json.loads(run.status_path.read_text())
    assert status["prompt_tokens"] > 0 and status["usd"] > 0, (
        "the run spent tokens: the figures mean something"
    )
    md = (run.root / "report.md").read_text()
    calls = sum(1 for e in read_events(run.events_path) if e.kind == "llm")
    assert f"{status['prompt_tokens']} prompt + {status['completion_tokens']} completion tokens" in md
    assert f"in {calls} model call(s)" in md and calls == 15  # 3 + 6 (three repairs) + 3 + 3
    assert f"{status['usd']:.4f} USD" in md
    assert f"{status['cpu_s'] / 3600:.3f} CPU hours" in md and f"{status['gpu_s'] / 3600:.3f} GPU hours" in md
    assert f"State: **finished** ({status['reason']})" in md
    assert f"(`{status['best_id']}`)" in md.split("## Summary")[1].split("##")[0]
    html = (run.root / "report.html").read_text()
    assert f"{status['prompt_tokens']} prompt + {status['completion_tokens']} completion tokens" in html


def test_time_is_split_into_one_time_setup_and_per_candidate(built, written) -> None:
    """The run's time is told as what it paid once (the training workers; on a cold cache also the toy
    task, the SFT model and DPO's baseline runs) and what each candidate cost on average."""
    from agent.report.render import _duration

    _, run = built
    setups = [
        e.payload for e in read_events(run.events_path) if e.kind == "progress" and "setup_s" in e.payload
    ]
    assert any(p["what"].startswith("starting the training workers") for p in setups), setups
    setup = sum(p["setup_s"] for p in setups)
    assert setup > 0
    status = json.loads(run.status_path.read_text())
    n = len(_records(run))
    line = next(x for x in (run.root / "report.md").read_text().splitlines() if x.startswith("- Time:"))
    assert f"{_duration(setup)} one-time set-up" in line, line
    assert f"then {_duration((status['elapsed_s'] - setup) / n)} a candidate over {n}" in line, line
    assert 'id="setup"' in (run.root / "report.html").read_text()


def test_failures_are_counted_by_kind(built, written) -> None:
    _, run = built
    rows = _table((run.root / "report.md").read_text(), "## Failures")
    kinds = {row["kind"]: (int(row["count"]), row["candidates"]) for row in rows}
    # #2: check0 (inf at extreme margins) then three repairs whose code raises; #3 vetoed.
    assert kinds == {"check: output_shape": (3, "#2"), "nan": (1, "#2"), "vetoed": (1, "#3")}
    assert len(list((run.root / "candidates" / f"{run.run_id}-0002").glob("check*.json"))) == 4
    questions = (run.root / "report.md").read_text().split("## Open questions")[1].split("## ")[0]
    assert "`check: output_shape` failures happened 3 times" in questions, "a repeated failure is asked about"


def test_html_is_self_contained_and_escapes_candidate_text(built, written) -> None:
    _, run = built
    html = (run.root / "report.html").read_text()
    urls = resource_urls(html)
    assert urls and all(u.startswith("data:image/png;base64,") for u in urls), [u[:60] for u in urls]
    assert '<script>alert("pwned")' not in html and "&lt;script&gt;alert(" in html
    assert "<b>one</b>" not in html and "good_&lt;b&gt;one&lt;/b&gt;" in html
    assert html.count("<script>") == 1, "only the report's own figure check"
    for name, path in written["images"].items():
        uri = re.search(rf'id="plot-{name}"[^>]*src="data:image/png;base64,([^"]+)"', html)
        assert uri and base64.b64decode(uri.group(1)) == Path(path).read_bytes()
    md = (run.root / "report.md").read_text()
    assert "<script>" not in md and HOSTILE_NAME.replace("<", "&lt;").replace(">", "&gt;") in md


def test_figures_are_real_pngs(built, written) -> None:
    for path in written["images"].values():
        data = Path(path).read_bytes()
        Image.open(io.BytesIO(data)).verify()
        image = Image.open(io.BytesIO(data)).convert("RGB")
        assert image.width >= 600 and image.height >= 150
        assert len(image.resize((64, 32)).getcolors(64 * 32)) > 8, f"{path} is not blank"


def test_out_dir_gets_the_report_and_relative_figure_links(built, written, tmp_path: Path) -> None:
    home, run = built
    out = tmp_path / "elsewhere"
    proc = cli(home, "report", run.run_id, "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [f"wrote {out / 'report.md'}", f"wrote {out / 'report.html'}"]
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", (out / "report.md").read_text())
    assert len(links) == 4 and all((out / link).is_file() for link in links)


def test_a_missing_run_fails_in_one_sentence(built, written, tmp_path: Path) -> None:
    home, run = built
    proc = cli(home, "report", "no-such-run")
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "no run 'no-such-run'" in proc.stderr
    assert run.run_id in proc.stderr, "it names the runs that exist"
    (tmp_path / "a-file").write_text("x")
    proc = cli(home, "report", run.run_id, "--out", str(tmp_path / "a-file"))
    assert (
        proc.returncode == 2
        and "is a file, not a directory" in proc.stderr
        and "Traceback" not in proc.stderr
    )


def test_evidence_is_shown_when_the_run_has_it(built, written, tmp_path: Path) -> None:
    """Verdicts and evidence events as the loop writes them: a verdict column, the best's confirmation
    history, and a question about a promising candidate that was not confirmed."""
    _, run = built
    copy = RunDir(shutil.copytree(run.root, tmp_path / "runs" / "ev"))
    # The loop's own verdicts go, so that the test sets every one of them.
    kept = [e for e in read_events(copy.events_path) if e.kind != "evidence"]
    for e in kept:
        e.payload.pop("verdict", None)
    copy.events_path.write_text("".join(e.model_dump_json() + "\n" for e in kept))
    first, fourth = f"{run.run_id}-0001", f"{run.run_id}-0004"
    verdicts = {first: "first", fourth: "promising"}
    for cid in _records(copy):
        rec = copy.read_candidate_json(cid, "record.json")
        copy.write_candidate_file(cid, "record.json", rec | {"verdict": verdicts.get(cid)})
    log = EventLog(copy.events_path, "ev")
    common = {"confidence": 0.9, "seeds": [0], "final": False}
    log.append(
        EvidencePayload(verdict="first", incumbent=None, diff=None, p_better=None, round=1, **common), first
    )
    diff = {"value": 0.01, "ci_low": -0.02, "ci_high": 0.04}
    log.append(
        EvidencePayload(verdict="promising", incumbent=first, diff=diff, p_better=0.8, round=1, **common),
        fourth,
    )
    files = write_report(copy)
    md = files.markdown.read_text()
    header = md.split("## Leaderboard")[1].splitlines()[2]
    assert "| verdict |" in header
    verdicts = {row["#"]: row["verdict"] for row in _table(md, "## Leaderboard")}
    assert verdicts["1"] == "first" and verdicts["4"] == "promising" and verdicts["2"] == ""
    history = _table(md, "## Evidence for the best")
    got = [(r["candidate"], r["incumbent"], r["verdict"], r["p"]) for r in history]
    assert got == [("#1", "", "first", ""), ("#4", "#1", "promising", "0.80")]
    assert "Candidate #4 cand_4 looks better than the incumbent but is not confirmed (p_better = 0.80" in md


def test_gpu_job_failures_join_the_taxonomy(built, written, tmp_path: Path) -> None:
    """Job events as the runner logs them: one per state change; a job counts once, in its last state."""
    _, run = built
    copy = RunDir(shutil.copytree(run.root, tmp_path / "runs" / "jobs"))
    log, cid = EventLog(copy.events_path, "jobs"), f"{run.run_id}-0001"
    log.append(JobPayload(job="j-1", state="queued", message="GPU DPO job submitted"), cid)
    log.append(JobPayload(job="j-1", state="running", message=""), cid)
    log.append(JobPayload(job="j-1", state="failed:oom", message="CUDA out of memory at step 12"), cid)
    log.append(JobPayload(job="j-2", state="failed:nan", message="loss is NaN at step 40"), cid)
    data = collect(copy)
    assert [(j.job, j.state) for j in data.jobs] == [("j-1", "failed:oom"), ("j-2", "failed:nan")]
    kinds = {f.kind: (f.count, f.candidates) for f in data.failures}
    assert kinds["oom"] == (1, [cid]) and kinds["nan"] == (2, [f"{run.run_id}-0002", cid])
    md = write_report(copy).markdown.read_text()
    assert "| j-1 | failed:oom | CUDA out of memory at step 12 |" in md
    assert "ended failed:oom: CUDA out of memory at step 12" in md


def test_verdict_column_only_when_the_run_has_verdicts(built, written) -> None:
    _, run = built
    has = any(r.get("verdict") for r in _records(run).values()) or any(
        e.kind == "evidence" for e in read_events(run.events_path)
    )
    header = (run.root / "report.md").read_text().split("## Leaderboard")[1].splitlines()[2]
    assert ("| verdict |" in header) == has


def test_a_target_without_a_frontier_gets_no_frontier_plot(built, written, tmp_path: Path) -> None:
    _, run = built
    copy = RunDir(shutil.copytree(run.root, tmp_path / "runs" / "nofront"))
    for path in (copy.root / "candidates").glob("*/evaluation.json"):
        doc = json.loads(path.read_text())
        doc["details"] = {}
        path.write_text(json.dumps(doc))
    files = write_report(copy)
    assert "frontier" not in files.images and "fitness" in files.images
    assert "The target reports no frontier for this run's candidates." in files.markdown.read_text()


def test_a_run_with_no_candidates_reports_that(home: Path) -> None:
    create_run(home / "runs", tiny_config(), "empty")
    proc = cli(home, "report", "empty")
    assert proc.returncode == 0, proc.stderr
    md = (home / "runs" / "empty" / "report.md").read_text()
    assert "Tried: 0 candidate(s)" in md and "No candidate was scored" in md
    assert "<img" not in (home / "runs" / "empty" / "report.html").read_text()


@pytest.mark.parametrize(
    ("update", "topic", "words"),
    [
        ({"state": "failed", "reason": "internal error: boom"}, "run", "disco resume"),
        ({"state": "interrupted"}, "run", "disco resume"),
        ({"state": "paused", "reason": "paused by the person"}, "run", "control rep resume"),
        ({"state": "waiting", "pending_approval": '{"kind": "gpu_job"}'}, "approval", "approve"),
        (
            {"jobs": [Job(candidate="c", job="j1", state="failed:oom", message="CUDA OOM")]},
            "job",
            "failed:oom",
        ),
        ({}, "budget", "disco control rep budget candidates=8 && disco resume rep"),
    ],
)
def test_open_questions(built, update: dict, topic: str, words: str) -> None:
    data = collect(built[1]).model_copy(update=update)
    found = [q for q in open_questions(data) if q.topic == topic]
    assert found and words in (found[0].text + " " + (found[0].command or ""))


def test_a_best_worse_than_the_baseline_is_a_question(built) -> None:
    data = collect(built[1])
    best = data.best()
    assert best is not None
    assert not any("worse than the baseline" in q.text for q in open_questions(data)) or (
        best.vs_baseline and best.vs_baseline.ci_high < 0
    )
    best.vs_baseline = Interval(value=-0.3, ci_low=-0.4, ci_high=-0.2)
    asked = [q for q in open_questions(data) if q.topic == "baseline"]
    assert asked and "is worse than the baseline: -0.300 [-0.400, -0.200]" in asked[0].text


def test_the_report_imports_no_target(built, tmp_path: Path) -> None:
    code = (
        "import sys; from pathlib import Path; from agent.runs import RunDir;"
        "from agent.report.render import write_report;"
        f"write_report(RunDir(Path({str(built[1].root)!r})), Path({str(tmp_path)!r}));"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('targets', 'torch', 'memory')))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr
    # targets.racing is the statistics of the fresh-seed verdicts (Benjamini–Hochberg); targets.base and
    # targets.results the seam's data types (the one Interval, check results): no target
    # memory.records: the record's data types (the events carry a VsBaseline), not the store (Chroma)
    expected = "['memory', 'memory.records', 'targets', 'targets.base', 'targets.racing', 'targets.results']"
    assert proc.stdout.strip() == expected


def test_evaluating_on_more_seeds_comes_with_its_command(built, tmp_path: Path) -> None:
    """The report asked "evaluate it on more seeds?" with no command (issue 19.10); the command it gives
    now works: `disco runs code` prints the candidate's final code for `disco bench losses`."""
    home, run = built
    data = collect(run)
    best = data.best()
    assert best is not None
    best.vs_baseline = Interval(value=0.01, ci_low=-0.02, ci_high=0.04)
    (asked,) = [q for q in open_questions(data) if q.topic == "baseline"]
    assert asked.command == (
        f"disco runs code {run.run_id} {best.index} > candidate_{best.index}.py && "
        f"disco bench losses --losses candidate_{best.index}.py --seeds 16"
    )
    printed = cli(home, "runs", "code", run.run_id, str(best.index))
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout.strip() == best.code.strip() and "def " in printed.stdout
    refused = cli(home, "runs", "code", run.run_id, "../../etc")
    assert refused.returncode != 0 and "has no recorded candidate ../../etc" in refused.stderr


def test_setup_failures_are_told_apart_from_candidate_faults(built, tmp_path: Path) -> None:
    """The taxonomy lumped a dead endpoint and a missing inner model with candidates' bugs (issue 19.10)."""
    _, run = built
    copy = RunDir(shutil.copytree(run.root, tmp_path / "runs" / "setup"))
    log, cid = EventLog(copy.events_path, "setup"), f"{run.run_id}-0001"
    log.append(
        ErrorPayload(error_kind="unreachable", step="c0001/design", message="endpoint unreachable"), cid
    )
    evaluation = copy.root / "candidates" / cid / "evaluation.json"
    doc = json.loads(evaluation.read_text())
    doc |= {"status": "failed", "reason": "the adas target needs an inner model: set [models.inner]"}
    evaluation.write_text(json.dumps(doc))
    data = collect(copy)
    origins = {(f.kind, f.origin) for f in data.failures}
    assert {("model unreachable", "setup"), ("evaluation", "setup")} <= origins
    assert {("check: output_shape", "candidate"), ("nan", "candidate"), ("vetoed", "person")} <= origins
    assert [f.origin for f in data.failures] == sorted(
        (f.origin for f in data.failures), key=["candidate", "person", "setup"].index
    ), "the candidates' own failures first"
    rows = _table(write_report(copy).markdown.read_text(), "## Failures")
    assert {(r["kind"], r["on"]) for r in rows} == origins


def test_a_lineage_edge_never_hides_behind_another() -> None:
    """#5's parents are #1 and #3, #3's is #1: drawn straight, #1 → #5 runs through #3's node and over
    #1 → #3 and #3 → #5, and reads as one chain. It bends; edges through no node stay straight."""
    where = {"c1": (1.0, 0.0), "c3": (3.0, 1.0), "c5": (5.0, 2.0), "c4": (4.0, 1.0)}
    edges = [("c1", "c3"), ("c3", "c5"), ("c1", "c5"), ("c1", "c4")]
    bends = edge_bends(edges, where)
    assert bends[:2] == [0.0, 0.0] and bends[3] == 0.0
    assert bends[2] != 0.0
