"""What each judge sees of a clip, what its requests carry, and what they cost in visual tokens."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from tests.conftest import TINY_MODELS, tiny_config
from vipo_build.config import JudgeEngineConfig, JudgeStageConfig, PipelineConfig, VideoOutputConfig
from vipo_build.cost_plan import request_tokens
from vipo_build.generate.encode import encode_video
from vipo_build.judge.actor import JudgeItem, JudgeStage
from vipo_build.judge.budget import view_kind
from vipo_build.judge.views import frame_indices, video_timing
from vipo_build.prompts.categories import load_category

CLIP = VideoOutputConfig(width=1280, height=720, frames=81, fps=16)


def judge(model: str, **settings) -> JudgeEngineConfig:
    return JudgeEngineConfig.model_validate({"name": "j", "engine": {"model": model}, **settings})


def test_the_view_is_chosen_per_judge_model(tiny_models):
    assert view_kind(judge("Qwen/Qwen2.5-VL-72B-Instruct"), "video") == "video"  # registered: reads video
    assert view_kind(judge("llava-hf/llava-1.5-7b-hf"), "video") == "contact_sheet"  # registered: images only
    assert view_kind(judge(str(TINY_MODELS / "video-vlm")), "video") == "video"  # a local Qwen2-VL, by its config.json
    assert view_kind(judge(str(TINY_MODELS / "vlm")), "video") == "contact_sheet"  # a local LLaVA
    assert view_kind(judge("someone/unknown-vlm"), "video") == "contact_sheet"
    assert view_kind(judge("Qwen/Qwen2.5-VL-72B-Instruct", video_input="contact_sheet"), "video") == "contact_sheet"
    assert view_kind(judge("Qwen/Qwen2.5-VL-72B-Instruct"), "image") == "image"


def test_the_visual_token_budget_of_a_request_against_a_hand_computed_case():
    raw = tiny_config()
    raw["generate"]["image"] = {"width": 1024, "height": 1024}
    raw["generate"]["video"] = CLIP.model_dump()
    raw["judge"] |= {"image_size": 1024, "video_frames": 8, "video_fps": 2.0, "video_max_frames": 16, "video_size": 448}
    config = PipelineConfig.model_validate(raw)
    qwen = judge("Qwen/Qwen2.5-VL-72B-Instruct")
    # video: 81 frames at 16 fps last 5.06 s; 2 fps gives 10 frames, 5 pairs of frames; 1280x720 fitted in 448 px is
    # 448x252, 16 x 9 tokens of 28 px: 5 x 144 = 720 a clip, 1440 a request of two
    assert frame_indices(81, 16, config.judge) == [0, 9, 18, 27, 36, 44, 53, 62, 71, 80]
    assert request_tokens(config, qwen, "video") == 1440
    # the contact sheet: 8 frames tiled 3 x 3 (3840x2160) fitted in 1024 px is 1024x576: 37 x 21 tokens a candidate
    assert request_tokens(config, judge("Qwen/Qwen2.5-VL-72B-Instruct", video_input="contact_sheet"), "video") == 2 * 37 * 21
    # an image: 1024 px is 36.6 patches a side, rounded to 37: 37 x 37 a candidate
    assert request_tokens(config, qwen, "image") == 2 * 37 * 37
    # a LLaVA spends its fixed 576 tokens an image, whatever the view
    assert request_tokens(config, judge("llava-hf/llava-1.5-7b-hf"), "video") == 2 * 576


class RecordingBackend:
    """A backend that records what the judge stage asks (the engine itself is tested in test_engine_cpu.py)."""

    def __init__(self):
        self.conversations: list[list[dict]] = []

    def chat_json(self, conversations, seeds, schema, temperature, max_tokens):
        self.conversations += conversations
        one = schema[0] if isinstance(schema, list) else schema
        scores = {d: 3 for d in one["properties"]["scores_a"]["required"]}
        return [{"winner": "A", "scores_a": scores, "scores_b": scores}] * len(conversations)


def frames_of(url: str) -> list[Image.Image]:
    kind, data = url.split(",", 1)
    assert kind == "data:video/jpeg;base64"
    return [Image.open(io.BytesIO(base64.b64decode(part))) for part in data.split(",")]


def test_a_video_pair_reaches_a_video_judge_as_its_sampled_frames_with_their_timing():
    config = JudgeStageConfig.model_validate({**tiny_config()["judge"], "votes": 1, "video_fps": 2.0, "video_size": 448})
    engine = judge("Qwen/Qwen2.5-VL-7B-Instruct")
    stage = JudgeStage(config, config.engines[0], seed=1, storage=None, clips=CLIP)
    stage.judge_engine, stage.engine = engine, RecordingBackend()
    clip = np.random.default_rng(0).integers(0, 256, size=(81, 720, 1280, 3), dtype=np.uint8)
    media = encode_video(clip, CLIP.fps)
    category = load_category("motion_quality")
    [[verdict]] = stage.judge([(category, [JudgeItem("motion_quality-u000000-p000", "a fox running", (media, media))])])
    assert len(stage.engine.conversations) == 2  # both orders, one vote each
    parts = stage.engine.conversations[0][0]["content"]
    videos = [p for p in parts if p["type"] == "video_url"]
    assert len(videos) == 2 and not [p for p in parts if p["type"] == "image_pil"]
    sent = frames_of(videos[0]["video_url"]["url"])
    assert len(sent) == 10 and {f.size for f in sent} == {(448, 252)}
    assert [v.view for v in verdict.votes] == ["video", "video"]
    # the engine is told when the frames were taken: the clip's rate, which frames, its length
    timing = video_timing(CLIP, config)
    assert timing["media_io_kwargs"]["video"] == {"fps": 16.0, "frames_indices": [0, 9, 18, 27, 36, 44, 53, 62, 71, 80],
                                                  "total_num_frames": 81, "duration": 81 / 16}
    assert timing["mm_processor_kwargs"] == {"fps": pytest.approx(10 / (81 / 16))}


def test_an_image_only_judge_gets_a_contact_sheet_and_a_static_clip_is_not_asked_at_all():
    config = JudgeStageConfig.model_validate({**tiny_config()["judge"], "votes": 1, "image_size": 64, "video_frames": 4})
    stage = JudgeStage(config, config.engines[0], seed=1, storage=None, clips=CLIP)
    stage.judge_engine, stage.engine = judge("llava-hf/llava-1.5-7b-hf"), RecordingBackend()
    media = encode_video(np.random.default_rng(1).integers(0, 256, size=(9, 32, 32, 3), dtype=np.uint8), 8)
    items = [JudgeItem("motion_quality-u000000-p000", "a fox", (media, media)),
             JudgeItem("motion_quality-u000000-p001", "a still fox", (media, media), defect="static_clip")]
    moving, static = stage.judge([(load_category("motion_quality"), items)])[0]
    parts = stage.engine.conversations[0][0]["content"]
    sheets = [p["image_pil"] for p in parts if p["type"] == "image_pil"]
    assert len(stage.engine.conversations) == 2 and [s.size for s in sheets] == [(64, 64), (64, 64)]  # 2 x 2 tiles of 32 px
    assert [v.view for v in moving.votes] == ["contact_sheet"] * 2
    assert static.reason == "static_clip" and not static.kept and static.votes == []
