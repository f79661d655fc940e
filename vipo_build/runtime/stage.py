"""A pipeline stage as the driver sees it: a name, what its actors need, a set-up once per actor,
and the work it does on a batch of units.

A stage with `resources` runs in a pool of Ray actors (runtime/scheduler.py); one without runs in
the driver, in the order its work is given (the prompt filters: their dedup state is sequential).
"""

from __future__ import annotations

import os
import time
import traceback
from typing import Any

from pydantic import Field

from vipo_build.config import PoolConfig
from vipo_build.errors import VipoError, one_line
from vipo_build.runtime import actor_log
from vipo_build.strict import StrictModel

TRACEBACK_LINES = 40  # of a failure's traceback, kept in its record


class Stage:
    """Subclasses set `name` and `resources` and implement `process`; `setup` loads their models."""

    name: str
    resources: PoolConfig | None = None  # None: runs in the driver

    def setup(self) -> None:
        """Called once in each actor before its first batch (model loading goes here, not in __init__,
        so a stage object stays light to send to its actors)."""

    def process(self, batch: list[Any]) -> list[Any]:
        """One result per work item, in order. Raising fails the whole call; the scheduler retries its
        units one per call on a fresh actor, so one bad unit cannot sink the others."""
        raise NotImplementedError


class StageError(Exception):
    """What a stage raised, as its caller gets it: the one-line cause, the actor that raised it
    (process, node, log files) and the traceback."""

    def __init__(self, cause: str, actor: str, trace: list[str]):
        super().__init__(cause, actor, trace)
        self.cause, self.actor, self.trace = cause, actor, trace

    def __str__(self) -> str:
        return self.cause


def this_actor() -> str:
    """Where this process runs and logs: "pid 123 on 10.0.0.5, log /tmp/ray/.../worker-....err"."""
    import ray

    logs = ", ".join(mark.path for mark in actor_log.marks())
    return f"pid {os.getpid()} on {ray.util.get_node_ip_address()}" + (f", log {logs}" if logs else "")


class StageActor:
    """The Ray actor of every pooled stage: set up once, then batches, each timed for the busy figures."""

    def __init__(self, stage: Stage):
        self.stage = stage
        stage.setup()

    def process(self, batch: list[Any]) -> tuple[list[Any], float]:
        start = time.perf_counter()
        try:
            results = self.stage.process(batch)
        except Exception as err:
            cause = str(err) if isinstance(err, VipoError) else one_line(err)
            trace = "".join(traceback.format_exception(err)).splitlines()[-TRACEBACK_LINES:]
            raise StageError(cause, this_actor(), trace) from None
        return results, time.perf_counter() - start


class Failure(StrictModel):
    """A unit a stage could not do after its retries; kept in the root until a `--retry-failed` run."""

    stage: str
    unit: str
    attempts: int
    cause: str
    actor: str | None = Field(None, description="The process that raised it, its node and its log files.")
    traceback: list[str] = Field(default_factory=list, description="The end of the traceback where the stage raised.")

    def line(self) -> str:
        attempts = f"{self.attempts} attempt{'s' if self.attempts > 1 else ''}"
        return f"{self.stage} failed on unit {self.unit} after {attempts}: {self.cause}"
