"""The Ray executor: each stage runs in a Ray actor on a node of a Ray cluster that has the task's resources
(`executor.resources`), in the same sandbox there, the task and trial folders at the same paths (a shared file
system). Telemetry streams back while it runs (the gates read it here), a gate's stop reaches the remote process
group, and a worker or node that dies mid-stage gets the stage run again elsewhere, once, then `executor_lost`.

Actors are kept and reused, one stage at a time each (a new actor costs a worker process start), at most as many
as the cluster's nodes can hold at once when the executor starts: more would wait for resources our own idle actors
hold. They are killed when the executor is closed or collected, or with the driver.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import weakref
from typing import Any

from evoforge.config import ExecutorConfig
from evoforge.errors import TaskError
from evoforge.experiment.executors.base import Executor, JobResult, StageJob, lost_result
from evoforge.experiment.executors.ray_worker import StageWorker

POLL_S = 0.2  # how often the driver fetches new telemetry while a stage runs
STOP_GRACE_S = 10.0  # how long a cancelled stage's actor has to stop its process group before it is killed
LOCAL = "local"
LOOPBACK_ENV = {  # a Ray started here stays on this machine: loopback addresses only, no usage reports
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # makes Ray keep 127.0.0.1 rather than look for a public address
    "RAY_USAGE_STATS_ENABLED": "0",
}


def _ray() -> Any:
    """The ray package, or a one-line error saying how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise TaskError("executor kind ray needs the ray package: pip install 'evoforge[ray]'") from exc
    return ray


def connect(address: str | None, num_cpus: int) -> str:
    """Join the cluster at `address` ('auto', 'ray://HOST:PORT', HOST:PORT), or start a local Ray with `num_cpus`
    CPUs on loopback for 'local'/None; a Ray already initialised in this process is used as it is."""
    if address in (None, LOCAL):
        for name, value in LOOPBACK_ENV.items():
            os.environ.setdefault(name, value)
    ray = _ray()
    if ray.is_initialized():
        return "the Ray of this process"
    try:
        if address in (None, LOCAL):
            ray.init(num_cpus=num_cpus, include_dashboard=False, _node_ip_address="127.0.0.1",
                     log_to_driver=False, configure_logging=False)
            return "a local Ray"
        ray.init(address=address, log_to_driver=False, configure_logging=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise TaskError(f"--ray-address / executor.address {address!r}: cannot join the Ray cluster: {exc}") from exc
    return f"the Ray cluster at {address}"


def lost_errors() -> tuple[type[BaseException], ...]:
    """Ray's errors for a worker, actor or node that died under a stage (the stage is run again elsewhere)."""
    exc = _ray().exceptions
    names = ("RayActorError", "ActorDiedError", "ActorUnavailableError", "WorkerCrashedError", "NodeDiedError",
             "OwnerDiedError", "ObjectLostError", "LocalRayletDiedError")
    return tuple(getattr(exc, name) for name in names if hasattr(exc, name))


class RayExecutor(Executor):
    """Runs each stage in an actor (`actor_class`) holding the task's resources on some node: an idle one of its
    own, else a new one."""

    kind = "ray"
    actor_class: type = StageWorker

    def __init__(self, config: ExecutorConfig | None = None, *, address: str | None = None,
                 concurrency: int = 2) -> None:
        self.config = config or ExecutorConfig(kind="ray")
        self.address = address or self.config.address or LOCAL
        self.where = connect(self.address, concurrency)
        self.wanted = self.config.resources.ray_resources()
        problem = self.unplaceable()
        if problem:
            raise TaskError(problem)
        self._remote = _ray().remote(self.actor_class)
        self.capacity = self._capacity()
        self._idle: list[Any] = []  # actors done with their last stage, holding their resources
        self._slots: asyncio.Semaphore | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._finalizer = weakref.finalize(self, _kill_all, self._idle)

    def close(self) -> None:
        """Kill the idle actors (their resources go back to the cluster)."""
        self._finalizer()

    def _capacity(self) -> int:
        """How many stage actors the live nodes can hold at once (at least 1)."""
        total = 0
        for node in _ray().nodes():
            have = node.get("Resources", {}) if node.get("Alive") else {}
            fits = [int(have.get(name, 0) // amount) for name, amount in self.wanted.items()]
            total += min(fits) if fits else 0
        return max(1, total)

    def _slot(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        if self._slots is None or self._loop is not loop:
            self._slots, self._loop = asyncio.Semaphore(self.capacity), loop
        return self._slots

    def unplaceable(self) -> str | None:
        """Why no live node of the cluster can take a stage (its resources are nowhere), or None if one can."""
        nodes = [node.get("Resources", {}) for node in _ray().nodes() if node.get("Alive")]
        if any(all(have.get(name, 0) >= amount for name, amount in self.wanted.items()) for have in nodes):
            return None
        totals = _ray().cluster_resources()
        shown = {k: v for k, v in totals.items() if not k.startswith(("node:", "memory", "object_store"))}
        return (f"task.yaml: executor.resources ask each stage for {_show(self.wanted)} but no live node of "
                f"{self.where} has that (the cluster has {_show(shown) or 'nothing'} in {len(nodes)} node(s)); "
                "lower executor.resources or add a node that has them (`ray start --address HEAD:6379 "
                "--num-gpus N`)")

    async def run(self, job: StageJob, stop: asyncio.Event, started: Any | None = None) -> JobResult:
        del started  # a Ray stage is not started ahead (`start` gives None)
        reasons: list[str] = []
        began = time.monotonic()
        for attempt in range(1, self.config.retries + 2):
            if attempt > 1:
                problem = self.unplaceable()
                if problem:
                    reasons.append(problem)
                    break
            try:
                result = await self._attempt(job, stop)
            except lost_errors() as exc:
                reasons.append(f"attempt {attempt}: {type(exc).__name__}: {_first_line(exc)}")
                continue
            return JobResult(run=result.run, reported=result.reported, result=result.result,
                             limits_hit=result.limits_hit, attempts=attempt, where=result.where)
        return lost_result(f"the Ray worker running {job.label or 'the stage'} was lost "
                           f"({len(reasons)} attempt(s)): " + "; ".join(reasons),
                           attempts=len(reasons), seconds=time.monotonic() - began)

    def _new_actor(self) -> Any:
        options: dict[str, Any] = {"num_cpus": self.config.resources.num_cpus, "max_restarts": 0}
        if self.config.resources.num_gpus:
            options["num_gpus"] = self.config.resources.num_gpus
        custom = {k: v for k, v in self.wanted.items() if k not in ("CPU", "GPU")}
        if custom:
            options["resources"] = custom
        return self._remote.options(**options).remote()

    async def _attempt(self, job: StageJob, stop: asyncio.Event) -> JobResult:
        """One try on an idle actor or a new one; the actor goes back to the idle ones only if the stage ended."""
        async with self._slot():
            actor = self._idle.pop() if self._idle else self._new_actor()
            healthy = False
            try:
                result = await self._drive(actor, job, stop)
                healthy = True
                return result
            finally:
                if healthy:
                    self._idle.append(actor)
                else:
                    _ray().kill(actor, no_restart=True)

    async def _drive(self, actor: Any, job: StageJob, stop: asyncio.Event) -> JobResult:
        """Run `job` on `actor`: stream its telemetry into the local file, pass a gate's stop on."""
        running = asyncio.wrap_future(actor.run.remote(job).future())
        stopping = asyncio.ensure_future(stop.wait())
        offset, stop_sent = 0, False
        try:
            with open(job.telemetry_path, "ab") as telemetry:
                while True:
                    waiting = {running} if stop_sent else {running, stopping}
                    await asyncio.wait(waiting, timeout=POLL_S, return_when=asyncio.FIRST_COMPLETED)
                    offset = await _fetch(actor, offset, telemetry, running)
                    if running.done():
                        break
                    if stop.is_set() and not stop_sent:
                        await asyncio.wrap_future(actor.stop.remote().future())
                        stop_sent = True
                while True:  # what the stage wrote last
                    before = offset
                    offset = await _fetch(actor, offset, telemetry, running)
                    if offset == before:
                        break
            with contextlib.suppress(*lost_errors()):
                await asyncio.wrap_future(actor.finish.remote().future())
            return running.result()
        except asyncio.CancelledError:
            await _stop_quietly(actor, running)
            raise
        finally:
            stopping.cancel()


async def _fetch(actor: Any, offset: int, telemetry: Any, running: asyncio.Future[Any]) -> int:
    """Append the stage's new telemetry to the local file; returns the new offset (unchanged if the actor died:
    `running` then says how)."""
    try:
        chunk = await asyncio.wrap_future(actor.telemetry.remote(offset).future())
    except lost_errors():
        if not running.done():
            await asyncio.wait({running}, timeout=STOP_GRACE_S)
        return offset
    if chunk:
        telemetry.write(chunk)
        telemetry.flush()
    return offset + len(chunk)


async def _stop_quietly(actor: Any, running: asyncio.Future[Any]) -> None:
    """A cancelled stage: ask the actor to stop its process group and wait (bounded) for it to have done so."""
    with contextlib.suppress(Exception):
        await asyncio.wait_for(asyncio.wrap_future(actor.stop.remote().future()), STOP_GRACE_S)
        await asyncio.wait({running}, timeout=STOP_GRACE_S)


def _kill_all(actors: list[Any]) -> None:
    with contextlib.suppress(Exception):
        ray = _ray()
        while actors:
            ray.kill(actors.pop(), no_restart=True)


def _show(resources: dict[str, float]) -> str:
    return ", ".join(f"{name}: {amount:g}" for name, amount in sorted(resources.items()))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else ""
