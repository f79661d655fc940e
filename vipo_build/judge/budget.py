"""What a judge sees of a candidate, and what it costs: the view kind per judge and its visual tokens.

A judge whose model family reads video gets a clip as sampled frames (judge.video_fps, at most
judge.video_max_frames, longest side judge.video_size); any other gets a contact sheet of
judge.video_frames frames in one judge.image_size picture. Visual tokens follow the family's
vision grid: Qwen2-VL-style models spend one token per `patch` x `patch` pixels (14 px patches
merged 2 x 2) and per `temporal_patch` frames; LLaVA-style ones a fixed count per image. A video
request costs far more than a contact sheet, which `vipo-build run --dry-run` and `plan` show.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from vipo_build.config import JudgeEngineConfig, JudgeStageConfig, is_local_model
from vipo_build.judge.registry import VisionGrid, judge_models
from vipo_build.records import ViewKind

# model_type of the families vLLM serves with video input
VIDEO_MODEL_TYPES = frozenset({"qwen2_vl", "qwen2_5_vl", "qwen3_vl", "qwen3_vl_moe"})


def _local_json(model: str, name: str) -> dict:
    path = Path(model) / name
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _registered(model: str):
    return next((m for m in judge_models().values() if m.hub_id == model), None)


def reads_video(judge: JudgeEngineConfig) -> bool:
    """Whether this judge gets clips as video (see JudgeEngineConfig.video_input)."""
    if judge.video_input is not None:
        return judge.video_input == "native"
    model = judge.engine.model
    if registered := _registered(model):
        return "video" in registered.inputs
    return is_local_model(model) and _local_json(model, "config.json").get("model_type") in VIDEO_MODEL_TYPES


def vision_grid(model: str) -> VisionGrid:
    """The judge model's vision grid: the registry's, or read from a local model's processor files."""
    if registered := _registered(model):
        return registered.vision
    if is_local_model(model):
        # transformers 5 saves the processors together, earlier versions the image processor alone
        processor = _local_json(model, "processor_config.json").get("image_processor") or _local_json(
            model, "preprocessor_config.json")
        if "merge_size" in processor:
            size = processor.get("size") or {}
            return VisionGrid(patch=processor["patch_size"] * processor["merge_size"],
                              temporal_patch=processor.get("temporal_patch_size", 1),
                              min_pixels=size.get("shortest_edge", processor.get("min_pixels", 0)),
                              max_pixels=size.get("longest_edge", processor.get("max_pixels")))
        if seq := _local_json(model, "config.json").get("image_seq_length"):
            return VisionGrid(tokens_per_image=seq)
    return VisionGrid()


def view_kind(judge: JudgeEngineConfig, modality: str) -> ViewKind:
    if modality == "image":
        return "image"
    return "video" if reads_video(judge) else "contact_sheet"


def fitted(width: int, height: int, longest: int) -> tuple[int, int]:
    """A picture scaled (never up) so its longest side is at most `longest`, as PIL's thumbnail does."""
    scale = min(1.0, longest / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def sheet_grid(frames: int) -> tuple[int, int]:
    """Columns and rows of a contact sheet of `frames` frames: as square as it goes, filled row by row."""
    columns = math.ceil(math.sqrt(frames))
    return columns, math.ceil(frames / columns)


def contact_sheet_size(width: int, height: int, frames: int, config: JudgeStageConfig) -> tuple[int, int]:
    """The size of the contact sheet an image-only judge gets of a width x height clip of `frames` frames."""
    columns, rows = sheet_grid(min(config.video_frames, frames))
    return fitted(columns * width, rows * height, config.image_size)


def sampled_frames(frames: int, fps: float, config: JudgeStageConfig) -> int:
    """Frames a native video judge gets of a clip: video_fps over its duration, 2 to video_max_frames, even (Qwen-style
    models fold frames in pairs)."""
    wanted = math.floor(frames / fps * config.video_fps)
    return min(frames, config.video_max_frames, max(2, wanted - wanted % 2))


def processed_size(width: int, height: int, grid: VisionGrid) -> tuple[int, int]:
    """The size a Qwen2-VL-style processor resizes a picture to: sides that are multiples of the patch, the area
    within its pixel bounds (transformers' `smart_resize`)."""
    patch = grid.patch
    w, h = max(patch, round(width / patch) * patch), max(patch, round(height / patch) * patch)
    if grid.max_pixels and w * h > grid.max_pixels:
        beta = math.sqrt(width * height / grid.max_pixels)
        w, h = max(patch, math.floor(width / beta / patch) * patch), max(patch, math.floor(height / beta / patch) * patch)
    elif w * h < grid.min_pixels:
        beta = math.sqrt(grid.min_pixels / (width * height))
        w, h = math.ceil(width * beta / patch) * patch, math.ceil(height * beta / patch) * patch
    return w, h


def image_tokens(width: int, height: int, grid: VisionGrid) -> int:
    if grid.tokens_per_image is not None:
        return grid.tokens_per_image
    w, h = processed_size(width, height, grid)
    return (w // grid.patch) * (h // grid.patch)


def candidate_tokens(judge: JudgeEngineConfig, config: JudgeStageConfig, width: int, height: int, frames: int,
                     fps: float | None) -> int:
    """Visual tokens of one candidate (width x height, `frames` frames at `fps`) as this judge sees it."""
    grid = vision_grid(judge.engine.model)
    if frames == 1:
        return image_tokens(*fitted(width, height, config.image_size), grid)
    if not reads_video(judge):
        return image_tokens(*contact_sheet_size(width, height, frames, config), grid)
    sampled = sampled_frames(frames, fps, config)
    per_frame = image_tokens(*fitted(width, height, config.video_size), grid)
    return per_frame * math.ceil(sampled / grid.temporal_patch)
