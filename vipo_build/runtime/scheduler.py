"""Ray set-up, and the scheduler that streams work units through pools of stage actors.

Every pooled stage has its actors from first use to the end of the run. Work waits in a queue per
pool, ordered by the priority the driver gives it (shard-plan order), and goes out as calls of
`units_per_call` units, `calls_in_flight` calls per actor, so an actor starts its next call the
moment one ends. An idle actor takes whatever is queued; a busy one gets another call only when a
whole one is queued, so engines see full batches whenever the work is there. The driver's callbacks run as calls finish and feed the next stage; nothing waits
for a whole round.

A call that raises, whose actor dies for good, or that runs past `call_timeout_s` is retried up to
`retries` times, one unit per call, on a fresh actor (its model state may be what broke); a unit
that still fails goes to the driver's `on_failure` with its cause, and the run goes on without it.

Why not Ray Data: its streaming executor runs a fixed dataset through fixed operators, while here
the judge's keep rate decides how many more units to expand, units must be filtered in unit order,
and each unit is committed to storage by the stage that made it. Ray's actors and `ray.wait` do the
rest.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import os
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

import ray

from vipo_build.config import RayConfig
from vipo_build.errors import VipoError, one_line
from vipo_build.runtime import failpoints
from vipo_build.runtime.actor_log import EXCEPTION_LINE
from vipo_build.runtime.stage import Failure, Stage, StageActor, StageError

log = logging.getLogger(__name__)


# Environment variables that configure storage access (credentials, endpoints, regions): the
# driver's reach every worker through Ray's runtime environment, which lives in the cluster's
# control store, never in the dataset root.
STORAGE_ENV_PREFIXES = ("AWS_", "FSSPEC_", "GOOGLE_", "GCS_", "AZURE_", "HF_")


def start_ray(config: RayConfig) -> None:
    """Join the cluster at config.address or $RAY_ADDRESS, else start a local Ray (never one that
    `ray start` left running on this machine, which Ray's own default would join)."""
    if ray.is_initialized():
        return
    address = config.address or os.environ.get("RAY_ADDRESS")
    env_vars = {"TOKENIZERS_PARALLELISM": "false", **{k: os.environ[k] for k in failpoints.ENV_VARS if k in os.environ},
                **{k: v for k, v in os.environ.items() if k.startswith(STORAGE_ENV_PREFIXES)}}
    runtime_env = {"env_vars": env_vars}
    if address:
        ray.init(address=address, runtime_env=runtime_env, log_to_driver=False, configure_logging=False)
        return
    # A new local Ray turns token authentication on by itself (the safe default we keep) and warns
    # that it did on stderr at every run.
    logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
    ray.init(
        address="local",
        num_cpus=config.num_cpus,
        object_store_memory=config.object_store_mb * 2**20 if config.object_store_mb else None,
        include_dashboard=False,
        runtime_env=runtime_env,
        log_to_driver=False,
        configure_logging=False,
    )


def describe_failure(err: BaseException) -> str:
    """One line for a failed remote call: the stage's own error when it raised one (an engine's
    names the model, the cause from its log and the log file), else the exception Ray reports."""
    cause = getattr(err, "cause", None)
    if isinstance(cause, StageError):
        return cause.cause
    if isinstance(cause, VipoError):
        return str(cause)
    if cause is not None and not isinstance(cause, ray.exceptions.RayError):
        return one_line(cause)
    if not isinstance(err, ray.exceptions.RayError):
        return one_line(err)
    # An actor that died (e.g. in its constructor): the last exception line of Ray's traceback text.
    found = [m for m in map(EXCEPTION_LINE.search, str(err).splitlines()) if m]
    if found:  # "vipo_build.errors.VipoError: ..." reads as "VipoError: ..."
        return f"{found[-1].group(1).rsplit('.', 1)[-1]}: {found[-1].group(2)}"
    return next(iter(str(err).strip().splitlines()), type(err).__name__)


def units_named(tasks: list[Task]) -> str:
    """"unit aesthetics/u000003" or "units aesthetics/u000003, aesthetics/u000004"."""
    return f"unit {tasks[0].unit}" if len(tasks) == 1 else f"units {', '.join(t.unit for t in tasks)}"


@dataclass
class Task:
    """One unit's work for one stage."""

    unit: str  # as messages name it, e.g. "aesthetics/u000003"
    work: Any
    priority: tuple
    attempts: int = 0  # failed calls so far
    alone: bool = False  # retried: goes in a call of its own


@dataclass
class Call:
    pool: Pool
    actor: Any
    tasks: list[Task]
    ref: ray.ObjectRef
    started: float | None = None  # when it became its actor's running call


@dataclass
class Pool:
    """The actors of one stage and the work waiting for them."""

    stage: Stage
    on_result: Callable[[Task, Any], None]
    on_failure: Callable[[Task, Failure], None]
    queue: list = field(default_factory=list)  # heap of (priority, seq, Task)
    actors: list = field(default_factory=list)
    calls: dict = field(default_factory=dict)  # actor -> deque of its Calls, running one first
    items: int = 0
    busy_seconds: float = 0.0
    actor_seconds: float = 0.0  # of retired actors; live ones are added in stats()
    started: dict = field(default_factory=dict)  # actor -> when it was created
    names: dict = field(default_factory=dict)  # actor -> "judge:tiny-vlm#2", as messages name it
    created: int = 0
    peak_queued: int = 0
    opened: float | None = None  # when its first actor was created

    @property
    def name(self) -> str:
        return self.stage.name

    def new_actor(self) -> Any:
        resources = self.stage.resources
        actor = ray.remote(StageActor).options(
            num_cpus=resources.num_cpus, num_gpus=resources.num_gpus,
            max_restarts=resources.max_restarts, max_task_retries=resources.max_restarts,
        ).remote(self.stage)
        self.actors.append(actor)
        self.opened = self.opened or time.perf_counter()
        self.calls[actor] = deque()
        self.started[actor] = time.perf_counter()
        self.created += 1
        self.names[actor] = f"{self.name}#{self.created}"
        log.debug("%s starting (%g CPUs, %g GPUs)", self.names[actor], resources.num_cpus, resources.num_gpus)
        return actor

    def in_flight(self) -> int:
        return sum(len(c) for c in self.calls.values())

    def stats(self) -> dict[str, float]:
        now = time.perf_counter()
        actor_seconds = self.actor_seconds + sum(now - self.started[a] for a in self.actors)
        wall = now - self.opened if self.opened else 0.0
        return {
            "items": self.items,
            "wall_seconds": round(wall, 3),
            "items_per_s": round(self.items / wall, 3) if wall else 0.0,
            "busy_seconds": round(self.busy_seconds, 3),
            "actor_seconds": round(actor_seconds, 3),
            "busy_fraction": round(self.busy_seconds / actor_seconds, 3) if actor_seconds else 0.0,
            "peak_queued": self.peak_queued,
        }


class Scheduler:
    """Pools of stage actors, fed from per-pool priority queues, with retries and timeouts."""

    def __init__(self):
        self.pools: dict[str, Pool] = {}
        self.calls: dict[ray.ObjectRef, Call] = {}
        self.seq = itertools.count()  # FIFO among equal priorities
        self.events = 0

    def add(self, stage: Stage, on_result: Callable[[Task, Any], None],
            on_failure: Callable[[Task, Failure], None] | None = None) -> Pool:
        self.pools[stage.name] = Pool(stage, on_result, on_failure or self._raise)
        return self.pools[stage.name]

    @staticmethod
    def _raise(task: Task, failure: Failure) -> None:
        raise VipoError(failure.line())

    def submit(self, stage: str, unit: str, work: Any, priority: tuple = ()) -> None:
        pool = self.pools[stage]
        task = Task(unit, work, priority)
        if pool.stage.resources is None:  # a driver-side stage: done now, in submission order
            pool.items += 1
            pool.on_result(task, pool.stage.process([work])[0])
            return
        heapq.heappush(pool.queue, (priority, next(self.seq), task))
        pool.peak_queued = max(pool.peak_queued, len(pool.queue))

    def cancel(self, dropped: Callable[[Task], bool]) -> list[tuple[str, Task]]:
        """Take the queued tasks `dropped` selects out of every pool, for good: (stage, task) each.
        Calls already sent run to the end."""
        taken = []
        for pool in self.pools.values():
            kept = [entry for entry in pool.queue if not dropped(entry[2])]
            if len(kept) < len(pool.queue):
                taken += [(pool.name, entry[2]) for entry in pool.queue if dropped(entry[2])]
                heapq.heapify(kept)
                pool.queue = kept
        return taken

    # Dispatch ---------------------------------------------------------------------------------

    def dispatch(self) -> None:
        for pool in self.pools.values():
            resources = pool.stage.resources
            if resources is None:
                continue
            while pool.queue and len(pool.actors) < resources.actors:
                pool.new_actor()
            for actor in sorted(pool.actors, key=lambda a: len(pool.calls[a])):  # least loaded first
                while pool.queue and len(pool.calls[actor]) < resources.calls_in_flight:
                    if pool.calls[actor] and len(pool.queue) < resources.units_per_call and not pool.queue[0][2].alone:
                        break  # a busy actor gets only a full call queued; an idle one takes what there is
                    self._call(pool, actor, self._batch(pool))

    @staticmethod
    def _batch(pool: Pool) -> list[Task]:
        tasks = [heapq.heappop(pool.queue)[2]]
        while not tasks[0].alone and pool.queue and len(tasks) < pool.stage.resources.units_per_call \
                and not pool.queue[0][2].alone:
            tasks.append(heapq.heappop(pool.queue)[2])
        return tasks

    def _call(self, pool: Pool, actor: Any, tasks: list[Task]) -> None:
        call = Call(pool, actor, tasks, actor.process.remote([t.work for t in tasks]))
        if not pool.calls[actor]:
            call.started = time.perf_counter()
        pool.calls[actor].append(call)
        self.calls[call.ref] = call
        log.debug("%s: call of %s sent", pool.names[actor], units_named(tasks))

    # Completion -------------------------------------------------------------------------------

    def step(self) -> bool:
        """Dispatch what is queued and handle the next finished (or timed-out) call; False when
        nothing is queued or running."""
        self.dispatch()
        if not self.calls:
            return False
        ready, _ = ray.wait(list(self.calls), num_returns=1, timeout=self._next_deadline())
        if ready:
            self._finished(self.calls.pop(ready[0]))
        self._expire()
        return True

    def run(self) -> None:
        """Until nothing is queued or running."""
        while self.step():
            pass

    def _next_deadline(self) -> float | None:
        deadlines = [c.started + c.pool.stage.resources.call_timeout_s - time.perf_counter()
                     for c in self.calls.values() if c.started is not None and c.pool.stage.resources.call_timeout_s]
        return max(0.0, min(deadlines)) if deadlines else None

    def _finished(self, call: Call) -> None:
        self.events += 1
        pool = call.pool
        self._advance(call)
        try:
            results, seconds = ray.get(call.ref)
        except Exception as err:  # the stage raised, or its actor died for good
            raised = err.cause if isinstance(getattr(err, "cause", None), StageError) else None
            self._fail(call, describe_failure(err), raised)
            return
        pool.busy_seconds += seconds
        pool.items += len(call.tasks)
        log.debug("%s: %s done in %.2f s", pool.names.get(call.actor, pool.name), units_named(call.tasks), seconds)
        for task, result in zip(call.tasks, results):
            pool.on_result(task, result)

    def _advance(self, call: Call) -> None:
        """`call` left its actor's queue: the next one there is running from now."""
        queue = call.pool.calls.get(call.actor)
        if queue is None:
            return
        queue.remove(call)
        if queue and queue[0].started is None:
            queue[0].started = time.perf_counter()

    def _expire(self) -> None:
        now = time.perf_counter()
        for call in list(self.calls.values()):
            timeout = call.pool.stage.resources.call_timeout_s
            if call.ref in self.calls and call.started is not None and timeout and now - call.started > timeout:
                self.calls.pop(call.ref)
                self._advance(call)
                self._fail(call, f"timed out after {timeout:g} s")

    def _fail(self, call: Call, cause: str, raised: StageError | None = None) -> None:
        """Retire the actor (its other calls go back to the queue as they were), then retry or give up."""
        pool = call.pool
        actor = pool.names.get(call.actor, pool.name)
        if raised:
            log.debug("%s (%s) raised on %s:\n%s", actor, raised.actor, units_named(call.tasks), "\n".join(raised.trace))
        self._retire(pool, call.actor)
        retries = pool.stage.resources.retries
        retried = []
        for task in call.tasks:
            task.attempts += 1
            if task.attempts > retries:
                where = {"actor": f"{actor}, {raised.actor}", "traceback": raised.trace} if raised else {"actor": actor}
                pool.on_failure(task, Failure(stage=pool.name, unit=task.unit, attempts=task.attempts, cause=cause, **where))
                continue
            retried.append(task)
            task.alone = True
            heapq.heappush(pool.queue, (task.priority, next(self.seq), task))
        if retried:  # one line per failed call: its units failed together, of one cause
            # a call holds several units only on their first attempt (a retried unit goes alone)
            log.warning("%s failed on %s (attempt %d of %d): %s; retrying on a fresh actor",
                        actor, units_named(retried), retried[0].attempts, retries + 1, cause)

    def _retire(self, pool: Pool, actor: Any) -> None:
        if actor not in pool.calls:
            return
        for call in pool.calls.pop(actor):
            self.calls.pop(call.ref, None)
            for task in call.tasks:
                heapq.heappush(pool.queue, (task.priority, next(self.seq), task))
        pool.actors.remove(actor)
        pool.actor_seconds += time.perf_counter() - pool.started.pop(actor)
        log.debug("%s retired", pool.names.pop(actor))
        ray.kill(actor, no_restart=True)

    def shutdown(self) -> None:
        for pool in self.pools.values():
            for actor in list(pool.actors):
                pool.actor_seconds += time.perf_counter() - pool.started.pop(actor)
                ray.kill(actor)
            pool.actors.clear()
            pool.calls.clear()
        self.calls.clear()

    def stats(self) -> dict[str, dict]:
        return {name: pool.stats() for name, pool in self.pools.items() if pool.stage.resources is not None}
