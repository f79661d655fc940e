"""What the judge sees of a candidate: the decoded image, or a contact sheet of a clip's frames."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

from vipo_build.generate.encode import decode_image, decode_video
from vipo_build.records import Candidate


def judge_view(candidate: Candidate, size: int, frames: int) -> Image.Image:
    """Decoded from the stored bytes, so the judge sees exactly what the dataset holds."""
    return media_view(candidate.media, candidate.frames > 1, size, frames)


def media_view(media: bytes, is_video: bool, size: int, frames: int) -> Image.Image:
    """The view of encoded media: the image, or a contact sheet of `frames` frames, fitted in `size`."""
    image = contact_sheet(decode_video(media), frames) if is_video else decode_image(media)
    image.thumbnail((size, size))
    return image


def contact_sheet(clip: np.ndarray, frames: int) -> Image.Image:
    """`frames` frames sampled uniformly, tiled row by row in time order."""
    picks = np.linspace(0, len(clip) - 1, num=min(frames, len(clip))).round().astype(int)
    cols = math.ceil(math.sqrt(len(picks)))
    rows = math.ceil(len(picks) / cols)
    height, width = clip.shape[1:3]
    sheet = np.zeros((rows * height, cols * width, 3), np.uint8)
    for i, frame in enumerate(clip[picks]):
        r, c = divmod(i, cols)
        sheet[r * height : (r + 1) * height, c * width : (c + 1) * width] = frame
    return Image.fromarray(sheet)
