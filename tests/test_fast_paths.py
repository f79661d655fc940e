"""Opt-in fast paths of a generator from the libraries themselves, on tiny models on CPU: the
switches reach the pipeline, change what they should, and count where they change the pixels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import tiny_config
from vipo_build.config import GeneratorConfig, ImageOutputConfig, PipelineConfig, VideoOutputConfig, load_config, output_fields
from vipo_build.cost_plan import FIRST_BLOCK_CACHE_FACTOR, FP8_WEIGHTS_FACTOR, make_plan
from vipo_build.errors import VipoError
from vipo_build.generate.actor import GenerateStage
from vipo_build.records import CandidateSpec

PROMPTS = ["a red apple on a table", "two dogs on a beach"]


def stage(tiny_models: dict[str, Path], name: str = "flux", **switches) -> GenerateStage:
    config = GeneratorConfig(name="tiny", model=str(tiny_models[name]), modality="image", steps=6, dtype="float32",
                             batch_size=2, **switches)
    generator = GenerateStage(config, ImageOutputConfig(width=64, height=64), VideoOutputConfig(), storage=None)
    torch.set_num_threads(1)
    generator.setup()
    return generator


def pixels(generator: GenerateStage) -> list[np.ndarray]:
    specs = [CandidateSpec(prompt_id=f"p{i}", side=0, generator="tiny", seed=7 + i, width=64, height=64) for i in range(2)]
    return generator.generate(specs, PROMPTS)


def test_first_block_cache_is_enabled_on_the_denoiser_and_changes_the_pixels(tiny_models):
    plain, cached = stage(tiny_models), stage(tiny_models, first_block_cache=0.9)
    assert cached.pipeline.transformer.is_cache_enabled and not plain.pipeline.transformer.is_cache_enabled
    assert [p.shape for p in pixels(cached)] == [(64, 64, 3)] * 2
    assert any(not np.array_equal(a, b) for a, b in zip(pixels(plain), pixels(cached)))


def test_first_block_cache_on_a_denoiser_without_cache_support_is_one_line(tiny_models):
    with pytest.raises(VipoError) as refused:
        stage(tiny_models, "sana", first_block_cache=0.1)
    assert str(refused.value) == "generator tiny: first_block_cache: SanaTransformer2DModel has no diffusers cache support"


def test_fp8_weights_store_the_denoiser_in_float8_and_change_the_pixels(tiny_models):
    plain, fp8 = stage(tiny_models), stage(tiny_models, fp8_weights=True)
    assert torch.float8_e4m3fn in {p.dtype for p in fp8.pipeline.transformer.parameters()}
    assert torch.float8_e4m3fn not in {p.dtype for p in plain.pipeline.transformer.parameters()}
    assert any(not np.array_equal(a, b) for a, b in zip(pixels(plain), pixels(fp8)))


def test_compile_wraps_the_denoiser(tiny_models):
    assert type(stage(tiny_models, compile=True).pipeline.transformer).__name__ == "OptimizedModule"


def test_fast_paths_count_in_the_drift_check_when_they_change_pixels_and_in_the_plan():
    raw = tiny_config(output="/tmp/unused")
    base = PipelineConfig.model_validate(raw)
    raw["generate"]["generators"][0] |= {"first_block_cache": 0.1, "fp8_weights": True, "compile": True}
    fast = PipelineConfig.model_validate(raw)
    changed = {k for k in output_fields(base).keys() | output_fields(fast).keys()
               if output_fields(base).get(k) != output_fields(fast).get(k)}
    # compile leaves the pixels as they are
    assert changed == {"generate.generators[0].first_block_cache", "generate.generators[0].fp8_weights"}

    def flux_plan(**switches):
        config, _ = load_config(Path(__file__).resolve().parents[1] / "pipelines" / "image_1m.yaml")
        config.generate.generators[0] = config.generate.generators[0].model_copy(update=switches)
        return next(s for s in make_plan(config, 64, 80).stages if s.pool == "generate:flux1-dev")

    plain, cached = flux_plan(), flux_plan(first_block_cache=0.1, fp8_weights=True)
    factor = FIRST_BLOCK_CACHE_FACTOR * FP8_WEIGHTS_FACTOR
    assert cached.gpu_seconds_per_item == pytest.approx(plain.gpu_seconds_per_item * factor)
    assert cached.source.endswith(f"; x {FIRST_BLOCK_CACHE_FACTOR:g} for first-block cache; x {FP8_WEIGHTS_FACTOR:g} for float8 weights")
