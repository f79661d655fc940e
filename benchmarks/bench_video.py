"""Seconds per clip of the video generator stage: Wan2.1 T2V 1.3B at 480p on a GPU, tiny Wan on CPU.

The stage is the project's GenerateStage (one pipeline call per clip, uint8 frames, MP4 encoding
and the unit's cache write in a temporary root). At full size the architecture is built from its
config with random bf16 weights on the GPU (benchmarks/full_size.py; no download); seconds per
step are measured over --steps and scaled to the 50 steps of the registry's default.

    python benchmarks/bench_video.py --full-size [--steps 10] [--json-out wan.json]
    .venv/bin/python benchmarks/bench_video.py            # tiny Wan on CPU, 64 px, 9 frames
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from full_size import full_size_wan_1_3b  # noqa: E402

from vipo_build.config import GeneratorConfig, ImageOutputConfig, VideoOutputConfig  # noqa: E402
from vipo_build.generate.actor import GenerateStage, GenerationWork  # noqa: E402
from vipo_build.models.tiny import make_tiny_models  # noqa: E402
from vipo_build.records import CandidateSpec  # noqa: E402
from vipo_build.runtime.storage import Storage  # noqa: E402

DEFAULT_STEPS = 50  # the registry's wan21 default: seconds per clip are quoted at it


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full-size", action="store_true", help="Wan2.1 1.3B architecture, random bf16 weights (GPU)")
    parser.add_argument("--steps", type=int, help="steps timed; default: 10 full size, 4 tiny")
    parser.add_argument("--json-out", help="also write the figures to this JSON file")
    args = parser.parse_args()
    if args.full_size and not torch.cuda.is_available():
        parser.error("--full-size needs a CUDA GPU (about 30 GB of memory)")
    steps = args.steps or (10 if args.full_size else 4)
    width, height, frames = (832, 480, 81) if args.full_size else (64, 64, 9)
    storage = Storage(tempfile.mkdtemp(prefix="vipo-bench-video-"))
    if args.full_size:
        model, dtype = "Wan-AI/Wan2.1-T2V-1.3B-Diffusers", "bfloat16"
    else:
        model, dtype = str(make_tiny_models(REPO / "build" / "tiny-models", ["wan"])["wan"]), "float32"
    config = GeneratorConfig(name="wan", model=model, modality="video", steps=steps, guidance=5.0, dtype=dtype,
                             batch_size=1)
    stage = GenerateStage(config, ImageOutputConfig(), VideoOutputConfig(), storage)  # clips are encoded as MP4 whatever the image config
    if args.full_size:
        stage.device, stage.pipeline = "cuda", full_size_wan_1_3b("cuda")
    else:
        stage.setup()

    def clip(seed: int) -> float:
        spec = CandidateSpec(prompt_id=f"bench-u000000-p{seed:03d}", side=0, generator="wan", seed=seed, width=width,
                             height=height, frames=frames, fps=16)
        start = time.perf_counter()
        stage.process([GenerationWork("bench", seed, [spec], ["a red fox running through fresh snow, tracking shot"])])
        return time.perf_counter() - start

    clip(0)  # warm-up: allocator, kernels, lazy imports
    seconds = min(clip(1), clip(2))
    per_step = seconds / steps
    where = torch.cuda.get_device_name() if args.full_size else "CPU"
    print(f"{'Wan2.1 1.3B full size' if args.full_size else 'tiny Wan'} on {where}: {width}x{height}, {frames} frames, "
          f"{steps} steps: {seconds:.2f} s per clip, {per_step:.3f} s per step, "
          f"{per_step * DEFAULT_STEPS:.1f} s per clip at {DEFAULT_STEPS} steps")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({
            "model": "Wan2.1 T2V 1.3B full size" if args.full_size else "tiny Wan", "device": where, "width": width,
            "height": height, "frames": frames, "steps_timed": steps, "seconds_per_step": round(per_step, 4),
            f"seconds_per_clip_at_{DEFAULT_STEPS}_steps": round(per_step * DEFAULT_STEPS, 2)}, indent=1))


if __name__ == "__main__":
    main()
