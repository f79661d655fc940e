"""What the judge sees of a candidate: the decoded image, a contact sheet of a clip's frames, or the
clip's sampled frames as video (vipo_build/judge/budget.py says which, per judge)."""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass

import numpy as np
from PIL import Image

from vipo_build.config import JudgeStageConfig, VideoOutputConfig
from vipo_build.generate.encode import decode_image, decode_video_with_fps
from vipo_build.judge.budget import fitted, sampled_frames, sheet_grid
from vipo_build.records import ViewKind

VIDEO_FRAME_QUALITY = 95  # frames travel to vLLM as a JPEG sequence, its frame-list video format


@dataclass(frozen=True)
class VideoView:
    """A clip's sampled frames, as a native video judge gets them."""

    frames: list[Image.Image]

    def data_url(self) -> str:
        """vLLM's frame-sequence video: the frames as comma-separated base64 JPEGs."""
        parts = []
        for frame in self.frames:
            sink = io.BytesIO()
            frame.save(sink, format="JPEG", quality=VIDEO_FRAME_QUALITY)
            parts.append(base64.b64encode(sink.getvalue()).decode())
        return "data:video/jpeg;base64," + ",".join(parts)


View = Image.Image | VideoView


def frame_indices(total_frames: int, fps: float, config: JudgeStageConfig) -> list[int]:
    """Which frames of a clip a native video judge gets: spread evenly at judge.video_fps."""
    n = sampled_frames(total_frames, fps, config)
    return np.linspace(0, total_frames - 1, num=n).round().astype(int).tolist()


def video_timing(clip: VideoOutputConfig, config: JudgeStageConfig) -> dict[str, dict]:
    """The engine settings that tell a video judge when its frames were taken: vLLM's frame-sequence metadata (source
    fps, the sampled frames' indices, length) and the processor's sampling rate (Qwen2.5-VL's time ids). Every clip of
    a run has the config's length and rate, so they are the same for all its requests."""
    indices = frame_indices(clip.frames, clip.fps, config)
    duration = clip.frames / clip.fps
    return {
        "media_io_kwargs": {"video": {"fps": float(clip.fps), "frames_indices": indices, "total_num_frames": clip.frames,
                                      "duration": duration}},
        "mm_processor_kwargs": {"fps": len(indices) / duration},
    }


def media_view(media: bytes, kind: ViewKind, config: JudgeStageConfig) -> View:
    """The view of a candidate's encoded file, decoded from the stored bytes: what the dataset holds."""
    if kind == "image":
        image = decode_image(media)
        image.thumbnail((config.image_size, config.image_size))
        return image
    clip, fps = decode_video_with_fps(media)
    if kind == "contact_sheet":
        sheet = contact_sheet(clip, config.video_frames)
        sheet.thumbnail((config.image_size, config.image_size))
        return sheet
    size = fitted(clip.shape[2], clip.shape[1], config.video_size)
    return VideoView([Image.fromarray(clip[i]).resize(size, Image.Resampling.BICUBIC)
                      for i in frame_indices(len(clip), fps, config)])


def contact_sheet(clip: np.ndarray, frames: int) -> Image.Image:
    """`frames` frames sampled uniformly, tiled row by row in time order."""
    picks = np.linspace(0, len(clip) - 1, num=min(frames, len(clip))).round().astype(int)
    cols, rows = sheet_grid(len(picks))
    height, width = clip.shape[1:3]
    sheet = np.zeros((rows * height, cols * width, 3), np.uint8)
    for i, frame in enumerate(clip[picks]):
        r, c = divmod(i, cols)
        sheet[r * height : (r + 1) * height, c * width : (c + 1) * width] = frame
    return Image.fromarray(sheet)
