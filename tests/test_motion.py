"""A clip's temporal figures, on clips drawn here with numpy, and the static_clip defect they set at encoding."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from vipo_build.config import ImageOutputConfig
from vipo_build.generate.actor import encode_candidate
from vipo_build.generate.encode import decode_video_with_fps, encode_video
from vipo_build.generate.motion import clip_motion
from vipo_build.records import CandidateSpec

WIDTH, HEIGHT, FRAMES, FPS = 320, 192, 33, 16


def texture() -> np.ndarray:
    """Smoothed random blobs: structure for the flow to follow everywhere in the frame."""
    coarse = np.random.default_rng(7).integers(0, 256, size=(HEIGHT // 8, WIDTH // 8, 3), dtype=np.uint8)
    return cv2.resize(coarse, (WIDTH, HEIGHT), interpolation=cv2.INTER_CUBIC)


def still() -> np.ndarray:
    return np.repeat(texture()[None], FRAMES, axis=0)


def panning(pixels_per_frame: int) -> np.ndarray:
    return np.stack([np.roll(texture(), pixels_per_frame * t, axis=1) for t in range(FRAMES)])


def decoded(clip: np.ndarray) -> tuple[np.ndarray, float]:
    return decode_video_with_fps(encode_video(clip, FPS))


def test_a_still_clip_has_no_motion_and_is_static():
    figures = clip_motion(*decoded(still()), min_motion=0.01)
    assert figures.motion < 0.001 and figures.flicker < 0.001
    assert figures.static


@pytest.mark.parametrize("pixels_per_frame", [2, 4])
def test_a_pan_moves_as_far_as_it_was_drawn(pixels_per_frame: int):
    figures = clip_motion(*decoded(panning(pixels_per_frame)), min_motion=0.01)
    drawn = pixels_per_frame * FPS / WIDTH  # frame widths per second
    assert figures.motion == pytest.approx(drawn, rel=0.15)
    assert not figures.static and figures.flicker < 0.002  # moving content keeps its mean brightness


def test_brightness_pumping_is_flicker():
    pumped = still().astype(np.int16)
    pumped[1::2] += 20  # every other frame 20 levels brighter
    figures = clip_motion(*decoded(pumped.clip(0, 255).astype(np.uint8)), min_motion=0.0)
    assert figures.flicker == pytest.approx(20 / 255, rel=0.1)
    assert not figures.static  # a floor of 0 turns the check off


def test_encoding_marks_a_static_clip_and_keeps_the_figures_of_every_clip():
    spec = CandidateSpec(prompt_id="p", side=0, generator="g", seed=1, width=WIDTH, height=HEIGHT, frames=FRAMES, fps=FPS)
    static = encode_candidate(spec, still(), ImageOutputConfig(), min_motion=0.01)
    moving = encode_candidate(spec, panning(4), ImageOutputConfig(), min_motion=0.01)
    assert static.defect == "static_clip" and static.motion.static
    assert moving.defect is None and moving.motion.motion > 0.1
    # the figures are of the file as stored, which is what the judge and the dataset get
    assert moving.motion == clip_motion(*decode_video_with_fps(moving.media), min_motion=0.01)
    image = encode_candidate(spec.model_copy(update={"frames": 1, "fps": None}), still()[0], ImageOutputConfig(), min_motion=0.01)
    assert image.defect is None and image.motion is None
