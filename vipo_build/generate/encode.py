"""Encode generated pixels to the files a shard holds (and decode them back for the judge)."""

from __future__ import annotations

import io
import os
import tempfile

import imageio_ffmpeg
import numpy as np
from PIL import Image

PIL_FORMATS = {"jpg": "JPEG", "png": "PNG", "webp": "WEBP"}
# Bit-exact muxing: no encoder version or timestamps in the file, so a re-encode has the same bytes.
BITEXACT = ["-fflags", "+bitexact", "-flags:v", "+bitexact", "-map_metadata", "-1"]


def to_uint8(pixels: np.ndarray) -> np.ndarray:
    """Pipeline output in [0, 1] floats -> uint8."""
    return (np.clip(pixels, 0.0, 1.0) * 255).round().astype(np.uint8)


def encode_image(pixels: np.ndarray, fmt: str, quality: int) -> bytes:
    sink = io.BytesIO()
    options = {"quality": quality} if fmt in ("jpg", "webp") else {}
    Image.fromarray(pixels).save(sink, format=PIL_FORMATS[fmt], **options)
    return sink.getvalue()


def encode_video(frames: np.ndarray, fps: int) -> bytes:
    """H.264 MP4 (yuv420p, so every player decodes it) through the ffmpeg shipped by imageio-ffmpeg."""
    height, width = frames.shape[1:3]
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "clip.mp4")
        writer = imageio_ffmpeg.write_frames(
            path, (width, height), fps=fps, codec="libx264", pix_fmt_out="yuv420p",
            quality=None, bitrate=None, output_params=["-crf", "18", *BITEXACT], macro_block_size=16,
        )
        writer.send(None)
        for frame in frames:
            writer.send(np.ascontiguousarray(frame))
        writer.close()
        with open(path, "rb") as f:
            return f.read()


def decode_image(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data)).convert("RGB")


def decode_video(data: bytes) -> np.ndarray:
    """All frames of an MP4 as a (frames, height, width, 3) uint8 array."""
    return decode_video_with_fps(data)[0]


def decode_video_with_fps(data: bytes) -> tuple[np.ndarray, float]:
    """All frames of an MP4, and its frame rate."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "clip.mp4")
        with open(path, "wb") as f:
            f.write(data)
        reader = imageio_ffmpeg.read_frames(path)
        meta = reader.__next__()
        width, height = meta["size"]
        frames = [np.frombuffer(buf, np.uint8).reshape(height, width, 3) for buf in reader]
    return np.stack(frames), float(meta["fps"])
