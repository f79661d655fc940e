"""The generator registry: its data, its checks, its table, and every family run as a tiny model."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import diffusers
import numpy as np
import pytest
import torch
from rich.console import Console

from tests.conftest import REPO, TINY_MODELS
from vipo_build.config import GeneratorConfig, ImageOutputConfig, VideoOutputConfig, load_config
from vipo_build.errors import VipoError
from vipo_build.generate.actor import GenerateStage
from vipo_build.generate.registry import (
    apply_family_defaults,
    check_frames,
    check_generator,
    check_pipeline,
    check_resolution,
    families,
    from_pretrained_options,
    generator_defaults,
    get_family,
    list_generators,
    load_pipeline,
    print_generators,
    rendered_size,
    resolve_family,
)
from vipo_build.models.tiny_more import TINY_CALL_OPTIONS, make_more_tiny_models
from vipo_build.records import CandidateSpec

REQUIRED = {
    "image": ["flux1-dev", "flux2-dev", "qwen-image", "hidream-i1", "sd35-large", "sana15", "pixart-sigma", "sdxl"],
    "video": ["wan21-t2v-14b", "wan21-t2v-1.3b", "wan22-t2v-a14b", "hunyuanvideo", "cogvideox-5b", "ltx-video"],
}
# HiDream needs its Llama passed in, which only load_pipeline does (see its own test).
GENERATOR_FAMILIES = [f.name for f in families().values() if f.tiny and not f.load.extra_components]


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """Tiny models are all per-op overhead: a second thread only adds sync cost (and the test
    machine is shared)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_model(name: str) -> Path:
    return make_more_tiny_models(TINY_MODELS, [name])[name]


# Data ----------------------------------------------------------------------------------


def test_required_families_are_registered_with_installed_pipeline_classes():
    for modality, names in REQUIRED.items():
        for name in names:
            family = get_family(name)
            assert family.modality == modality
            assert isinstance(getattr(diffusers, family.pipeline), type), family.pipeline
    assert all(f.tiny for f in families().values()), "every family has a tiny stand-in"


def test_native_sizes_and_clips_pass_their_own_checks():
    for family in families().values():
        for width, height in family.resolutions:
            assert check_resolution(family, width, height, strict=True) == []
        if family.modality == "video":
            assert check_frames(family, family.frames, family.fps, strict=True) == []


def test_unknown_family_names_the_known_ones():
    with pytest.raises(VipoError, match="unknown generator family 'flux3'.*flux1-dev"):
        get_family("flux3")


def test_family_resolves_by_name_or_hub_id():
    assert resolve_family("whatever/model", "sdxl").name == "sdxl"
    assert resolve_family("Wan-AI/Wan2.2-T2V-A14B-Diffusers").name == "wan22-t2v-a14b"
    assert resolve_family("/local/dir") is None


# Checks --------------------------------------------------------------------------------


def test_resolution_rejects_sizes_the_pipeline_would_change():
    with pytest.raises(VipoError, match="not a multiple of 16"):
        check_resolution(get_family("flux1-dev"), 1000, 1000)
    with pytest.raises(VipoError, match="not a multiple of 32"):
        check_resolution(get_family("ltx-video"), 720, 480)
    hidream = get_family("hidream-i1")
    assert rendered_size(hidream, 1280, 720) == (1360, 768)
    with pytest.raises(VipoError, match="renders 1360x768 for 1280x720"):
        check_resolution(hidream, 1280, 720)


def test_resolution_warns_on_non_native_sizes_and_rejects_them_when_strict():
    [warning] = check_resolution(get_family("qwen-image"), 1024, 1024)
    assert "not a native size of qwen-image (1328x1328" in warning
    with pytest.raises(VipoError, match="not a native size"):
        check_resolution(get_family("qwen-image"), 1024, 1024, strict=True)
    [binned] = check_resolution(get_family("sana15"), 1024, 768)
    assert binned.endswith("nearest bin and resizes")


def test_frame_counts_follow_the_temporal_stride():
    wan, ltx, cog = get_family("wan21-t2v-14b"), get_family("ltx-video"), get_family("cogvideox-5b")
    with pytest.raises(VipoError, match="needs 4k\\+1 frames, not 80"):
        check_frames(wan, 80, 16)
    with pytest.raises(VipoError, match="needs 8k\\+1 frames, not 85"):
        check_frames(ltx, 85, 24)
    with pytest.raises(VipoError, match="needs 8k\\+1 frames, not 45"):  # 4k+1, but an even latent count
        check_frames(cog, 45, 8)
    with pytest.raises(VipoError, match="more than cogvideox-5b takes \\(49\\)"):
        check_frames(cog, 57, 8)
    assert check_frames(ltx, 121, 24) == ["121 frames, ltx-video was trained on 161"]
    assert check_frames(wan, 81, 24) == ["24 fps, wan21-t2v-14b was trained on 16 (motion plays at another speed)"]


def test_ltx_frame_rate_must_follow_the_encoded_fps():
    ltx = get_family("ltx-video")
    generator = GeneratorConfig(name="ltx", **generator_defaults("ltx-video"))
    native = VideoOutputConfig(width=768, height=512, frames=161, fps=24)
    assert check_generator(generator, ltx, ImageOutputConfig(), native) == []
    slower = native.model_copy(update={"fps": 16})
    assert check_generator(generator, ltx, ImageOutputConfig(), slower)[-1] == (
        "generator ltx: call_options.frame_rate is 24 but video.fps is 16 (ltx-video takes the frame rate as an input)"
    )


def test_shipped_pipelines_pass_with_the_warnings_they_deserve():
    image, _ = load_config(REPO / "pipelines" / "image_1m.yaml")
    assert check_pipeline(image) == [
        "generator qwen-image: 1024x1024 is not a native size of qwen-image (1328x1328, 1664x928, "
        "928x1664, 1472x1136, 1136x1472, 1584x1056, 1056x1584)",
    ]
    video, _ = load_config(REPO / "pipelines" / "video_300k.yaml")
    assert check_pipeline(video) == [
        "generator hunyuanvideo: 81 frames, hunyuanvideo was trained on 129",
        "generator hunyuanvideo: 16 fps, hunyuanvideo was trained on 24 (motion plays at another speed)",
    ]
    with pytest.raises(VipoError, match="^generator hunyuanvideo: 81 frames"):
        check_pipeline(video, strict=True)


# Defaults, loading, listing ------------------------------------------------------------


def test_family_defaults_fill_a_generator_config_under_its_own_keys():
    raw = {"family": "qwen-image", "name": "qwen", "batch_size": 2, "call_options": {"negative_prompt": "blurry"}}
    merged = apply_family_defaults(raw)
    assert merged.pop("family") == "qwen-image"
    generator = GeneratorConfig.model_validate(merged)
    assert (generator.model, generator.steps, generator.guidance, generator.batch_size) == ("Qwen/Qwen-Image", 50, None, 2)
    assert generator.call_options == {"true_cfg_scale": 4.0, "negative_prompt": "blurry"}
    assert apply_family_defaults({"name": "x"}) == {"name": "x"}


def test_weight_variant_is_only_asked_of_the_family_repo():
    sdxl = get_family("sdxl")
    assert from_pretrained_options(sdxl, sdxl.hub_id, "float16") == {"torch_dtype": torch.float16, "variant": "fp16"}
    assert from_pretrained_options(sdxl, "/models/sdxl-copy", "float16") == {"torch_dtype": torch.float16}


def test_models_list_table_has_every_family():
    console = Console(record=True, width=250)
    print_generators(console)
    text = console.export_text()
    for family in families().values():
        assert family.name in text and family.pipeline in text and family.hub_id in text
    video = list_generators("video")
    assert [r["family"] for r in video] == REQUIRED["video"]
    assert video[-1]["clip"] == "161 @ 24 fps, 8k+1"


def test_the_shipped_judges_are_registered_with_the_settings_their_configs_use_and_listed():
    from typer.testing import CliRunner

    from vipo_build.cli import app
    from vipo_build.judge.registry import judge_models

    by_hub = {m.hub_id: m for m in judge_models().values()}
    for name in ("image_1m", "video_300k", "tiny"):
        config, _ = load_config(REPO / "pipelines" / f"{name}.yaml")
        for judge in config.judge.engines:
            model = judge.engine.model.removeprefix("../")
            settings = by_hub[model].vllm
            assert judge.engine.tensor_parallel_size == settings.tensor_parallel_size and \
                judge.engine.max_model_len <= settings.max_model_len, (name, model)
            assert config.category(next(iter(config.categories))).modality in by_hub[model].inputs
    listed = CliRunner().invoke(app, ["models", "list", "--judges"], terminal_width=250)
    assert listed.exit_code == 0, listed.output
    for model in judge_models().values():
        assert model.name in listed.output and model.hub_id in listed.output
    assert "none recorded: measure with judge-eval" in listed.output  # no figure without its source


# Tiny models ---------------------------------------------------------------------------


def digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_more_tiny_models_build_the_same_bytes_wherever_they_are_built(tmp_path: Path):
    names = ["sd3", "wan22"]  # one from scratch, one on top of tiny.py's "wan"
    first = make_more_tiny_models(tmp_path / "a", names)
    second = make_more_tiny_models(tmp_path / "b", names)
    for name in names:
        assert digests(first[name]) == digests(second[name])


def candidate_specs(modality: str, frames: int, count: int = 2) -> list[CandidateSpec]:
    video = modality == "video"
    return [
        CandidateSpec(prompt_id="p0", side=side, generator="tiny", seed=100 + side, width=64, height=64,
                      frames=frames, fps=8 if video else None)
        for side in range(count)
    ]


@pytest.mark.parametrize("name", GENERATOR_FAMILIES)
def test_tiny_family_generates_through_the_generator(name: str, one_thread: None):
    family = get_family(name)
    overrides = {"name": "tiny", "model": str(tiny_model(family.tiny)), "steps": 2, "dtype": "float32", "batch_size": 2}
    raw = apply_family_defaults({"family": name, **overrides})
    raw.pop("family")
    raw["call_options"].update(TINY_CALL_OPTIONS.get(family.tiny, {}))
    generator = GenerateStage(GeneratorConfig.model_validate(raw), ImageOutputConfig(), VideoOutputConfig(), storage=None)
    generator.setup()
    assert type(generator.pipeline).__name__ == family.pipeline

    frames = family.frame_stride + 1 if family.modality == "video" else 1
    pixels = generator.generate(candidate_specs(family.modality, frames), ["a red apple on a table", "two dogs"])
    shape = (frames, 64, 64, 3) if family.modality == "video" else (64, 64, 3)
    assert [p.shape for p in pixels] == [shape, shape]
    assert all(p.dtype == np.uint8 for p in pixels)


def test_hidream_loads_its_llama_from_another_repo_and_renders_a_fixed_area(one_thread: None):
    family = get_family("hidream-i1")
    llm = make_more_tiny_models(TINY_MODELS, ["llm"])["llm"]  # stands in for Llama-3.1-8B-Instruct
    pipeline = load_pipeline(
        family, str(tiny_model(family.tiny)), "float32", "cpu", sources={"text_encoder_4": str(llm), "tokenizer_4": str(llm)}
    )
    assert type(pipeline).__name__ == family.pipeline
    assert type(pipeline.text_encoder_4).__name__ == "LlamaForCausalLM"
    image = pipeline(prompt="a red apple", width=64, height=64, num_inference_steps=1, output_type="np").images[0]
    assert image.shape[1::-1] == rendered_size(family, 64, 64) == (1024, 1024)


def test_float32_components_stay_float32(one_thread: None):
    family = get_family("wan21-t2v-1.3b")
    pipeline = load_pipeline(family, str(tiny_model(family.tiny)), "bfloat16", "cpu")
    assert pipeline.vae.dtype == torch.float32
    assert pipeline.transformer.dtype == torch.bfloat16
