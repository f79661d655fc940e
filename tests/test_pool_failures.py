"""How a failed remote call reads: one line with the cause, on local Ray with plain actors."""

from __future__ import annotations

import sys

import pytest
import ray
from ray import cloudpickle

from vipo_build.config import PoolConfig, RayConfig
from vipo_build.errors import VipoError
from vipo_build.runtime.pools import ActorPool, EventLoop, describe_failure, start_ray


cloudpickle.register_pickle_by_value(sys.modules[__name__])  # Ray's workers cannot import this test module


class Fails:
    """Its call raises, as a stage method can."""

    def work(self, x: int) -> tuple[int, float]:
        raise ValueError(f"no good: {x}\nsecond line")


class CannotStart:
    """Its constructor raises, as an engine actor does when its config cannot run here."""

    def __init__(self) -> None:
        raise VipoError("judge.engine: set max_model_len: a CPU engine sizes its token budget from it")

    def work(self, x: int) -> tuple[int, float]:
        return x, 0.0


@pytest.fixture(scope="module")
def local_ray():
    start_ray(RayConfig(num_cpus=2, object_store_mb=100))
    yield
    ray.shutdown()


@pytest.mark.parametrize("cls, cause", [
    (Fails, "ValueError: no good: 3"),
    (CannotStart, "VipoError: judge.engine: set max_model_len: a CPU engine sizes its token budget from it"),
])
def test_a_failed_call_names_the_pool_the_unit_and_the_cause(local_ray, cls, cause):
    loop = EventLoop()
    pool = ActorPool("judge", cls, (), PoolConfig(actors=1, num_cpus=0.5, max_restarts=0), loop)
    pool.submit("work", (3,), lambda ref: None, items=1, unit="aesthetics/u000003")
    with pytest.raises(VipoError) as failed:
        loop.run()
    assert str(failed.value).startswith("judge failed on unit aesthetics/u000003: ")
    assert str(failed.value).endswith(cause) and "\n" not in str(failed.value)
    pool.shutdown()


def test_a_stage_error_is_passed_on_as_it_is(local_ray):
    @ray.remote
    def stage() -> None:
        raise VipoError("engine /models/vlm: RuntimeError: CPU Generator does not use offset (log: /tmp/w.out)")

    with pytest.raises(ray.exceptions.RayError) as failed:
        ray.get(stage.remote())
    assert describe_failure(failed.value) == "engine /models/vlm: RuntimeError: CPU Generator does not use offset (log: /tmp/w.out)"
