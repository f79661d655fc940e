"""Encoded candidates decode back at the requested size and length, with stable bytes."""

from __future__ import annotations

import numpy as np
import pytest

from vipo_build.generate.encode import decode_image, decode_video, encode_image, encode_video
from vipo_build.judge.views import contact_sheet
from vipo_build.records import CandidateSpec
from vipo_build.generate.actor import size_defect

PIXELS = np.random.default_rng(0).integers(0, 256, size=(9, 48, 80, 3), dtype=np.uint8)


@pytest.mark.parametrize("fmt", ["jpg", "png", "webp"])
def test_image_round_trip(fmt: str):
    data = encode_image(PIXELS[0], fmt, 90)
    assert decode_image(data).size == (80, 48)
    assert encode_image(PIXELS[0], fmt, 90) == data
    if fmt == "png":
        assert np.array_equal(np.asarray(decode_image(data)), PIXELS[0])


def test_video_round_trip_is_bit_exact():
    data = encode_video(PIXELS, fps=8)
    assert data[4:8] == b"ftyp"
    assert decode_video(data).shape == (9, 48, 80, 3)
    assert encode_video(PIXELS, fps=8) == data


def test_contact_sheet_tiles_sampled_frames():
    sheet = contact_sheet(PIXELS, 4)
    assert sheet.size == (2 * 80, 2 * 48)
    assert np.array_equal(np.asarray(sheet)[:48, :80], PIXELS[0])
    assert np.array_equal(np.asarray(sheet)[48:, 80:], PIXELS[8])


def test_candidates_smaller_or_shorter_than_asked_are_marked():
    image = CandidateSpec(prompt_id="p", side=0, generator="g", seed=1, width=80, height=48)
    clip = image.model_copy(update={"frames": 9, "fps": 8})
    assert size_defect(image, PIXELS[0]) is None
    assert size_defect(image, PIXELS[0, :40]) == "below_resolution"
    assert size_defect(clip, PIXELS) is None
    assert size_defect(clip, PIXELS[:5]) == "too_few_frames"
    assert size_defect(clip, PIXELS[:, :, :60]) == "below_resolution"
