"""The scheduler and the streaming driver on local Ray, with light stages (no vLLM, no diffusers)."""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
import shutil
import sys
import time
from pathlib import Path

import pytest
import ray
from ray import cloudpickle
from rich.console import Console

from tests.conftest import tiny_config
from vipo_build.config import PipelineConfig, PoolConfig, RayConfig
from vipo_build.errors import VipoError
from vipo_build.preflight import Cluster, check
from vipo_build.runtime.scheduler import Scheduler, describe_failure, start_ray
from vipo_build.runtime.stage import Stage

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
import sim_stages  # noqa: E402  the driver test streams real units through the benchmark's simulated stages

cloudpickle.register_pickle_by_value(sys.modules[__name__])  # Ray's workers cannot import test modules
cloudpickle.register_pickle_by_value(sim_stages)


class Echo(Stage):
    """Returns its work; notes (start, end, batch) of each call in `log` (a Ray actor)."""

    def __init__(self, name: str, pool: PoolConfig, log=None, seconds: float = 0.0, fail_on: frozenset = frozenset()):
        self.name, self.resources, self.log, self.seconds, self.fail_on = name, pool, log, seconds, fail_on

    def process(self, batch: list) -> list:
        start = time.time()
        if self.fail_on & set(batch):
            raise ValueError(f"no good: {sorted(self.fail_on & set(batch))}\nsecond line")
        time.sleep(self.seconds)
        if self.log is not None:
            ray.get(self.log.note.remote(start, time.time(), batch))
        return batch


class CannotStart(Stage):
    """Its set-up raises, as an engine does when its config cannot run here."""

    name = "judge"

    def __init__(self):
        self.resources = PoolConfig(num_cpus=0.25, max_restarts=0, retries=1)

    def setup(self) -> None:
        raise VipoError("judge.engine: set max_model_len: a CPU engine sizes its token budget from it")


@ray.remote(num_cpus=0)
class Log:
    def __init__(self):
        self.calls = []

    def note(self, start, end, batch):
        self.calls.append((start, end, batch))

    def get(self):
        return self.calls


@pytest.fixture(scope="module")
def local_ray():
    start_ray(RayConfig(num_cpus=4, object_store_mb=200))
    yield
    ray.shutdown()


def run_all(stage: Stage, work: list, priorities: list | None = None) -> tuple[list, list, Scheduler]:
    results, failures = [], []
    scheduler = Scheduler()
    scheduler.add(stage, lambda task, result: results.append(result), lambda task, failure: failures.append(failure))
    for i, item in enumerate(work):
        scheduler.submit(stage.name, f"aesthetics/u{item:06d}", item, priorities[i] if priorities else (i,))
    scheduler.run()
    scheduler.shutdown()
    return results, failures, scheduler


def test_work_goes_out_in_priority_order_in_calls_of_units_per_call(local_ray):
    log = Log.remote()
    pool = PoolConfig(actors=1, num_cpus=0.25, units_per_call=3, calls_in_flight=1)
    work = list(range(10))
    results, failures, _ = run_all(Echo("generate:a", pool, log), work, priorities=[(-i,) for i in work])
    assert results == list(range(9, -1, -1)) and failures == []
    assert [batch for _, _, batch in ray.get(log.get.remote())] == [[9, 8, 7], [6, 5, 4], [3, 2, 1], [0]]


def test_calls_in_flight_are_bounded_per_actor(local_ray):
    log = Log.remote()
    pool = PoolConfig(actors=2, num_cpus=0.25, calls_in_flight=2)
    scheduler = Scheduler()
    scheduler.add(Echo("judge", pool, log, seconds=0.05), lambda task, result: None)
    for i in range(12):
        scheduler.submit("judge", f"aesthetics/u{i:06d}", i, (i,))
    scheduler.dispatch()
    assert len(scheduler.calls) == 4  # two actors, two calls each; the rest waits in the queue
    while scheduler.step():
        assert len(scheduler.calls) <= 4 and scheduler.pools["judge"].in_flight() <= 4
    scheduler.shutdown()
    calls = ray.get(log.get.remote())
    assert len(calls) == 12
    # each actor runs one call at a time: when any call starts, at most two are running
    assert max(sum(s <= start < e for s, e, _ in calls) for start, _, _ in calls) <= 2


@pytest.mark.parametrize("stage, cause", [
    (Echo("judge", PoolConfig(num_cpus=0.25, retries=2), fail_on=frozenset({3})), "ValueError: no good: [3]"),
    (CannotStart(), "VipoError: judge.engine: set max_model_len: a CPU engine sizes its token budget from it"),
])
def test_a_unit_that_keeps_failing_is_given_up_after_its_retries_and_the_rest_is_done(local_ray, stage, cause, caplog):
    with caplog.at_level(logging.WARNING, logger="vipo_build.runtime.scheduler"):
        results, failures, _ = run_all(stage, [1, 2, 3, 4])
    assert sorted(f.unit for f in failures) == (["aesthetics/u000003"] if isinstance(stage, Echo) else
                                          [f"aesthetics/u{i:06d}" for i in (1, 2, 3, 4)])
    failure = failures[0]
    assert failure.attempts == stage.resources.retries + 1
    assert failure.line() == f"judge failed on unit {failure.unit} after {failure.attempts} attempts: {cause}"
    assert "\n" not in failure.line()
    if isinstance(stage, Echo):
        assert sorted(results) == [1, 2, 4]
        # the record names the process that raised, its node and its log file, and keeps the traceback
        assert re.fullmatch(r"judge#3, pid \d+ on [\d.]+, log /\S+\.out, /\S+\.err", failure.actor), failure.actor
        # each retry is logged once, naming the actor that failed (a fresh one each time) and the unit
        assert [r.getMessage() for r in caplog.records] == [
            f"judge#{n} failed on unit aesthetics/u000003 (attempt {n} of 3): ValueError: no good: [3]; retrying on a fresh actor"
            for n in (1, 2)]
        assert failure.traceback[-2:] == ["ValueError: no good: [3]", "second line"]
        assert any(line.strip().startswith("raise ValueError") for line in failure.traceback)


def test_a_call_past_its_timeout_is_retried_on_a_fresh_actor_then_given_up(local_ray):
    pool = PoolConfig(num_cpus=0.25, retries=1, call_timeout_s=1.0)
    started = time.monotonic()
    results, failures, _ = run_all(Echo("judge", pool, seconds=30), [7])
    assert results == [] and [f.line() for f in failures] == ["judge failed on unit aesthetics/u000007 after 2 attempts: "
                                                               "timed out after 1 s"]
    assert time.monotonic() - started < 20


def test_a_stage_error_is_passed_on_as_it_is(local_ray):
    @ray.remote
    def stage() -> None:
        raise VipoError("engine /models/vlm: RuntimeError: CPU Generator does not use offset (log: /tmp/w.out)")

    with pytest.raises(ray.exceptions.RayError) as failed:
        ray.get(stage.remote())
    assert describe_failure(failed.value) == "engine /models/vlm: RuntimeError: CPU Generator does not use offset (log: /tmp/w.out)"


def test_preflight_refuses_pools_that_cannot_all_run_at_once():
    raw = tiny_config(output="/tmp/unused")
    raw["judge"]["engines"][0]["pool"] = {"actors": 2, "num_gpus": 4, "num_cpus": 1}
    raw["judge"]["engines"][0]["engine"]["tensor_parallel_size"] = 8
    with pytest.raises(VipoError) as refused:
        check(PipelineConfig.model_validate(raw), Cluster(gpus=4, cpus=64))
    assert str(refused.value) == (
        "this config cannot run on this cluster: judge.engines[0] (tiny-vlm): engine.tensor_parallel_size 8 spans more GPUs "
        "than pool.num_gpus 4; the pools ask for 8 GPUs at once (judge.engines[0] (tiny-vlm) 8) but the cluster has 4: 4 short")



def test_a_judge_of_no_configured_modality_asks_for_nothing_and_is_not_shown(tmp_path):
    from tests.conftest import vipo, write_config
    from vipo_build.preflight import pool_asks
    from vipo_build.run import product_stages
    from vipo_build.runtime.storage import Storage

    raw = tiny_config(output=str(tmp_path / "out"))
    raw["categories"] = {"aesthetics": {"pairs": 2}}  # images only: the tiny video judge has nothing to judge
    config = PipelineConfig.model_validate(raw)
    assert [(i, e.name) for i, e in config.judges_at_work()] == [(0, "tiny-vlm")] and not config.combines_judges()
    assert [a.name for a in pool_asks(config) if a.name.startswith("judge")] == ["judge.engines[0] (tiny-vlm)"]
    assert list(product_stages(config, Storage(str(tmp_path / "out"))).judges) == ["tiny-vlm"]
    dry = vipo("run", str(write_config(tmp_path / "images.yaml", raw)), "--dry-run")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "judge: tiny-vlm (" in dry.stdout and "tiny-video-vlm" not in dry.stdout and "combined by" not in dry.stdout
    assert PipelineConfig.model_validate(tiny_config()).combines_judges() is False  # each modality has one judge

def simulated_run(tmp_path: Path, overgen: float = 1.0, judges: tuple[str, ...] = ("tiny-vlm",), **ray_overrides):
    """The product's driver, filters, storage and shard writer; simulated model stages (1 simulated s = 1 ms)."""
    from vipo_build.run import Run
    from vipo_build.runtime.storage import Storage
    from vipo_build.shards.plan import ShardPlan

    raw = tiny_config(output=str(tmp_path / "out"))
    raw["categories"] = {"aesthetics": {"pairs": 40}, "composition": {"pairs": 40}}
    raw["prompts"]["overgen"] = overgen  # 1.0: round 0 falls short, a second round is needed
    raw["generate"]["generators"] = [{**g, "name": n} for g, n in zip(raw["generate"]["generators"][:2], ("sd35-large", "sana15"))]
    raw["generate"]["unit_size"] = 4
    raw["shards"]["pairs_per_shard"] = 10
    raw["ray"] |= ray_overrides
    judge = raw["judge"]["engines"][0]  # the judges share its CPU: the pools must fit in local Ray at once
    raw["judge"]["engines"] = [{**judge, "name": name, "pool": {**judge["pool"], "num_cpus": 1 / len(judges)}} for name in judges]
    config = PipelineConfig.model_validate(raw)
    storage = Storage(config.output)
    plan = ShardPlan.of(config)
    # simulated seconds per prompt, candidate and judge request on one actor
    seconds = {"prompts": 0.1, "generate:sd35-large": 8.0, "generate:sana15": 2.0} | {f"judge:{j}": 0.25 for j in judges}
    stages = sim_stages.simulated_stages(config, storage, 0.001, seconds)
    events = []

    class Noting(Run):
        def generated(self, task, count):
            events.append(("generated", task.work.category, task.work.unit, self.states[task.work.category].round_of(task.work.unit)))
            super().generated(task, count)

        def judged_unit(self, task, verdicts):
            work = task.work
            events.append(("judged", work.category.name, work.unit, self.states[work.category.name].round_of(work.unit), work.judge))
            super().judged_unit(task, verdicts)

    run = Noting(config, plan, storage, {}, Console(quiet=True), stages=stages)
    return run, run.execute(), events


def dataset_files(root: Path) -> dict[str, bytes]:
    """Every file of a root but the work folders and one run's timings."""
    from vipo_build.layout import WORK_DIRS

    return {rel: p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and (rel := str(p.relative_to(root))).split("/")[0] not in WORK_DIRS
            and p.name not in ("summary.json", "progress.json")}


def dataset_figures(result: dict) -> dict:
    """The summary's figures of the dataset: the same whatever the timing."""
    return {"categories": result["categories"], "agreement": result["agreement"]}


def test_streaming_run_has_no_round_barrier_and_its_output_depends_on_neither_the_window_nor_a_resume(
        local_ray, tmp_path, monkeypatch):
    from vipo_build.runtime import cache

    monkeypatch.setattr(cache, "PART_UNITS", 3)  # rounds of 10 units: several prompt parts each
    run, result, events = simulated_run(tmp_path / "a", max_units_in_flight=6)
    assert result["shards"]["committed"] == run.plan.num_shards == 8
    assert all(c["rounds"] >= 2 for c in result["categories"].values())
    # a unit of the second round is generated before the last unit of the first is judged
    first_round_judged = [i for i, e in enumerate(events) if e[0] == "judged" and e[3] == 0]
    second_round_generated = [i for i, e in enumerate(events) if e[0] == "generated" and e[3] == 1]
    assert min(second_round_generated) < max(first_round_judged)
    # never more units admitted than the window
    assert max(run.scheduler.pools[p].stats()["peak_queued"] for p in run.scheduler.pools) <= 6
    reference = dataset_files(tmp_path / "a/out")
    assert len([n for n in reference if n.endswith(".tar")]) == 8

    _, result_b, _ = simulated_run(tmp_path / "b", max_units_in_flight=2)
    assert dataset_files(tmp_path / "b/out") == reference
    assert dataset_figures(result_b) == dataset_figures(result)
    # resume after losing the shards, the last prompt part and the last judged unit of each category
    root = tmp_path / "b/out"
    shutil.rmtree(root / "shards")
    parts = len(list((root / "prompts").glob("*.parquet")))
    for category in result["categories"]:
        sorted((root / "prompts").glob(f"part-{category}-*.parquet"))[-1].unlink()
        sorted((root / "cache" / category).glob("*.judged.json"))[-1].unlink()
    _, resumed_result, _ = simulated_run(tmp_path / "b", max_units_in_flight=4)
    assert dataset_files(root) == reference
    assert dataset_figures(resumed_result) == dataset_figures(result)
    assert resumed_result["reused"]["prompt_parts"] == parts - 2


def test_a_category_whose_quota_is_filled_stops_its_remaining_work(local_ray, tmp_path):
    run, result, events = simulated_run(tmp_path / "a", overgen=4.0, max_units_in_flight=4)
    assert result["shards"]["committed"] == run.plan.num_shards
    for name, category in result["categories"].items():
        assert category["rounds"] == 1 and category["kept"] >= category["planned"]
        judged = len([e for e in events if e[0] == "judged" and e[1] == name])
        assert judged < category["units"] / 2  # 4x the prompts needed: most units are never judged
    # the summary counts the units up to the one that filled each quota, however many more were done
    _, other, _ = simulated_run(tmp_path / "b", overgen=4.0, max_units_in_flight=1)
    assert dataset_figures(other) == dataset_figures(result)
    assert dataset_files(tmp_path / "b/out") == dataset_files(tmp_path / "a/out")


def test_a_panel_of_judges_judges_every_unit_once_each_and_a_resume_asks_only_the_judge_whose_verdicts_are_lost(
        local_ray, tmp_path):
    import webdataset as wds

    judges = ("general", "reward")
    run, result, events = simulated_run(tmp_path / "a", judges=judges, max_units_in_flight=6)
    assert result["shards"]["committed"] == run.plan.num_shards
    asked = Counter((e[1], e[2], e[4]) for e in events if e[0] == "judged")
    units = {(c, u) for c, u, _ in asked}
    assert set(asked.values()) == {1} and set(asked) == {(c, u, j) for c, u in units for j in judges}
    for shard in sorted((tmp_path / "a/out/shards").glob("*.tar")):
        for sample in wds.WebDataset(str(shard), shardshuffle=False):
            verdict = json.loads(sample["json"])["judge"]
            assert [p["judge"] for p in verdict["panel"]] == list(judges)
            assert all(p["winner"] == "chosen" and p["reason"] == "kept" for p in verdict["panel"])  # all_agree
            assert {v["judge"] for v in verdict["votes"]} == set(judges)
    assert result["agreement"]["overall"]["between_judges"][0]["pairs"] > 0
    reference = dataset_files(tmp_path / "a/out")

    _, other, _ = simulated_run(tmp_path / "b", judges=judges, max_units_in_flight=2)
    assert dataset_files(tmp_path / "b/out") == reference and dataset_figures(other) == dataset_figures(result)
    root = tmp_path / "b/out"
    shutil.rmtree(root / "shards")
    lost = {}
    for category in result["categories"]:
        last = sorted((root / "cache" / category).glob("*.reward.judged.json"))[-1]
        last.unlink()
        lost[category] = int(last.name.split(".", 1)[0][1:])
    cached = {(p.parent.name, int(p.name[1:7]), p.name.split(".")[1]) for p in (root / "cache").glob("*/*.judged.json")}
    _, resumed, events = simulated_run(tmp_path / "b", judges=judges, max_units_in_flight=4)
    asked = {(e[1], e[2], e[4]) for e in events if e[0] == "judged"}
    # the lost verdicts are asked again of their judge alone; no cached verdict is asked again (a unit past
    # a quota that one judge had done when its category closed may be finished now)
    assert {(c, u, "reward") for c, u in lost.items()} <= asked and not asked & cached
    assert dataset_files(root) == reference and dataset_figures(resumed) == dataset_figures(result)


def test_run_refuses_a_config_that_asks_for_more_gpus_than_local_ray_has_before_writing_anything(tiny_models, tmp_path):
    import subprocess

    import torch

    from tests.conftest import write_config

    raw = tiny_config(output=str(tmp_path / "out"))
    raw["judge"]["engines"][0]["pool"] = {"actors": 1, "num_gpus": 8, "num_cpus": 1}
    have = torch.cuda.device_count()
    result = subprocess.run([sys.executable, "-m", "vipo_build.cli", "run", str(write_config(tmp_path / "gpus.yaml", raw))],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.strip() == (f"error: this config cannot run on this cluster: the pools ask for 8 GPUs at once "
                                     f"(judge.engines[0] (tiny-vlm) 8) but the cluster has {have}: {8 - have} short")
    assert not (tmp_path / "out").exists()
