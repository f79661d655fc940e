"""Judge requests per second for a 7B Qwen2.5-VL with clips as native video vs as contact sheets.

Random weights from the published architecture (no hub): the time a request takes depends on its
shape, not on the weights. Each request is what the judge stage sends for one vote of a video pair:
two candidates and a short JSON answer. The views are sized by the judge stage's own budget
(vipo_build/judge/budget.py) for pipelines/video_300k.yaml (1280x720, 81 frames at 16 fps), which gives:

  video:          10 frames (2 fps over 5.06 s) at 448x252 -> 5 x 18 x 32 patches, 720 tokens a clip
  contact_sheet:  8 frames tiled 3 x 3 (3840x2160) fitted in 1344 px: 1344x756 -> 54 x 96 patches, 1296 tokens

This times transformers' model (vision tower, prefill and `answer_tokens` greedy decode tokens of a
batch) in bf16 on one GPU: the model's own cost of each view, not vLLM's serving throughput, which
batches continuously and would be faster in both views alike.

  python benchmarks/bench_video_judge.py [--batch 8] [--repeats 3] [--json-out FILE]
  python benchmarks/bench_video_judge.py --tiny      # a 2-layer model on CPU: checks the script runs
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from vipo_build.config import load_config  # noqa: E402
from vipo_build.judge.budget import contact_sheet_size, fitted, processed_size, sampled_frames  # noqa: E402
from vipo_build.judge.registry import judge_models  # noqa: E402

PATCH, MERGE, TEMPORAL = 14, 2, 2
TINY_VIEWS = {"video": (2, 4, 4), "contact_sheet": (1, 8, 8)}


def views() -> dict[str, tuple[int, int, int]]:
    """(temporal patches, height patches, width patches) of one candidate of pipelines/video_300k.yaml in each view,
    as the judge stage sizes it and the Qwen2.5-VL processor resizes it (vipo_build/judge/budget.py)."""
    config = load_config(REPO / "pipelines" / "video_300k.yaml")[0]
    clip, judge, grid = config.output_for("video"), config.judge, judge_models()["qwen2.5-vl-7b"].vision
    video_w, video_h = processed_size(*fitted(clip.width, clip.height, judge.video_size), grid)
    sheet_w, sheet_h = processed_size(*contact_sheet_size(clip.width, clip.height, clip.frames, judge), grid)
    frames = sampled_frames(clip.frames, clip.fps, judge)
    return {"video": (math.ceil(frames / TEMPORAL), video_h // PATCH, video_w // PATCH),
            "contact_sheet": (1, sheet_h // PATCH, sheet_w // PATCH)}


def config(tiny: bool):
    from transformers import Qwen2_5_VLConfig

    if tiny:
        text = {"hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2, "num_attention_heads": 2,
                "num_key_value_heads": 2, "vocab_size": 2000, "rope_parameters": {"rope_type": "default", "rope_theta": 1e6,
                                                                                  "mrope_section": [8, 12, 12]}}
        vision = {"depth": 2, "hidden_size": 64, "intermediate_size": 128, "num_heads": 2, "out_hidden_size": 128,
                  "fullatt_block_indexes": [1], "window_size": 112}
    else:  # Qwen/Qwen2.5-VL-7B-Instruct's config.json
        text = {"hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28, "num_attention_heads": 28,
                "num_key_value_heads": 4, "vocab_size": 152064, "max_position_embeddings": 128000,
                "rope_parameters": {"rope_type": "default", "rope_theta": 1e6, "mrope_section": [16, 24, 24]}}
        vision = {"depth": 32, "hidden_size": 1280, "intermediate_size": 3420, "num_heads": 16, "out_hidden_size": 3584,
                  "fullatt_block_indexes": [7, 15, 23, 31], "window_size": 112}
    vision |= {"patch_size": PATCH, "spatial_merge_size": MERGE, "temporal_patch_size": TEMPORAL, "in_chans": 3}
    ids = {"image_token_id": 151655, "video_token_id": 151656, "vision_start_token_id": 151652,
           "vision_end_token_id": 151653} if not tiny else {"image_token_id": 5, "video_token_id": 6,
                                                             "vision_start_token_id": 3, "vision_end_token_id": 4}
    return Qwen2_5_VLConfig(text_config=text, vision_config=vision, **ids)


def requests(kind: str, grid: tuple[int, int, int], batch: int, cfg, device: str) -> dict:
    """A batch of requests: a text prompt around two candidates of `grid` patches each."""
    t, h, w = grid
    tokens = t * h * w // (MERGE * MERGE)
    pad = cfg.video_token_id if kind == "video" else cfg.image_token_id
    gen = torch.Generator().manual_seed(0)
    text = lambda n: torch.randint(10, 1000, (n,), generator=gen).tolist()  # noqa: E731
    one = text(200) + [cfg.vision_start_token_id] + [pad] * tokens + [cfg.vision_end_token_id] + text(10) \
        + [cfg.vision_start_token_id] + [pad] * tokens + [cfg.vision_end_token_id] + text(20)
    input_ids = torch.tensor([one] * batch, device=device)
    pixels = torch.randn(2 * batch * t * h * w, 3 * TEMPORAL * PATCH * PATCH, generator=gen).to(device, torch.bfloat16)
    grids = torch.tensor([grid] * (2 * batch), device=device)
    media = ({"pixel_values_videos": pixels, "video_grid_thw": grids} if kind == "video"
             else {"pixel_values": pixels, "image_grid_thw": grids})
    return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids), **media}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--answer-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json-out")
    args = parser.parse_args()
    from transformers import Qwen2_5_VLForConditionalGeneration

    device = "cpu" if args.tiny else "cuda"
    cfg = config(args.tiny)
    start = time.perf_counter()
    with torch.device(device):
        model = Qwen2_5_VLForConditionalGeneration._from_config(cfg, dtype=torch.bfloat16).eval()
    print(f"model built in {time.perf_counter() - start:.1f} s ({sum(p.numel() for p in model.parameters()) / 1e9:.2f} B "
          f"parameters, {device})", flush=True)
    figures = {}
    for kind, grid in (TINY_VIEWS if args.tiny else views()).items():
        batch = requests(kind, grid, args.batch, cfg, device)
        run = lambda: model.generate(**batch, max_new_tokens=args.answer_tokens, min_new_tokens=args.answer_tokens,  # noqa: E731
                                     do_sample=False)
        with torch.inference_mode():
            run()  # warm-up: kernels, allocator
            seconds = []
            for _ in range(args.repeats):
                if device == "cuda":
                    torch.cuda.synchronize()
                start = time.perf_counter()
                run()
                if device == "cuda":
                    torch.cuda.synchronize()
                seconds.append(time.perf_counter() - start)
        best = min(seconds)
        figures[kind] = {"visual_tokens_per_request": 2 * grid[0] * grid[1] * grid[2] // (MERGE * MERGE),
                         "prompt_tokens": batch["input_ids"].shape[1], "batch": args.batch,
                         "seconds_per_batch": round(best, 3), "requests_per_s": round(args.batch / best, 2)}
        print(f"{kind:>13}: {figures[kind]}", flush=True)
    figures["video_vs_contact_sheet"] = round(figures["video"]["requests_per_s"] / figures["contact_sheet"]["requests_per_s"], 3)
    figures["device"] = torch.cuda.get_device_name() if device == "cuda" else "CPU (tiny model)"
    print(json.dumps(figures, indent=1))
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(figures, f, indent=1)


if __name__ == "__main__":
    main()
