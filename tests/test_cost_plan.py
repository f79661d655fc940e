"""`vipo-build plan`: its arithmetic, the shipped configs against the clusters they declare, and refusals."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import tiny_config, write_config
from vipo_build.config import PipelineConfig, SubjectPassConfig, load_config
from vipo_build.cost_plan import make_plan, measured_rates
from vipo_build.preflight import Cluster, problems

REPO = Path(__file__).resolve().parents[1]


def hand_config() -> PipelineConfig:
    raw = tiny_config(output="/tmp/unused")
    raw["categories"] = {"aesthetics": {"pairs": 100}, "composition": {"pairs": 100}}
    raw["prompts"]["overgen"] = 1.5
    raw["prompts"].pop("subjects")  # no subject pass: one request per prompt
    raw["prompts"]["engine"] |= {"gpu_seconds_per_request": 0.5, "tensor_parallel_size": 1}
    raw["judge"]["engines"][0]["engine"] |= {"gpu_seconds_per_request": 2.0, "tensor_parallel_size": 2}
    raw["judge"]["votes"] = 1
    image = raw["generate"]["generators"][0]
    raw["generate"]["generators"] = [image | {"name": "fast", "gpu_seconds_per_candidate": 10.0},
                                     image | {"name": "slow", "gpu_seconds_per_candidate": 30.0}]
    raw["generate"]["image"] = {"width": 512, "height": 512, "format": "jpg"}
    raw["shards"]["pairs_per_shard"] = 50
    return PipelineConfig.model_validate(raw)


def test_the_subject_pass_adds_its_requests_at_their_share_of_an_expansions_tokens():
    config = hand_config()
    config.prompts.subjects = SubjectPassConfig(share=0.5, max_tokens=32)
    config.prompts.max_tokens = 320
    [prompts] = [s for s in make_plan(config, gpus=10, gpu_memory_gb=None).stages if s.pool == "prompts"]
    assert prompts.items == 300 + 300 * 0.5 * 32 / 320


def test_the_plan_of_a_small_config_matches_the_arithmetic_by_hand():
    plan = make_plan(hand_config(), gpus=10, gpu_memory_gb=None)
    # 150 prompts per category; 2 candidates each, half per generator; 2 orders x 1 vote per pair
    stages = {s.pool: s for s in plan.stages}
    assert plan.prompts == 300 and plan.pairs == 200 and plan.shards == 4
    assert {p: s.items for p, s in stages.items()} == {"prompts": 300, "generate:fast": 300, "generate:slow": 300, "judge:tiny-vlm": 600}
    assert {p: round(s.gpu_hours, 4) for p, s in stages.items()} == {
        "prompts": round(300 * 0.5 / 3600, 4), "generate:fast": round(300 * 10 / 3600, 4),
        "generate:slow": 2.5, "judge:tiny-vlm": round(600 * 2.0 / 3600, 4)}
    # shortest wall clock on 10 GPUs: slow needs 5 actors for 0.5 h; 6 would leave fast one actor (0.83 h)
    assert {p: (s.actors, s.gpus_per_actor) for p, s in stages.items()} == {
        "prompts": (1, 1), "generate:fast": (2, 1), "generate:slow": (5, 1), "judge:tiny-vlm": (1, 2)}
    assert plan.hours == pytest.approx(0.5) and plan.spare_gpus == 0
    assert stages["generate:fast"].busy == pytest.approx(0.8333 / 2 / 0.5, abs=1e-3)
    assert plan.gpu_hours == pytest.approx(300 * 0.5 / 3600 + 300 * 10 / 3600 + 2.5 + 600 * 2.0 / 3600)
    # jpg at 0.35 bytes per pixel: every candidate in the cache, the kept pairs' in the shards
    assert plan.cache_bytes == pytest.approx(600 * 512 * 512 * 0.35)
    assert plan.shard_bytes == pytest.approx(400 * 512 * 512 * 0.35)
    assert plan.problems == []


def test_a_small_model_left_idle_by_whole_gpus_takes_quarter_gpus_where_its_weights_fit():
    raw = hand_config().model_dump(mode="json")
    raw["generate"]["generators"][0]["family"] = "pixart-sigma"  # 12 GB of weights: a quarter of 80 GB holds them
    plan = make_plan(PipelineConfig.model_validate(raw), gpus=10, gpu_memory_gb=80)
    fast = next(s for s in plan.stages if s.pool == "generate:fast")
    # 0.833 GPU-h within the 0.5 h that slow sets: 2 whole GPUs are 0.83 busy, 7 quarters 0.95
    assert (fast.actors, fast.gpus_per_actor, fast.smallest_share) == (7, 0.25, 0.25)
    assert fast.busy == pytest.approx(0.8333 / 1.75 / 0.5, abs=1e-3)
    assert plan.hours == pytest.approx(0.5) and plan.spare_gpus == pytest.approx(0.25)
    # without a known GPU memory nothing is shared
    plain = make_plan(PipelineConfig.model_validate(raw), gpus=10, gpu_memory_gb=None)
    assert next(s for s in plain.stages if s.pool == "generate:fast").gpus_per_actor == 1


def test_measured_rates_from_a_summary_replace_the_cost_table():
    raw = hand_config().model_dump(mode="json")
    raw["generate"]["generators"][0]["pool"]["num_gpus"] = 1  # a pilot run on GPUs
    config = PipelineConfig.model_validate(raw)
    summary = {"stages": {"generate:fast": {"items": 10, "busy_seconds": 40.0}}}  # 10 units of 16 prompts
    rates = measured_rates(summary, config)
    # a unit has 2 x 16 / 2 candidates of each generator; one GPU per actor
    assert rates == {"generate:fast": pytest.approx(40.0 / 10 / 16)}
    raw = config.model_dump(mode="json")
    raw["generate"]["generators"][0].pop("gpu_seconds_per_candidate")
    stage = next(s for s in make_plan(PipelineConfig.model_validate(raw), 10, None, measured=rates).stages
                 if s.pool == "generate:fast")
    assert (stage.gpu_seconds_per_item, stage.source) == (pytest.approx(0.25), "measured")


@pytest.mark.parametrize("name", ["image_1m", "video_300k"])
def test_a_shipped_config_fits_the_cluster_it_declares_with_the_pools_its_plan_balances(name):
    config, _ = load_config(REPO / "pipelines" / f"{name}.yaml")
    ray = config.ray
    assert ray.cluster_gpus and ray.cluster_cpus and ray.gpu_memory_gb
    assert problems(config, Cluster(ray.cluster_gpus, ray.cluster_cpus, ray.gpu_memory_gb)) == []
    plan = make_plan(config, ray.cluster_gpus, ray.gpu_memory_gb, ray.cluster_cpus)
    assert plan.problems == []
    assert {s.pool: (s.actors, s.gpus_per_actor) for s in plan.stages} == {
        p: (pool.actors, pool.num_gpus) for p, pool in config.model_pools().items()}
    # every generator pool with more than one actor is kept busy
    assert all(s.busy >= 0.7 for s in plan.stages if s.pool.startswith("generate:") and s.actors > 1)


def vipo(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vipo_build.cli", *args], capture_output=True, text=True, timeout=120)


def test_plan_names_what_does_not_fit(tmp_path):
    raw = json.loads(json.dumps(load_config(REPO / "pipelines" / "image_1m.yaml")[0].model_dump(mode="json")))
    flux2 = next(g for g in raw["generate"]["generators"] if g["name"] == "flux2-dev")
    flux2["cpu_offload"] = False
    path = write_config(tmp_path / "no-offload.yaml", raw)
    found = vipo("plan", str(path), "--json")
    assert found.returncode == 0, found.stderr
    assert json.loads(found.stdout)["problems"] == [
        "generate.generators[1] (flux2-dev): about 112 GB of weights, more than 1 x 80 GB of GPU memory per actor "
        "(set cpu_offload, or use GPUs with more memory)"]
    small = vipo("plan", str(path), "--gpus", "8", "--json")
    # one actor per pool, small models on the least GPU share their weights fit, is the smallest layout
    assert [p for p in json.loads(small.stdout)["problems"] if p.startswith("the pools ask for")] == [
        "the pools ask for 11 GPUs at once (prompts 2, generate.generators[0] (flux1-dev) 1, generate.generators[1] (flux2-dev) 1, "
        "generate.generators[2] (qwen-image) 1, generate.generators[3] (hidream-i1) 1, generate.generators[4] (sd35-large) 0.5, "
        "generate.generators[5] (sana15) 0.25, generate.generators[6] (pixart-sigma) 0.25, judge.engines[0] (qwen-vl) 4) but the cluster has 8: 3 short"]
    table = vipo("plan", str(path), "--gpus", "8")
    assert "the smallest layout, one actor per pool, needs 11 GPUs" in table.stdout


def test_plan_without_a_gpu_count_says_how_to_give_one(tmp_path):
    path = write_config(tmp_path / "tiny.yaml", tiny_config(output=str(tmp_path / "out")))
    found = vipo("plan", str(path))
    assert found.returncode == 2
    assert found.stderr.strip() == f"error: {path}: how many GPUs? give --gpus, or set ray.cluster_gpus in the config"
