"""Benchmark of disco's sandbox: round-trip latency per backend (cold and warm), and the escape table.

Writes under evals/results/:
  sandbox_latency.json|md|png   median / p90 round trip of (a) a trivial program and (b) a full DPO
                                loss check (`check_candidate` on the zoo's dpo loss), per backend:
                                local cold (a fresh bwrap'd worker that must import torch), local warm
                                (a worker whose imports are done; the goal is a median ≤ 0.3 s for the
                                loss check), docker (one container per run: first run and later runs)
  sandbox_escapes.json|md       every attack of tests/escapes/ on every backend: the status, why, the
                                time it took, and whether the host saw any escape

Round trip = `sandbox.run(request)` as the caller sees it, from request to result. Warm runs wait for
the replacement worker between runs (as the agent loop does, with an LLM call in between); the
in-process time of the same check with one thread is reported beside them as the floor.

  sandbox_launch.json|md         (--launch) what the boxes themselves cost: a bubblewrap launch of `true`
                                and of `python -c pass` with today's allow-list argv (seccomp included)
                                against the former argv (`--ro-bind / /` with a hidden-dirs list), and
                                `sandbox.jail.enter_jail` in a fork of a process that imported torch,
                                transformers and TRL (the training zygote), against a bare fork

Run: .venv/bin/python evals/bench_sandbox.py [--reps 15] [--docker-host unix:///run/disco-podman/podman.sock]
About 2–4 minutes on 2 cores. Docker rows need the engine (`make sandbox-deps`); e2b needs E2B_API_KEY.
`--launch` (about 30 s) measures only the launch costs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the escape table lives with the tests

from escapes.table import ATTACKS, LOSS_TRICKS, bait, loss_trick_code  # noqa: E402

from sandbox.base import Sandbox  # noqa: E402
from sandbox.local import LocalSandbox  # noqa: E402
from sandbox.models import SandboxLimits, SandboxRequest  # noqa: E402
from sandbox.registry import SandboxUnavailable, get_sandbox  # noqa: E402
from targets.dpo.policy import LOSS_ALLOWED_IMPORTS  # noqa: E402
from targets.dpo.zoo import get_zoo_loss  # noqa: E402

OUT = ROOT / "evals" / "results"
PRELOAD = ("torch", "targets.dpo.checks")
TRIVIAL = SandboxRequest(code="print('hi')", limits=SandboxLimits(timeout_s=60))
LOSS_CHECK = SandboxRequest(
    call="targets.dpo.checks:check_candidate",
    kwargs={"code": get_zoo_loss("dpo").code, "time_budget_s": 10.0},
    preload=PRELOAD,
    limits=SandboxLimits(timeout_s=90, memory_mb=4096),
)


def stats(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "n": len(samples),
        "median_s": round(statistics.median(samples), 4),
        "p90_s": round(ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))], 4),
        "min_s": round(ordered[0], 4),
    }


def timed(sandbox: Sandbox, request: SandboxRequest, before: Callable[[], None] | None = None) -> float:
    if before:
        before()
    started = time.perf_counter()
    result = sandbox.run(request)
    elapsed = time.perf_counter() - started
    if result.status != "ok":
        raise RuntimeError(f"benchmark run failed: {result.status} {result.reason} {result.stderr[-500:]}")
    return elapsed


def in_process_floor(reps: int) -> dict[str, float]:
    import torch

    from targets.dpo.checks import check_candidate

    torch.set_num_threads(1)
    code = LOSS_CHECK.kwargs["code"]
    check_candidate(code)
    samples = []
    for _ in range(reps):
        started = time.perf_counter()
        check_candidate(code)
        samples.append(time.perf_counter() - started)
    return stats(samples)


def bench_local(reps: int) -> dict[str, dict[str, float]]:
    rows = {}
    for label, request in (("trivial", TRIVIAL), ("loss_check", LOSS_CHECK)):
        cold = LocalSandbox(warm=0)
        try:
            rows[f"local cold {label}"] = stats([timed(cold, request) for _ in range(max(3, reps // 3))])
        finally:
            cold.close()
        warm = LocalSandbox(warm=1)
        try:
            ready = lambda req=request, sb=warm: sb.prewarm(req.preload, wait=True)  # noqa: E731
            rows[f"local warm {label}"] = stats([timed(warm, request, ready) for _ in range(reps)])
        finally:
            warm.close()
    return rows


def bench_remote(name: str, reps: int, **config: str) -> dict[str, dict[str, float]] | str:
    try:
        sandbox = get_sandbox(name, **config)
    except SandboxUnavailable as exc:
        return str(exc)
    rows = {}
    try:
        for label, request in (("trivial", TRIVIAL), ("loss_check", LOSS_CHECK)):
            first = timed(sandbox, request)
            rows[f"{name} first {label}"] = stats([first])
            rows[f"{name} later {label}"] = stats([timed(sandbox, request) for _ in range(max(3, reps // 3))])
    finally:
        sandbox.close()
    return rows


def escape_table(backends: dict[str, Sandbox]) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    with bait() as b:
        for name, sandbox in backends.items():
            for attack in ATTACKS:
                result = sandbox.run(b.request(attack))
                problems = b.problems(attack, result)
                rows.append({
                    "backend": name, "attack": attack.name, "what": attack.what, "expected": attack.expected,
                    "status": result.status, "reason": result.reason, "duration_s": result.duration_s,
                    "contained": not problems, "problems": problems,
                })  # fmt: skip
            refused = [
                sandbox.run(
                    SandboxRequest(code=loss_trick_code(t), allowed_imports=LOSS_ALLOWED_IMPORTS)
                ).status
                for t in LOSS_TRICKS
            ]
            rows.append({
                "backend": name, "attack": f"loss import tricks ({len(LOSS_TRICKS)})",
                "what": "reach os/subprocess/ctypes from a loss: " + ", ".join(LOSS_TRICKS),
                "expected": "policy", "status": "policy" if set(refused) == {"policy"} else ",".join(refused),
                "reason": "refused by the static policy before running", "duration_s": 0.0,
                "contained": set(refused) == {"policy"}, "problems": [],
            })  # fmt: skip
    return rows


def write(latency: dict[str, object], escapes: list[dict[str, object]]) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "sandbox_latency.json").write_text(json.dumps(latency, indent=2) + "\n")
    (OUT / "sandbox_escapes.json").write_text(json.dumps(escapes, indent=2) + "\n")
    lines = ["# Sandbox round-trip latency", "", f"Host: {latency['host']}", ""]
    lines += ["| backend / mode / request | n | median s | p90 s | min s |", "|---|---|---|---|---|"]
    for key, row in latency["rows"].items():  # type: ignore[union-attr]
        lines.append(f"| {key} | {row['n']} | {row['median_s']} | {row['p90_s']} | {row['min_s']} |")
    for key, why in latency["unavailable"].items():  # type: ignore[union-attr]
        lines.append(f"| {key} | unavailable: {why} | | | |")
    lines += ["", f"Goal: median ≤ 0.3 s for a warm loss check on the local backend: {latency['goal']}."]
    (OUT / "sandbox_latency.md").write_text("\n".join(lines) + "\n")
    lines = ["# Sandbox escape suite", "", "| backend | attack | expected | status | contained | s | why |",
             "|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in escapes:
        mark = "yes" if r["contained"] else "**NO**: " + "; ".join(r["problems"])  # type: ignore[arg-type]
        lines.append(
            f"| {r['backend']} | {r['attack']} | {r['expected']} | {r['status']} | {mark} | "
            f"{r['duration_s']} | {r['reason']} |"
        )
    (OUT / "sandbox_escapes.md").write_text("\n".join(lines) + "\n")


def plot(latency: dict[str, object]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = latency["rows"]
    names = list(rows)  # type: ignore[arg-type]
    medians = [rows[n]["median_s"] for n in names]  # type: ignore[index]
    fig, ax = plt.subplots(figsize=(8, 0.4 * len(names) + 1.2))
    ax.barh(names, medians, color=["tab:green" if "warm" in n else "tab:gray" for n in names])
    ax.axvline(0.3, color="tab:red", linestyle="--", label="goal: 0.3 s (warm loss check)")
    ax.set_xscale("log")
    ax.set_xlabel("median round trip (s, log scale)")
    ax.invert_yaxis()
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(OUT / "sandbox_latency.png", dpi=120)


def former_bwrap_argv(workdir: Path) -> list[str]:
    """The bubblewrap argv before the allow-list (commit b1937a8): / read-only, a fixed list hidden."""
    import sandbox.isolation as iso

    argv = ["bwrap", "--die-with-parent", "--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
            "--unshare-cgroup-try", "--hostname", "sandbox", "--ro-bind", "/", "/"]  # fmt: skip
    for hidden in ("/root", "/home", "/run", "/var/tmp", "/tmp", "/mnt", "/media"):
        if Path(hidden).is_dir() and not Path(hidden).is_symlink():
            argv += ["--perms", "1777", "--tmpfs", hidden] if "tmp" in hidden else ["--tmpfs", hidden]
    for path in iso.python_paths():
        if path.is_relative_to("/root"):
            argv += ["--ro-bind", str(path), str(path)]
    argv += ["--proc", "/proc", "--dev", "/dev", "--bind", str(workdir), str(workdir)]
    return [*argv, "--chdir", str(workdir), "--"]


def _median_ms(run: Callable[[], None], reps: int) -> float:
    samples = []
    for _ in range(reps):
        started = time.perf_counter()
        run()
        samples.append(time.perf_counter() - started)
    return round(statistics.median(samples) * 1000, 2)


def bench_launch(reps: int) -> dict[str, float]:
    """Milliseconds (medians) that a box adds to starting a process."""
    import subprocess
    import tempfile

    import torch  # noqa: F401 - the training zygote's imports: what a fork has to copy
    import transformers  # noqa: F401
    import trl  # noqa: F401

    from sandbox.isolation import bwrap_argv, seccomp_fd
    from sandbox.jail import JailSpec, enter_jail

    rows: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as work:
        for label, tail in (("true", ["true"]), ("python -c pass", [sys.executable, "-I", "-c", "pass"])):
            rows[f"{label}: bare"] = _median_ms(lambda t=tail: subprocess.run(t, check=True), reps)
            old = former_bwrap_argv(Path(work))
            former = lambda o=old, t=tail: subprocess.run([*o, *t], check=True)  # noqa: E731
            rows[f"{label}: bwrap, former argv"] = _median_ms(former, reps)

            def allow_list_launch(t: list[str] = tail) -> None:
                with seccomp_fd() as fd:
                    argv = bwrap_argv(Path(work), (), fd, os.geteuid() == 0)
                    subprocess.run([*argv, *t], check=True, pass_fds=(fd,))

            rows[f"{label}: bwrap, allow-list + seccomp"] = _median_ms(allow_list_launch, reps)

        def fork_only() -> None:
            pid = os.fork()
            if pid == 0:
                os._exit(0)
            os.waitpid(pid, 0)

        entered: list[float] = []

        def fork_and_jail() -> None:
            read, write = os.pipe()
            started = time.perf_counter()
            pid = os.fork()
            if pid == 0:
                os.close(read)
                enter_jail(JailSpec(writable=[Path(work)]))
                os.write(write, repr(time.perf_counter()).encode())
                os._exit(0)
            os.close(write)
            with os.fdopen(read, "rb") as fh:
                entered.append(float(fh.read()) - started)
            os.waitpid(pid, 0)

        rows["fork + exit of the torch zygote (no jail)"] = _median_ms(fork_only, reps)
        rows["fork + enter_jail + exit, until reaped"] = _median_ms(fork_and_jail, reps)
        rows["fork + enter_jail, until the job runs in the jail"] = round(
            statistics.median(entered) * 1000, 2
        )
    return rows


def write_launch(rows: dict[str, float], host: str) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "sandbox_launch.json").write_text(json.dumps({"host": host, "median_ms": rows}, indent=2) + "\n")
    lines = [
        "# What the process boxes cost to start",
        "",
        f"Host: {host}",
        "",
        "| what | median ms |",
        "|---|---|",
    ]
    lines += [f"| {k} | {v} |" for k, v in rows.items()]
    (OUT / "sandbox_launch.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--docker-host", default=os.environ.get("DISCO_DOCKER_HOST"))
    parser.add_argument("--launch", action="store_true", help="only the launch costs (sandbox_launch.*)")
    args = parser.parse_args()
    if args.launch:
        load = os.getloadavg()[0]
        rows = bench_launch(max(args.reps, 20))
        write_launch(rows, f"{os.cpu_count()} cores, load average {load:.1f} at start, uid {os.geteuid()}")
        print((OUT / "sandbox_launch.md").read_text())
        return
    load = os.getloadavg()[0]  # other work on the host inflates every figure: say how busy it was
    rows: dict[str, dict[str, float]] = {
        "in-process loss check (1 thread, no sandbox)": in_process_floor(args.reps)
    }
    rows |= bench_local(args.reps)
    unavailable: dict[str, str] = {}
    docker_cfg = {"base_url": args.docker_host} if args.docker_host else {}
    for name, cfg in (("docker", docker_cfg), ("e2b", {})):
        got = bench_remote(name, args.reps, **cfg)
        if isinstance(got, str):
            unavailable[name] = got
        else:
            rows |= got
    warm = rows["local warm loss_check"]["median_s"]
    latency = {
        "host": f"{os.cpu_count()} cores, {LocalSandbox().isolation()[0]}, load average {load:.1f} at start",
        "rows": rows,
        "unavailable": unavailable,
        "goal": f"{'met' if warm <= 0.3 else 'NOT met'} ({warm:.3f} s)",
    }
    # Only the levels that contain every attack: on a host where the interpreter is unreachable by
    # another uid, the unshare / none fallbacks run as root, and their escape rows (writes to /etc, a
    # SIGKILL of this very process) would harm the host; `disco sandbox doctor` states that instead.
    backends: dict[str, Sandbox] = {"local": LocalSandbox()}
    if "docker" not in unavailable:
        backends["docker"] = get_sandbox("docker", **docker_cfg)
    try:
        escapes = escape_table(backends)
    finally:
        for sandbox in backends.values():
            sandbox.close()
    write(latency, escapes)
    plot(latency)
    print((OUT / "sandbox_latency.md").read_text())
    print((OUT / "sandbox_escapes.md").read_text())


if __name__ == "__main__":
    main()
