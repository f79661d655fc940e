"""Tiny models are built deterministically and reused once complete."""

from __future__ import annotations

import hashlib
from pathlib import Path

from vipo_build.models.tiny import make_tiny_models


def digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_same_code_builds_the_same_bytes(tmp_path: Path):
    first = make_tiny_models(tmp_path / "a", ["sana", "wan"])
    second = make_tiny_models(tmp_path / "b", ["sana", "wan"])
    for name in ("sana", "wan"):
        assert any(p.suffix == ".safetensors" for p in first[name].rglob("*"))
        assert digests(first[name]) == digests(second[name])


def test_complete_model_is_reused_and_incomplete_one_rebuilt(tmp_path: Path):
    path = make_tiny_models(tmp_path, ["wan"])["wan"]
    weights = next(path.rglob("*.safetensors"))
    mtime = weights.stat().st_mtime_ns
    make_tiny_models(tmp_path, ["wan"])
    assert weights.stat().st_mtime_ns == mtime
    (path / ".complete").unlink()  # as if the build had been killed before its marker
    make_tiny_models(tmp_path, ["wan"])
    assert (path / ".complete").is_file() and next(path.rglob("*.safetensors")).stat().st_mtime_ns != mtime


def test_video_vlm_is_a_qwen2_vl_whose_processor_expands_videos_and_images(tmp_path: Path):
    import numpy as np
    from transformers import AutoConfig, AutoProcessor

    path = make_tiny_models(tmp_path, ["video-vlm"])["video-vlm"]
    config, processor = AutoConfig.from_pretrained(path), AutoProcessor.from_pretrained(path)
    assert config.model_type == "qwen2_vl" and (path / "model.safetensors").is_file()
    vision = config.vision_config
    assert (vision.patch_size, vision.spatial_merge_size, vision.temporal_patch_size) == (14, 2, 2)
    tokenizer = processor.tokenizer
    assert config.video_token_id == tokenizer.convert_tokens_to_ids("<|video_pad|>") == processor.video_token_id
    assert config.image_token_id == tokenizer.convert_tokens_to_ids("<|image_pad|>") == processor.image_token_id
    content = [{"type": "text", "text": "A:"}, {"type": "video"}, {"type": "text", "text": "B:"}, {"type": "image"}]
    text = processor.apply_chat_template([{"role": "user", "content": content}], tokenize=False, add_generation_prompt=True)
    assert text.endswith("<|im_start|>user\nA:<|vision_start|><|video_pad|><|vision_end|>"
                         "B:<|vision_start|><|image_pad|><|vision_end|><|im_end|>\n<|im_start|>assistant\n")
    # 64 px frames become 56 px (a multiple of patch x merge): 4x4 patches, 2x2 merged per token;
    # 8 frames are 4 temporal patches of 2, so 4 x 4 = 16 tokens; an image is one patch of 2 copies: 4
    rng = np.random.default_rng(0)
    inputs = processor(text=[text], videos=[rng.integers(0, 255, (8, 64, 64, 3), dtype=np.uint8)],
                       images=[rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)])
    ids = np.array(inputs["input_ids"][0])
    assert (ids == config.video_token_id).sum() == 16 and (ids == config.image_token_id).sum() == 4
