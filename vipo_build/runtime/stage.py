"""A pipeline stage as the driver sees it: a name, what its actors need, a set-up once per actor,
and the work it does on a batch of units.

A stage with `resources` runs in a pool of Ray actors (runtime/scheduler.py); one without runs in
the driver, in the order its work is given (the prompt filters: their dedup state is sequential).
"""

from __future__ import annotations

import time
from typing import Any

from pydantic import BaseModel, ConfigDict

from vipo_build.config import PoolConfig


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


class StageActor:
    """The Ray actor of every pooled stage: set up once, then batches, each timed for the busy figures."""

    def __init__(self, stage: Stage):
        self.stage = stage
        stage.setup()

    def process(self, batch: list[Any]) -> tuple[list[Any], float]:
        start = time.perf_counter()
        results = self.stage.process(batch)
        return results, time.perf_counter() - start


class Failure(BaseModel):
    """A unit a stage could not do after its retries; kept in the root until a `--retry-failed` run."""

    model_config = ConfigDict(extra="forbid")

    stage: str
    unit: str
    attempts: int
    cause: str

    def line(self) -> str:
        attempts = f"{self.attempts} attempt{'s' if self.attempts > 1 else ''}"
        return f"{self.stage} failed on unit {self.unit} after {attempts}: {self.cause}"
