"""Gold pairs: attention checks whose loser is known by construction.

A gold pair sets a kept pair's chosen candidate against a degraded copy of itself: blurred,
noisy and washed out (a video's copy is also frozen on its first frame, so it has no motion).
Anyone looking picks the original in every category; a rater who often does not is not looking,
and can be left out of the human majority.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from PIL import Image, ImageFilter
from pydantic import Field

from vipo_build.errors import VipoError
from vipo_build.generate.encode import decode_image, decode_video_with_fps, encode_image, encode_video
from vipo_build.strict import StrictModel

GOLD_PREFIX = "gold-"  # a gold pair's key: the prefix and its source pair's key
GOLD_JPEG_QUALITY = 90


def gold_key(source_key: str) -> str:
    return f"{GOLD_PREFIX}{source_key}"


def degrade_frame(pixels: np.ndarray, seed: int) -> np.ndarray:
    """Blur (radius a 30th of the width), Gaussian noise and halved contrast: a clear loser."""
    image = Image.fromarray(pixels).filter(ImageFilter.GaussianBlur(radius=max(2.0, pixels.shape[1] / 30)))
    blurred = np.asarray(image, dtype=np.float32)
    noise = np.random.default_rng(seed).normal(0.0, 28.0, blurred.shape)
    washed = 128.0 + 0.5 * (blurred - 128.0) + noise
    return np.clip(washed, 0, 255).round().astype(np.uint8)


def degraded_copy(media: bytes, fmt: str, seed: int) -> bytes:
    """The loser of a gold pair whose winner is `media` (an image in fmt, or an MP4)."""
    if fmt == "mp4":
        frames, fps = decode_video_with_fps(media)
        frozen = np.repeat(degrade_frame(frames[0], seed)[None], len(frames), axis=0)
        return encode_video(frozen, round(fps))
    return encode_image(degrade_frame(np.asarray(decode_image(media)), seed), fmt, GOLD_JPEG_QUALITY)


class GoldCheck(StrictModel):
    answered: int = Field(description="Gold pairs the rater answered; a skip counts as a miss, since the loser is plain to see.")
    correct: int = Field(description="Of those, the ones where the rater picked the original.")
    accuracy: float | None
    left_out: bool = Field(description="The rater's labels are left out of the human majority.")
    why: str | None = Field(description="Why the rater is left out.")


def check_gold_floor(floor: float) -> None:
    if not 0 <= floor <= 1:
        raise VipoError(f"--gold-floor {floor}: a gold accuracy floor is a share between 0 and 1")


def gold_checks(labels: Sequence[Mapping], gold_winner: Mapping[str, str], floor: float) -> dict[str, GoldCheck]:
    """Each rater's accuracy on the gold pairs (key -> the A/B label of the original); a rater
    who answered at least one and scores below `floor` is left out."""
    answered: dict[str, int] = {}
    correct: dict[str, int] = {}
    raters = sorted({label["rater"] for label in labels})
    for label in labels:
        if label["key"] in gold_winner:
            answered[label["rater"]] = answered.get(label["rater"], 0) + 1
            correct[label["rater"]] = correct.get(label["rater"], 0) + (label["choice"] == gold_winner[label["key"]])
    checks = {}
    for rater in raters:
        n, right = answered.get(rater, 0), correct.get(rater, 0)
        accuracy = right / n if n else None
        left_out = accuracy is not None and accuracy < floor
        why = f"gold accuracy {accuracy:.0%} ({right} of {n}) is below {floor:.0%}" if left_out else None
        checks[rater] = GoldCheck(answered=n, correct=right, accuracy=accuracy, left_out=left_out, why=why)
    return checks
