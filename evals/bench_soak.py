"""A long unattended run with faults injected everywhere, then an audit of what it recorded.

The real runner (`disco run`, then `disco resume` after every kill) drives the DPO target's `tiny` preset.
The meta model is a scripted fake OpenAI-compatible server (tests/fake_openai.py) in this process, which
answers designs and reflections but injects, at seeded random, bursts of HTTP 500, replies slower than the
client's timeout, malformed JSON and empty replies. Candidates that beat the run's best earn a DPO job (a
tiny CPU job, `gpus = 0`); some jobs are broken on purpose while they train: SIGKILL of the training process
(read as failed:oom, as the kernel's OOM killer would be), SIGSEGV (failed:crash), or SIGSTOP until the
job's time limit (failed:timeout). Every so often the runner's process group is killed with SIGKILL and the
run resumed. At the end: every candidate recorded exactly once, none lost, no job launched twice, the event
log consecutive.

    python evals/bench_soak.py [--candidates 100] [--seed 0]

Results: evals/results/soak/soak.json and soak.md.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any, ClassVar

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]
OUT = REPO / "evals" / "results" / "soak"
RUN = "soak"


class FaultyModel:
    """The fake server's responder: a scripted designer, with model faults injected at seeded random."""

    def __init__(self, seed: int, timeout_s: float) -> None:
        from agent_helpers import distinct, scripted_model

        self.answer = scripted_model(distinct)
        self.rng = random.Random(seed)
        self.timeout_s = timeout_s
        self.burst = 0
        self.injected: Counter[str] = Counter()
        self.requests = 0
        self.lock = threading.Lock()

    def __call__(self, body: dict[str, Any]) -> Any:
        from fake_openai import Delay, Empty, Error, Text

        with self.lock:
            self.requests += 1
            if self.burst > 0:  # an outage in progress: every request fails until it is over
                self.burst -= 1
                self.injected["http_500"] += 1
                return Error(500, "injected outage")
            roll = self.rng.random()
            if roll < 0.02:
                self.burst = self.rng.randint(3, 12) - 1
                self.injected["outage_bursts"] += 1
                self.injected["http_500"] += 1
                return Error(500, "injected outage")
            if roll < 0.05:
                self.injected["http_500"] += 1
                return Error(503, "injected one-off error")
            if roll < 0.08:
                self.injected["timeout"] += 1
                return Delay(self.timeout_s + 1.5, Text("too late"))
            if roll < 0.11:
                self.injected["malformed_json"] += 1
                return Text('{"thought": "unfinished", "name": ')
            if roll < 0.13:
                self.injected["empty"] += 1
                return Empty()
        return self.answer(body)


class JobSaboteur(threading.Thread):
    """Breaks some of the jobs while they train, by signalling their training process."""

    FAULTS: ClassVar[dict[str, signal.Signals]] = {
        "oom": signal.SIGKILL,
        "crash": signal.SIGSEGV,
        "timeout": signal.SIGSTOP,
    }

    def __init__(self, jobs_root: Path, seed: int, share: float) -> None:
        super().__init__(daemon=True)
        self.jobs_root = jobs_root
        self.rng = random.Random(seed)
        self.share = share
        self.seen: set[str] = set()
        self.injected: dict[str, str] = {}
        """Job id → the fault injected."""
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.5):
            for pid, job_dir in _workers(self.jobs_root):
                job = Path(job_dir).name
                if job in self.seen:
                    continue
                self.seen.add(job)
                if self.rng.random() >= self.share:
                    continue
                fault = self.rng.choice(sorted(self.FAULTS))
                time.sleep(self.rng.uniform(0.5, 3.0))  # somewhere in its start-up or training
                try:
                    os.kill(pid, self.FAULTS[fault])
                except ProcessLookupError:
                    continue
                self.injected[job] = fault


def _workers(jobs_root: Path) -> list[tuple[int, str]]:
    """Training processes (tools.jobs.worker) of this queue: pid and job folder."""
    out = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        args = [a.decode(errors="replace") for a in argv if a]
        if "tools.jobs.worker" in args and args[-1].startswith(str(jobs_root)):
            out.append((int(proc.name), args[-1]))
    return out


def _events(run: Path) -> list[dict]:
    path = run / "events.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_bytes().decode().splitlines() if line.endswith("}")]


def _start(home: Path, args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "agent.cli", "--home", str(home), *args, "--quiet"]
    with log.open("a") as handle:
        return subprocess.Popen(
            cmd, cwd=REPO, env=env, start_new_session=True, stdout=handle, stderr=subprocess.STDOUT
        )


def _config(
    path: Path,
    base_url: str,
    candidates: int,
    model: Path,
    data: Path,
    timeout_s: float,
    evidence: dict[str, Any],
) -> None:
    from test_jobs_helpers import train_config

    spec = {"train": train_config(model, data), "gpus": 0, "resources": {"cpus": 1, "memory_gb": 6}}
    spec["time_limit_s"] = 45.0
    doc = {
        "budget": {"max_candidates": candidates},
        "targets": {"dpo": {"preset": "tiny", "workers": 1}},
        "models": {
            "meta": {
                "model": "fake-model",
                "base_url": base_url,
                "api_key": "soak",
                "timeout_s": timeout_s,
                "max_retries": 1,
                "fix_attempts": 1,
            }
        },
        "endpoint": {"backoff_s": [0.5, 1.0, 2.0], "probe_every_s": 2.0, "max_wait_hours": 0.25},
        "gpu": {"enabled": True, "approval": False, "spec": spec},
        # Evidence on the seeds both have, without extra rounds: each round trains four more times, which
        # on two shared cores would make the soak about the evidence rule rather than about faults.
        # `min_seeds = 1` lets a candidate become the best (and earn a job) on the one seed it has, a low
        # `confidence` lets many do so: a soak about jobs.
        "evidence": {"extra_rounds": 0} | evidence,
    }
    path.write_text(_toml(doc))


def _toml(doc: dict[str, Any], prefix: str = "") -> str:
    """A small TOML writer for the config above (tables of scalars, lists and nested tables)."""
    scalars, tables = [], []
    for key, value in doc.items():
        if isinstance(value, dict):
            tables.append((key, value))
        else:
            scalars.append(f"{key} = {json.dumps(value)}")
    out = ([f"[{prefix}]"] if prefix and scalars else []) + scalars
    text = "\n".join(out) + ("\n" if out else "")
    for key, value in tables:
        text += _toml(value, f"{prefix}.{key}" if prefix else key)
    return text


def audit(run: Path, jobs_root: Path, candidates: int) -> dict[str, Any]:
    """What the run recorded, checked against what it must: the counts of soak.json."""
    from tools.jobs import JobQueue

    events = _events(run)
    recorded = [e["candidate"] for e in events if e["kind"] == "candidate"]
    status = json.loads((run / "status.json").read_text())
    if status["state"] != "finished":  # stopped for time: all those it went through must be there
        candidates = max((int(c.rsplit("-", 1)[1]) for c in recorded), default=0)
    expected = [f"{RUN}-{i:04d}" for i in range(1, candidates + 1)]
    evaluations = Counter(e["candidate"] for e in events if e["kind"] == "evaluation")
    submitted = Counter(
        e["payload"]["job"]
        for e in events
        if e["kind"] == "job" and e["payload"].get("job") and "cursor" not in e["payload"]
    )
    job_of: dict[str, set[str]] = {}
    for e in events:
        if e["kind"] == "job" and e["payload"].get("job"):
            job_of.setdefault(e["candidate"], set()).add(e["payload"]["job"])
    queue = JobQueue(jobs_root)
    jobs = queue.list()
    queue.close()
    by_status = Counter(e["payload"]["status"] for e in events if e["kind"] == "candidate")
    failures: Counter[str] = Counter()
    for e in events:
        p = e["payload"]
        if e["kind"] == "candidate" and p["status"] != "evaluated":
            failures[f"candidate:{p['status']}"] += 1
        elif e["kind"] == "error" and p.get("error_kind"):
            failures[f"endpoint:{p['error_kind']}"] += 1
        elif e["kind"] == "llm" and p.get("error"):
            failures["model_call:" + str(p["error"]).split(":")[0][:40]] += 1
    for job in jobs:
        if job.state != "succeeded":
            failures[f"job:{job.state}"] += 1
    sessions = [e for e in events if e["kind"] == "run" and e["payload"].get("phase") == "session"]
    folders = sorted(p.parent.name for p in (run / "candidates").glob("*/record.json"))
    return {
        "candidates": len(set(recorded)),
        "by_status": dict(by_status),
        "failures_by_kind": dict(sorted(failures.items())),
        "lost": len(set(expected) - set(recorded)),
        "duplicated": len(recorded) - len(set(recorded)),
        "evaluated_twice": sum(1 for n in evaluations.values() if n > 1),
        "folders_match": folders == sorted(set(recorded)),
        "jobs": len(jobs),
        "job_states": dict(Counter(j.state for j in jobs)),
        "jobs_launched_twice": sum(1 for j in jobs if j.launches > 1),
        "job_submissions_duplicated": sum(1 for n in submitted.values() if n > 1),
        "candidates_with_two_jobs": sum(1 for ids in job_of.values() if len(ids) > 1),
        "sessions": len(sessions),
        "events": len(events),
        "events_consecutive": [e["seq"] for e in events] == list(range(len(events))),
        "status": status["state"],
        "reason": status["reason"],
        "cpu_s": status.get("cpu_s"),
        "gpu_s": status.get("gpu_s"),
    }


def _session_events(events: list[dict]) -> int:
    """Events the current session has written (since its `session` event; 0 while it starts up)."""
    for back, e in enumerate(reversed(events)):
        if e["kind"] == "run" and e["payload"].get("phase") == "session":
            return back
    return 0


def soak(
    candidates: int,
    seed: int,
    kill_every: tuple[float, float],
    share_jobs: float,
    max_minutes: float,
    evidence: dict[str, Any] | None = None,
) -> dict[str, Any]:
    from fake_openai import FakeOpenAI
    from test_jobs_helpers import make_model_and_data

    from tools.jobs import JobQueue

    started = time.monotonic()
    rng = random.Random(seed)
    work = Path(tempfile.mkdtemp(prefix="disco-soak-"))
    home, cache = work / "home", Path(os.environ.get("DISCO_CACHE") or work / "cache")
    run, jobs_root = home / "runs" / RUN, home / "jobs"
    model, data = make_model_and_data(work)
    timeout_s = 3.0
    faulty = FaultyModel(seed, timeout_s)
    env = os.environ | {"DISCO_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    env.pop("DISCO_MODEL", None)
    log = work / "runner.log"
    kills: list[dict[str, Any]] = []
    saboteur = JobSaboteur(jobs_root, seed + 1, share_jobs)
    saboteur.start()
    with FakeOpenAI() as server:
        server.default = faulty
        config = work / "disco.toml"
        _config(config, server.base_url, candidates, model, data, timeout_s, evidence or {})
        proc = _start(home, ["run", "--config", str(config), "--run-id", RUN], env, log)
        give_up = started + max_minutes * 60
        while True:
            # A random moment, but only once this session has done something (else a slow machine
            # could kill every session before it gets anywhere).
            deadline = time.monotonic() + rng.uniform(*kill_every)
            progress = rng.randint(3, 30)
            while proc.poll() is None and time.monotonic() < give_up:
                if time.monotonic() >= deadline and _session_events(_events(run)) >= progress:
                    break
                time.sleep(0.2)
            if proc.poll() is not None:
                break
            if time.monotonic() >= give_up:  # out of time: a clean stop at the next step boundary
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait()
                break
            events = _events(run)
            active = {
                e["payload"]["job"]
                for e in events
                if e["kind"] == "job" and e["payload"].get("state") in ("queued", "running")
            } - {
                e["payload"]["job"]
                for e in events
                if e["kind"] == "job"
                and e["payload"].get("state", "").startswith(("succeeded", "failed", "cancelled"))
            }
            last = events[-1] if events else {"kind": "none", "payload": {}}
            kills.append(
                {
                    "at_event": len(events),
                    "kind": last["kind"],
                    "node": last["payload"].get("node"),
                    "jobs_active": len(active),
                    "recorded": sum(1 for e in events if e["kind"] == "candidate"),
                }
            )
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            print(f"kill {len(kills)}: {kills[-1]}", flush=True)
            proc = _start(home, ["resume", RUN], env, log)
        rc = proc.returncode
    saboteur.stop.set()
    queue = JobQueue(jobs_root)
    for job in queue.list():
        queue.wait(job.id, timeout_s=300)
    queue.close()
    result = audit(run, jobs_root, candidates)
    result |= {
        "target_candidates": candidates,
        "max_minutes": max_minutes,
        "kill_every": list(kill_every),
        "seed": seed,
        "exit_code": rc,
        "resumes": len(kills),
        "kills_while_jobs_active": sum(1 for k in kills if k["jobs_active"]),
        "kills_at": dict(Counter(k["node"] or k["kind"] for k in kills)),
        "model_requests": faulty.requests,
        "model_faults_injected": dict(faulty.injected),
        "job_faults_injected": dict(Counter(saboteur.injected.values())),
        "wall_s": round(time.monotonic() - started, 1),
    }
    print(f"run directory kept in {work}", flush=True)
    return result


def report(r: dict[str, Any]) -> str:
    ok = r["lost"] == 0 and r["duplicated"] == 0 and r["jobs_launched_twice"] == 0
    kill_min, kill_max = r.get("kill_every", [20.0, 90.0])
    lines = [
        "# Soak: a long run with injected model, job and process faults",
        "",
        f"`python evals/bench_soak.py --candidates {r['target_candidates']} --seed {r['seed']} "
        f"--min-seeds {r.get('min_seeds', 2)} --confidence {r.get('confidence', 0.95)} "
        f"--job-fault-share {r.get('job_fault_share', 0.5)} "
        f"--kill-min-s {kill_min:g} --kill-max-s {kill_max:g} "
        f"--max-minutes {r['max_minutes']:g}` — "
        f"{r['wall_s'] / 60:.0f} min wall clock on this machine (2 shared cores), DPO target `tiny` preset.",
        "",
        f"**{'PASS' if ok else 'FAIL'}**: {r['candidates']} of {r['target_candidates']} candidates recorded, "
        f"lost {r['lost']}, duplicated {r['duplicated']}, evaluated twice {r['evaluated_twice']}, "
        f"jobs launched twice {r['jobs_launched_twice']}; final state `{r['status']}` ({r['reason']})"
        + (
            f" — the soak's time limit of {r['max_minutes']:g} min ran out first; every candidate up to the "
            "last one recorded is accounted for."
            if r["status"] != "finished"
            else "."
        ),
        "",
        "| count | value |",
        "|---|---|",
    ]
    for key in (
        "candidates",
        "by_status",
        "failures_by_kind",
        "model_requests",
        "model_faults_injected",
        "jobs",
        "job_states",
        "job_faults_injected",
        "resumes",
        "kills_while_jobs_active",
        "kills_at",
        "sessions",
        "lost",
        "duplicated",
        "evaluated_twice",
        "folders_match",
        "job_submissions_duplicated",
        "jobs_launched_twice",
        "candidates_with_two_jobs",
        "events",
        "events_consecutive",
        "cpu_s",
        "gpu_s",
        "wall_s",
    ):
        value = r[key]
        text = ", ".join(f"{k}: {v}" for k, v in value.items()) if isinstance(value, dict) else str(value)
        lines.append(f"| {key} | {text} |")
    lines += [
        "",
        "Model faults are answers of the fake server (HTTP 500 bursts that outlast the client's retry and",
        "the runner's backoff, one-off 503s, replies slower than the 3 s client timeout, malformed JSON,",
        "empty replies); job faults are signals sent to a job's training process while it runs; resumes",
        "follow a SIGKILL of the runner's whole process group at a random moment. `failures_by_kind` counts",
        "what the run recorded: candidates that did not make it (by status), endpoint errors the runner rode",
        "out (by kind), failed model calls (by error), and jobs that did not succeed (by state).",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--candidates", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--kill-min-s", type=float, default=20.0)
    parser.add_argument("--kill-max-s", type=float, default=90.0)
    parser.add_argument("--job-fault-share", type=float, default=0.5)
    parser.add_argument("--max-minutes", type=float, default=75.0, help="then stop the run cleanly")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--name", default="soak", help="file names of the results: NAME.json, NAME.md")
    parser.add_argument(
        "--min-seeds", type=int, default=2, help="evidence min_seeds; 1 makes more candidates earn a job"
    )
    parser.add_argument("--confidence", type=float, default=0.95, help="evidence confidence for `best`")
    args = parser.parse_args()
    kill_every = (args.kill_min_s, args.kill_max_s)
    evidence = {"min_seeds": args.min_seeds, "confidence": args.confidence}
    r = soak(args.candidates, args.seed, kill_every, args.job_fault_share, args.max_minutes, evidence)
    r |= {"min_seeds": args.min_seeds, "confidence": args.confidence, "job_fault_share": args.job_fault_share}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.json").write_text(json.dumps(r, indent=2) + "\n")
    (args.out / f"{args.name}.md").write_text(report(r))
    print(report(r))
    bad = r["lost"] or r["duplicated"] or r["jobs_launched_twice"] or not r["events_consecutive"]
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
