"""Temporal figures of a clip, from its decoded frames on CPU: how much it moves and how much it flickers.

A text-to-video model's commonest failure is a clip that barely moves; left to the judge, it wins
"visual quality" (nothing to get wrong) and poisons "motion quality". These figures catch it
before any GPU time goes to judging it.

- motion: mean dense optical flow (OpenCV Farneback) per second, in frame widths, on frames scaled
  to FLOW_WIDTH pixels wide. 0.1 means the content moves a tenth of the frame's width per second;
  a clip below the configured floor is a `static_clip` defect.
- flicker: mean jump of the mean luminance between consecutive frames (0-1 scale): global
  brightness pumping that flow does not see.
"""

from __future__ import annotations

import cv2
import numpy as np

from vipo_build.records import ClipMotion

FLOW_WIDTH = 256  # flow at this width: resolution-independent figures, and 720p costs what 256 px does
MAX_STEPS = 48  # frame steps measured at most, spread over the clip: an 81-frame clip's cost is bounded
# Farneback as OpenCV documents it for general scenes: pyramid scale, levels, window, iterations, poly_n, poly_sigma
FARNEBACK = (0.5, 3, 15, 3, 5, 1.2, 0)


def clip_motion(frames: np.ndarray, fps: float, min_motion: float) -> ClipMotion:
    """The figures of a (frames, height, width, 3) uint8 clip; `static` when its motion is below `min_motion`."""
    if len(frames) < 2:
        return ClipMotion(motion=0.0, flicker=0.0, static=min_motion > 0)
    height, width = frames.shape[1:3]
    size = (FLOW_WIDTH, max(8, round(height * FLOW_WIDTH / width)))
    gray = [cv2.resize(cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2GRAY), size, interpolation=cv2.INTER_AREA)
            for f in frames]
    luminance = np.array([g.mean() for g in gray]) / 255.0
    steps = np.unique(np.linspace(0, len(gray) - 2, num=min(MAX_STEPS, len(gray) - 1)).round().astype(int))
    flow = [cv2.calcOpticalFlowFarneback(gray[i], gray[i + 1], None, *FARNEBACK) for i in steps]
    per_frame = float(np.mean([np.linalg.norm(f, axis=2).mean() for f in flow]))  # pixels per frame step
    motion = per_frame * fps / FLOW_WIDTH
    return ClipMotion(motion=round(motion, 6), flicker=round(float(np.abs(np.diff(luminance)).mean()), 6),
                      static=motion < min_motion)
