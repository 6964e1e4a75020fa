"""Old run logs still load: a log written by the code before typed events (tests/data/run_log_630de0c,
see its README) is read, folded and shown by today's readers, and today's payload models write its lines
back byte for byte (the format did not change, only how the code holds it)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from agent.events import PAYLOADS, CandidatePayload, EventLog, NodePayload, read_events
from agent.report.taxonomy import failures
from agent.run_state import RunState
from agent.runs import RunDir
from tui.view import Tracker

OLD_LOG = Path(__file__).parent / "data" / "run_log_630de0c" / "events.jsonl"


def test_every_line_of_an_old_log_reads_as_its_kinds_model_and_writes_back_the_same() -> None:
    lines = OLD_LOG.read_text(encoding="utf-8").splitlines()
    events = list(read_events(OLD_LOG))
    assert len(events) == len(lines) == 113
    assert {e.kind for e in events} == set(PAYLOADS), "the sample holds every kind of event"
    for event in events:
        data = event.data
        assert isinstance(data, PAYLOADS[event.kind])
        again = data.model_dump(mode="json", exclude_unset=True)
        assert again == event.payload, (event.seq, event.kind)
        assert list(again) == list(event.payload), f"{event.seq}: today's writer orders the keys the same"


def test_the_fold_of_an_old_log_knows_what_the_run_did() -> None:
    state = RunState.of(read_events(OLD_LOG))
    assert state.unreadable == 0 and state.events == 113
    assert state.recorded == {"oldlog-0001", "oldlog-0002"} and state.evaluated == {"oldlog-0001"}
    assert [c.action for c in state.commands] == ["hint", "budget"]
    assert state.hints == ["try a margin"] and state.budget_changes == {"max_tokens": 900000.0}
    assert state.consumed == ["approve"] and state.question is None
    job = state.jobs["j-abc"]
    assert (job.state, job.step, job.total, job.finished) == ("failed:oom", 3, 10, True)
    assert state.open_jobs() == {} and state.gpu_s == 30.0
    assert state.model_calls == 10 and state.tokens > 0
    assert state.ended is not None and state.ended.state == "finished"
    assert state.resumes_at is None, "both candidates were recorded: a resume starts a new one"


def test_the_tui_and_the_report_show_an_old_log(tmp_path: Path) -> None:
    tracker = Tracker("oldlog")
    lines = [line.text for e in read_events(OLD_LOG) for line in tracker.feed(e)]
    assert not [t for t in lines if "could not be shown" in t]
    assert any(t.startswith("#2 recorded ") for t in lines), lines
    assert any(t.startswith("model endpoint slow: no token for 60 s") for t in lines)
    assert any("job j-abc failed:oom" in t for t in lines)
    assert tracker.known == ["oldlog-0001", "oldlog-0002"]
    kinds = {f.kind for f in failures(RunDir(tmp_path), [], read_events(OLD_LOG))}
    assert {"model endpoint slow", "oom", "model malformed"} <= kinds, kinds


def test_a_new_writer_appends_to_an_old_log(tmp_path: Path) -> None:
    """`disco resume` of a run begun by an older disco: the log goes on with the next seq, and a reader
    folds old and new lines alike."""
    path = tmp_path / "events.jsonl"
    shutil.copy(OLD_LOG, path)
    log = EventLog(path, "oldlog")
    log.append(NodePayload(node="plan", phase="enter"))
    log.append(CandidatePayload(name="later", status="evaluated"), "oldlog-0003")
    tail = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()[-2:]]
    assert [t["seq"] for t in tail] == [113, 114]
    assert tail[1]["payload"] == {"name": "later", "status": "evaluated"}
    assert RunState.of(read_events(path)).recorded == {"oldlog-0001", "oldlog-0002", "oldlog-0003"}
