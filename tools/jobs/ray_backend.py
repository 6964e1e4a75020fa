"""The Ray backend: jobs on a Ray cluster (one machine or many), one detached actor per job.

The queue's store stays on the agent's machine; the work happens wherever Ray places each job's actor
(tools/jobs/ray_actor.py), which asks Ray for the job's CPUs, GPUs and memory. A job is `queued` until
its actor has started (Ray holds it while no node has the resources), `running` while it trains.
`sync()` pulls each actor's new log and metrics lines into the job's local folder — so logs and metrics
read the same on both backends — and, once the verdict is in, records it and kills the actor.

The actor is named after the job id and detached: a job never starts twice (creating it is recorded in
the same transaction that checks it was not created yet), and it keeps running when the agent exits;
a later `sync()` from any process finds it by name. A finished actor holds its resources until a
queue picks its result up (any `JobQueue` call on that store does).

Every node must have disco installed in the same environment as the cluster (`pip install -e '.[ray]'`).
Ray is imported only here, and only when a Ray job is submitted or synced: `pip install -e '.[ray]'`.
"""

from __future__ import annotations

import json
import socket
import time
from typing import Any

from pydantic import BaseModel

from tools.jobs.models import Assignment, Job, JobError, JobSpec, WorkerResult
from tools.jobs.store import JobStore

CONNECT_TIMEOUT_S = 3.0
POLL_TIMEOUT_S = 2.0
"""How long one sync waits for a running actor to answer."""


class RaySettings(BaseModel):
    """Where the cluster is and how jobs use it (stored with the queue)."""

    address: str = "auto"
    """The cluster's address (`host:port` of the head's GCS), or `auto` for the one started on this
    machine by `ray start`; DISCO_RAY_ADDRESS overrides the stored value."""
    namespace: str = "disco-jobs"
    node_dir: str = "/tmp/disco-ray-jobs"
    """Where each job's folder lives on the node that runs it."""
    cache_dir: str | None = None
    """Shared cache on each node (reference log-probs); default `<node_dir>/cache`."""
    gpu_total_gb: float | None = None
    """Memory of the cluster's GPUs: with it, a one-GPU job that states `gpu_memory_gb` asks Ray for that
    fraction of a GPU, so that several small jobs share one."""


def _listening(address: str) -> bool:
    """Whether a `host:port` address accepts connections (`ray.init` would retry for minutes otherwise);
    True for what cannot be checked this way (`auto`, `ray://` client addresses)."""
    host, sep, port = address.rpartition(":")
    if address == "auto" or "://" in address or not sep or not port.isdigit():
        return True
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=CONNECT_TIMEOUT_S):
            return True
    except OSError:
        return False


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise JobError("the Ray backend needs the `ray` package: pip install -e '.[ray]'") from None
    return ray


class RayBackend:
    name = "ray"

    def __init__(self, store: JobStore, settings: RaySettings | None = None) -> None:
        self.store = store
        self.settings = settings or RaySettings()
        self._pending: dict[str, Any] = {}
        """job id → the ObjectRef of a poll not answered yet (an actor still waiting for resources)."""

    # ------------------------------------------------------------------ connection
    def connect(self) -> Any:
        ray = _ray()
        if not ray.is_initialized():
            address = self.settings.address
            if not _listening(address):
                raise JobError(
                    f"cannot reach the Ray cluster at {address}; start one with `ray start --head` or give "
                    "its address"
                )
            try:
                ray.init(
                    address=self.settings.address,
                    namespace=self.settings.namespace,
                    log_to_driver=False,
                    logging_level="ERROR",
                    configure_logging=False,
                )
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise JobError(
                    f"cannot reach the Ray cluster at {self.settings.address} ({type(exc).__name__}); "
                    "start one with `ray start --head` or give its address"
                ) from None
        return ray

    def check(self, spec: JobSpec) -> None:
        ray = self.connect()
        total = ray.cluster_resources()
        if spec.resources.gpus > total.get("GPU", 0):
            raise JobError(
                f"the job asks for {spec.resources.gpus} GPU(s) but the Ray cluster has "
                f"{int(total.get('GPU', 0))}"
            )

    def _options(self, spec: JobSpec) -> dict[str, Any]:
        res = spec.resources
        gpus: float = res.gpus
        if res.gpus == 1 and res.gpu_memory_gb and self.settings.gpu_total_gb:
            gpus = min(1.0, res.gpu_memory_gb / self.settings.gpu_total_gb)
        options: dict[str, Any] = {"num_cpus": res.cpus, "num_gpus": gpus}
        if res.memory_gb:
            options["memory"] = int(res.memory_gb * 2**30)
        return options

    # ------------------------------------------------------------------ scheduling
    def schedule(self) -> None:
        """Create the actors of queued jobs that have none yet, then pull news from every live job."""
        ray = self.connect()
        from tools.jobs.ray_actor import JobActor

        for job in self.store.list(states=("queued",), backend=self.name):
            with self.store.transaction() as db:
                if self.store.runner(job.id) is not None or self.store.require(job.id).state != "queued":
                    continue  # created already, by this process or another
                ray.remote(JobActor).options(
                    name=job.id,
                    namespace=self.settings.namespace,
                    lifetime="detached",
                    get_if_exists=True,
                    max_concurrency=4,
                    max_restarts=0,
                    **self._options(job.spec),
                ).remote(job.id, job.spec.model_dump_json(), self.settings.node_dir, self.settings.cache_dir)
                self.store.set_runner(db, job.id, {"actor": job.id, "log": 0, "metrics": 0})
                db.execute("UPDATE jobs SET launches = launches + 1 WHERE id = ?", (job.id,))
        for job in self.store.list(states=("queued", "running"), backend=self.name):
            self._sync(ray, job)

    def _actor(self, ray: Any, job_id: str) -> Any | None:
        try:
            return ray.get_actor(job_id, namespace=self.settings.namespace)
        except ValueError:
            return None

    def _sync(self, ray: Any, job: Job) -> None:
        runner = self.store.runner(job.id)
        if runner is None:
            return
        actor = self._actor(ray, job.id)
        if actor is None:
            with self.store.transaction() as db:
                self.store.finish(
                    db,
                    job.id,
                    "failed:crash",
                    "the job's Ray actor is gone (its node died, or it was killed)",
                )
            return
        ref = self._pending.pop(job.id, None) or actor.poll.remote(runner["log"], runner["metrics"])
        timeout = POLL_TIMEOUT_S if job.state == "running" else 0.2
        ready, _ = ray.wait([ref], timeout=timeout)
        if not ready:
            self._pending[job.id] = ref  # still waiting for resources (or busy): ask the same again later
            return
        try:
            news = ray.get(ref)
        except ray.exceptions.RayActorError as exc:
            with self.store.transaction() as db:
                self.store.finish(db, job.id, "failed:crash", f"the job's Ray actor died: {exc}")
            return
        self._record(job, runner, news)
        if news["result"] is not None:
            ray.kill(actor)

    def _record(self, job: Job, runner: dict[str, Any], news: dict[str, Any]) -> None:
        """Append what the actor sent to the local mirror, once: the offsets move in the same transaction,
        and a batch fetched from stale offsets (another process synced first) is dropped."""
        folder = self.store.job_dir(job.id)
        with self.store.transaction() as db:
            current = self.store.runner(job.id) or {}
            if (current.get("log"), current.get("metrics")) != (runner["log"], runner["metrics"]):
                return
            if news["log"]:
                with open(folder / "log", "a", encoding="utf-8") as fh:
                    fh.write("".join(f"[{news['host']}] {line}\n" for line in news["log"]))
            if news["metrics"]:
                with open(folder / "metrics.jsonl", "a", encoding="utf-8") as fh:
                    fh.write("".join(line + "\n" for line in news["metrics"]))
            self.store.set_runner(
                db, job.id, {**current, "log": news["log_offset"], "metrics": news["metrics_offset"]}
            )
            state = self.store.require(job.id).state
            if state == "queued":
                gpus = [g for g in news["gpus"].split(",") if g]
                need = job.spec.resources
                held = Assignment(
                    gpus=gpus,
                    gpu_memory_gb=need.gpu_memory_gb,
                    cpus=need.cpus,
                    host=news["host"],
                    node=news["host"],
                )
                db.execute(
                    "UPDATE jobs SET state = 'running', started_at = ?, resources = ? WHERE id = ?",
                    (news["started_at"], held.model_dump_json(), job.id),
                )
            if news["result"] is not None:
                result = WorkerResult.model_validate(news["result"])
                if news["final_metrics"]:
                    (folder / "metrics.json").write_text(news["final_metrics"])
                (folder / "result.json").write_text(result.model_dump_json(indent=2))
                self.store.finish(db, job.id, result.state, result.reason, result.traceback, result.metrics)

    def cancel(self, job: Job) -> None:
        ray = self.connect()
        actor = self._actor(ray, job.id)
        with self.store.transaction() as db:
            current = self.store.require(job.id)
            if current.terminal:
                return
            self.store.request_cancel(db, job.id)
            if current.state == "queued":
                if actor is not None:
                    ray.kill(actor)
                self._pending.pop(job.id, None)
                self.store.finish(db, job.id, "cancelled", "cancelled before it started")
                return
        if actor is not None:
            ray.get(actor.cancel.remote(), timeout=30)

    def settle(self, job_id: str, timeout_s: float = 15.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not self.store.require(job_id).terminal:
            self.schedule()
            time.sleep(0.2)

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, **json.loads(self.settings.model_dump_json())}
