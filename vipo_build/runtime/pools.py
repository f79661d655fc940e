"""Ray set-up, actor pools and the event loop that drives them.

Each GPU stage is a pool of long-lived actors (the model loads once per actor). The driver
reacts to finished object refs with callbacks, so several pools (prompt LLM, one per generator,
judge) and CPU tasks run at once and no stage waits on another's batch. `ray.util.ActorPool`
serves one pool at a time; this loop waits on all of them together.
"""

from __future__ import annotations

import logging
import os
import time
from collections import deque
from typing import Callable

import ray

from vipo_build.config import PoolConfig, RayConfig
from vipo_build.errors import VipoError, one_line
from vipo_build.runtime import failpoints
from vipo_build.runtime.actor_log import EXCEPTION_LINE


def start_ray(config: RayConfig) -> None:
    """Join the cluster at config.address or $RAY_ADDRESS, else start a local Ray."""
    if ray.is_initialized():
        return
    address = config.address or os.environ.get("RAY_ADDRESS")
    env_vars = {"TOKENIZERS_PARALLELISM": "false", **{k: os.environ[k] for k in failpoints.ENV_VARS if k in os.environ}}
    runtime_env = {"env_vars": env_vars}
    if address:
        ray.init(address=address, runtime_env=runtime_env, log_to_driver=False)
        return
    # A new local Ray turns token authentication on by itself (the safe default we keep) and warns
    # that it did on stderr at every run.
    logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
    ray.init(
        num_cpus=config.num_cpus,
        object_store_memory=config.object_store_mb * 2**20 if config.object_store_mb else None,
        include_dashboard=False,
        runtime_env=runtime_env,
        log_to_driver=False,
        configure_logging=False,
    )


class EventLoop:
    """Object refs being waited on, each with the callback to run when it is ready."""

    def __init__(self) -> None:
        self.waiting: dict[ray.ObjectRef, Callable[[ray.ObjectRef], None]] = {}

    def watch(self, ref: ray.ObjectRef, callback: Callable[[ray.ObjectRef], None]) -> None:
        self.waiting[ref] = callback

    def run(self) -> None:
        """Run callbacks as refs complete, until nothing is left to wait on."""
        while self.waiting:
            ready, _ = ray.wait(list(self.waiting), num_returns=1)
            self.waiting.pop(ready[0])(ready[0])


class ActorPool:
    """Actors of one class; calls queue until an actor is free. Tracks items and busy seconds."""

    def __init__(self, name: str, cls: type, args: tuple, pool: PoolConfig, loop: EventLoop):
        actor_cls = ray.remote(cls).options(
            num_cpus=pool.num_cpus,
            num_gpus=pool.num_gpus,
            max_restarts=pool.max_restarts,
            max_task_retries=pool.max_restarts,
        )
        self.name = name
        self.actors = [actor_cls.remote(*args) for _ in range(pool.actors)]
        self.idle = deque(self.actors)
        self.queue: deque = deque()
        self.loop = loop
        self.started = time.perf_counter()
        self.items = 0
        self.busy_seconds = 0.0

    def submit(self, method: str, args: tuple, on_done: Callable[[ray.ObjectRef], None], items: int, unit: str) -> None:
        """Call `method(*args)` on a free actor; `on_done` gets the ref of its result.

        Pool methods return (result, seconds spent): the seconds feed the busy fraction, and the
        result stays in the object store until a consumer needs it. `unit` (e.g.
        "aesthetics/u000003") names the work in the error when the call fails.
        """
        self.queue.append((method, args, on_done, items, unit))
        self._dispatch()

    def _dispatch(self) -> None:
        while self.idle and self.queue:
            actor = self.idle.popleft()
            method, args, on_done, items, unit = self.queue.popleft()
            result, seconds = getattr(actor, method).options(num_returns=2).remote(*args)

            def finished(_: ray.ObjectRef, actor=actor, result=result, seconds=seconds, on_done=on_done, items=items,
                         unit=unit) -> None:
                try:
                    self.busy_seconds += ray.get(seconds)
                except ray.exceptions.RayError as err:
                    # The result carries the same error: fetched, Ray does not print it again at exit.
                    try:
                        ray.get(result, timeout=0)
                    except Exception:
                        pass
                    raise VipoError(f"{self.name} failed on unit {unit}: {describe_failure(err)}") from None
                self.items += items
                self.idle.append(actor)
                on_done(result)
                self._dispatch()

            self.loop.watch(seconds, finished)

    def stats(self, earlier: dict[str, float] | None = None) -> dict[str, float]:
        """Items, busy and wall seconds (actor-seconds for wall), added to an earlier pool's of the same stage."""
        earlier = earlier or {"items": 0, "busy_seconds": 0.0, "actor_seconds": 0.0, "wall_seconds": 0.0}
        wall = time.perf_counter() - self.started
        items = earlier["items"] + self.items
        busy = earlier["busy_seconds"] + self.busy_seconds
        actor_seconds = earlier["actor_seconds"] + wall * len(self.actors)
        wall_total = earlier["wall_seconds"] + wall
        return {
            "items": items,
            "busy_seconds": round(busy, 3),
            "actor_seconds": round(actor_seconds, 3),
            "wall_seconds": round(wall_total, 3),
            "items_per_s": round(items / wall_total, 3) if wall_total else 0.0,
            "busy_fraction": round(busy / actor_seconds, 3) if actor_seconds else 0.0,
        }

    def shutdown(self) -> None:
        for actor in self.actors:
            ray.kill(actor)


def describe_failure(err: ray.exceptions.RayError) -> str:
    """One line for a failed remote call: the stage's own error when it raised one (an engine's
    names the model, the cause from its log and the log file), else the exception Ray reports."""
    cause = getattr(err, "cause", None)
    if isinstance(cause, VipoError):
        return str(cause)
    if cause is not None and not isinstance(cause, ray.exceptions.RayError):
        return one_line(cause)
    # An actor that died (e.g. in its constructor): the last exception line of Ray's traceback text.
    lines = [m.group(0).removeprefix("] ") for m in map(EXCEPTION_LINE.search, str(err).splitlines()) if m]
    return lines[-1] if lines else next(iter(str(err).strip().splitlines()), type(err).__name__)
