"""What the temporal checks cost per clip on CPU, against making the clip on a GPU.

A 1280x720, 81-frame clip (16 fps) drawn with numpy (smoothed noise panning 6 px a frame) is
encoded as the generate stage does; then timed: decoding it back (the checks read the stored
file) and the figures (vipo_build/generate/motion.py: Farneback flow and flicker). The reference
is the registry's GPU-seconds for one such Wan2.2 clip (40 steps), and, measured in the same run,
the H.264 encoding every clip already pays.

  python benchmarks/bench_motion.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vipo_build.generate.encode import decode_video_with_fps, encode_video  # noqa: E402
from vipo_build.generate.motion import clip_motion  # noqa: E402
from vipo_build.generate.registry import families  # noqa: E402

WIDTH, HEIGHT, FRAMES, FPS = 1280, 720, 81, 16


def best_of(repeats: int, fn) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    coarse = np.random.default_rng(0).integers(0, 256, size=(HEIGHT // 16, WIDTH // 16, 3), dtype=np.uint8)
    texture = cv2.resize(coarse, (WIDTH, HEIGHT), interpolation=cv2.INTER_CUBIC)
    clip = np.stack([np.roll(texture, 6 * t, axis=1) for t in range(FRAMES)])
    encode_s, media = best_of(args.repeats, lambda: encode_video(clip, FPS))
    decode_s, (frames, fps) = best_of(args.repeats, lambda: decode_video_with_fps(media))
    figures_s, figures = best_of(args.repeats, lambda: clip_motion(frames, fps, 0.01))
    wan = families()["wan22-t2v-a14b"]
    gpu_s = wan.cost.seconds(wan.steps, WIDTH, HEIGHT, FRAMES)
    checks = decode_s + figures_s
    print(f"1280x720, {FRAMES} frames, {os.cpu_count()} CPU cores; best of {args.repeats}")
    print(f"  H.264 encode (paid today)   {encode_s:7.3f} s")
    print(f"  decode for the checks       {decode_s:7.3f} s")
    print(f"  motion + flicker figures    {figures_s:7.3f} s   {figures}")
    print(f"  checks in all               {checks:7.3f} s = {checks / encode_s:.2f} x the encode, "
          f"{checks / gpu_s:.2%} of the {gpu_s:,.0f} GPU-s of a Wan2.2 clip ({wan.cost.source})")
    print(f"  drawn motion {6 * FPS / WIDTH:.4f} frame widths/s, measured {figures.motion:.4f}")


if __name__ == "__main__":
    main()
