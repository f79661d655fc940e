"""Generation stage throughput against a bare diffusers loop over the same prompts (goal: >= 0.97).

The stage is what `vipo-build run` does per work unit: the project's GenerateStage
(vipo_build/generate/actor.py) turns a unit of candidate specs into uint8 pixels (one pipeline
call per batch, one torch.Generator per candidate), encodes them (JPEG) and writes the unit's
candidates to the cache (a local temporary root here). With --ray the stage runs as a one-actor
pool of the run's scheduler (runtime/scheduler.py), as in a run. The bare loop is `pipe(prompt=batch, generator=[...], output_type="np")` with
the same model, prompts, seeds, size, steps, guidance and batch size, its float pixels left as
they are. Both run in this process, alternating, after a warm-up; the best of --repeats counts.
Prints images/s (and images/GPU-hour on a GPU) of both and their ratio.

CPU, the tiny random-weight Flux (build/tiny-models/flux), 64 px:

    .venv/bin/python benchmarks/bench_generate.py [--images 96] [--batch-size 4] [--steps 4] [--threads 1] [--ray]

GPU (one H100): the full-size FLUX.1-dev architecture with random weights built from its config on
the GPU (no download: 12B transformer, 16-channel VAE, CLIP-L, T5-XXL; tiny tokenizers, the same
512-token T5 sequence), bf16, 1024 px, 28 steps, plain and with torch.compile:

    python benchmarks/bench_generate.py --full-size --images 24 --batch-size 4 --repeats 2
    python benchmarks/bench_generate.py --full-size --images 24 --batch-size 4 --repeats 2 --compile

The machine needs about 40 GB of GPU memory and this repo's Python stack (torch, diffusers,
transformers, pillow, ray); images/GPU-hour is 3600 x images/s of the stage.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from diffusers import FluxPipeline

from vipo_build.config import GeneratorConfig, ImageOutputConfig, PoolConfig, RayConfig, VideoOutputConfig
from vipo_build.generate.actor import GenerateStage, GenerationWork
from vipo_build.models.tiny import make_tiny_models
from vipo_build.records import CandidateSpec
from vipo_build.runtime.storage import Storage

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from full_size import full_size_flux  # noqa: E402
GUIDANCE = 3.5  # FLUX.1-dev's default (embedded guidance)
SUBJECTS = ["a lighthouse on a basalt cliff", "two foxes in fresh snow", "a neon diner sign that reads OPEN",
            "a bowl of ramen with a soft egg", "an astronaut repairing a satellite", "a market street in the rain"]
STYLES = ["at dusk, long exposure", "watercolor", "35 mm film photo, shallow depth of field", "isometric 3D render"]


def make_prompts(n: int) -> list[str]:
    return [f"{SUBJECTS[i % len(SUBJECTS)]}, {STYLES[i // len(SUBJECTS) % len(STYLES)]}, variant {i}" for i in range(n)]


def generator_around(stage: GenerateStage, pipeline) -> GenerateStage:
    """The project's stage with an in-memory pipeline: full-size random weights (34 GB) are
    never saved, so its from_pretrained has nothing to load. Float8 weights are cast as setup does."""
    stage.device, stage.pipeline = pipeline.device.type, pipeline
    if stage.config.fp8_weights:
        pipeline.transformer.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=torch.bfloat16)
    return stage


def cached_only_here(transformer, threshold: float, run: Callable[[], None]) -> Callable[[], None]:
    """`run` with diffusers' first-block cache on the shared full-size transformer, off again after
    (the bare loop uses the same one, uncached)."""
    from diffusers.hooks import FirstBlockCacheConfig

    def cached() -> None:
        transformer.enable_cache(FirstBlockCacheConfig(threshold=threshold))
        try:
            run()
        finally:
            transformer.disable_cache()

    return cached


def bare_loop(pipeline: FluxPipeline, prompts: list[str], seeds: list[int], args: argparse.Namespace) -> None:
    device = pipeline.device.type
    for lo in range(0, len(prompts), args.batch_size):
        pipeline(
            prompt=prompts[lo : lo + args.batch_size],
            height=args.size,
            width=args.size,
            num_inference_steps=args.steps,
            guidance_scale=GUIDANCE,
            generator=[torch.Generator(device).manual_seed(s) for s in seeds[lo : lo + args.batch_size]],
            output_type="np",
        )


def units_of(specs: list[CandidateSpec], prompts: list[str], unit: int) -> list[GenerationWork]:
    return [GenerationWork("bench", lo // unit, specs[lo : lo + unit], prompts[lo : lo + unit]) for lo in range(0, len(specs), unit)]


def stage_direct(generator: GenerateStage, specs: list[CandidateSpec], prompts: list[str], unit: int) -> None:
    """Unit by unit, as a run calls it: generate, encode, cache."""
    for work in units_of(specs, prompts, unit):
        generator.process([work])


def stage_ray(config: GeneratorConfig, image: ImageOutputConfig, storage: Storage,
              threads: int) -> Callable[[list[CandidateSpec], list[str], int], None]:
    """A one-actor pool of the run's scheduler; the actor loads its own pipeline."""
    from vipo_build.runtime.scheduler import Scheduler, start_ray

    start_ray(RayConfig(num_cpus=threads, object_store_mb=512))
    generator = GenerateStage(config.model_copy(update={"pool": PoolConfig(actors=1, num_cpus=threads)}), image, VideoOutputConfig(), storage)
    scheduler = Scheduler()
    scheduler.add(generator, lambda task, result: None)

    def run(specs: list[CandidateSpec], prompts: list[str], unit: int) -> None:
        for work in units_of(specs, prompts, unit):
            scheduler.submit(generator.name, f"bench/u{work.unit:06d}", work, (work.unit,))
        scheduler.run()

    return run


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--unit", type=int, default=16, help="specs per Generator.generate call (a work unit)")
    parser.add_argument("--steps", type=int, help="default: 4 tiny, 28 full size")
    parser.add_argument("--size", type=int, help="pixels per side; default: 64 tiny, 1024 full size")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (CPU runs)")
    parser.add_argument("--full-size", action="store_true", help="FLUX.1-dev architecture, random bf16 weights (GPU)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the transformer")
    parser.add_argument("--ray", action="store_true", help="also time the stage through a Ray actor pool (tiny only)")
    parser.add_argument("--first-block-cache", type=float, help="the stage with diffusers' first-block cache at this threshold "
                        "(the bare loop runs without: the ratio is the fast path's gain)")
    parser.add_argument("--fp8-weights", action="store_true", help="the stage with float8 weight storage (full size: "
                        "with --skip-bare, the bare loop shares the cast pipeline)")
    parser.add_argument("--skip-bare", action="store_true", help="time the stage only (a fast path against an earlier bare figure)")
    parser.add_argument("--json-out", help="also write the figures to this JSON file")
    args = parser.parse_args()
    args.steps = args.steps or (28 if args.full_size else 4)
    args.size = args.size or (1024 if args.full_size else 64)
    if args.full_size and not torch.cuda.is_available():
        parser.error("--full-size needs a CUDA GPU (about 40 GB of memory)")
    if args.full_size and args.fp8_weights and not args.skip_bare:
        parser.error("--fp8-weights at full size needs --skip-bare: the bare loop shares the pipeline it casts")
    if args.full_size and args.ray:
        parser.error("--ray loads the model from disk in the actor; the full-size model exists only in memory")
    return args


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    image = ImageOutputConfig(width=args.size, height=args.size, format="jpg", quality=95)
    storage = Storage(tempfile.mkdtemp(prefix="vipo-bench-generate-"))
    prompts = make_prompts(args.images)
    seeds = [1000 + i for i in range(args.images)]

    if args.full_size:
        model, dtype = "black-forest-labs/FLUX.1-dev", "bfloat16"
        bare = full_size_flux(device)
    else:
        model, dtype = str(make_tiny_models(REPO / "build" / "tiny-models", ["flux"])["flux"]), "float32"
        bare = FluxPipeline.from_pretrained(model, torch_dtype=torch.float32).to(device)
        bare.set_progress_bar_config(disable=True)
    generator_config = GeneratorConfig(name="flux", model=model, modality="image", steps=args.steps,
                                       guidance=GUIDANCE, dtype=dtype, batch_size=args.batch_size,
                                       first_block_cache=args.first_block_cache, fp8_weights=args.fp8_weights)
    generator = GenerateStage(generator_config, image, VideoOutputConfig(), storage)
    if args.full_size:
        generator_around(generator, bare)
    else:
        generator.setup()
    if args.compile:  # in place, so the Generator's pipeline (the same object at full size) runs compiled too
        for transformer in {id(p.transformer): p.transformer for p in (bare, generator.pipeline)}.values():
            transformer.compile()
    specs = [CandidateSpec(prompt_id=f"bench-u{i // args.unit:06d}-p{i % args.unit:03d}", side=0, generator="flux",
                           seed=s, width=args.size, height=args.size) for i, s in enumerate(seeds)]

    runs: dict[str, Callable[[], None]] = {
        "bare": lambda: bare_loop(bare, prompts, seeds, args),
        "stage": lambda: stage_direct(generator, specs, prompts, args.unit),
    }
    if args.full_size and args.first_block_cache:
        runs["stage"] = cached_only_here(bare.transformer, args.first_block_cache, runs["stage"])
    if args.skip_bare:
        del runs["bare"]
    if args.ray:
        ray_run = stage_ray(generator_config, image, storage, args.threads)
        runs["stage+ray"] = lambda: ray_run(specs, prompts, args.unit)

    # Warm-up: a unit each (compilation, allocator, lazy imports); compiled runs need two batches.
    warm = 2 * args.batch_size if args.compile else args.batch_size
    if "bare" in runs:
        bare_loop(bare, prompts[:warm], seeds[:warm], args)
    stage_direct(generator, specs[:warm], prompts[:warm], args.unit)
    if args.ray:
        ray_run(specs[:warm], prompts[:warm], args.unit)

    best = {name: 0.0 for name in runs}
    for repeat in range(args.repeats):
        order = list(runs) if repeat % 2 == 0 else list(reversed(runs))  # cancel drift between the two
        for name in order:
            start = time.perf_counter()
            runs[name]()
            best[name] = max(best[name], args.images / (time.perf_counter() - start))

    where = torch.cuda.get_device_name() if device == "cuda" else f"CPU, {args.threads} torch thread(s)"
    print(f"{'full-size FLUX.1-dev' if args.full_size else 'tiny Flux'} on {where}: {args.images} images of "
          f"{args.size} px, {args.steps} steps, batch {args.batch_size}, unit {args.unit}"
          f"{', torch.compile' if args.compile else ''}; best of {args.repeats}")
    for name, rate in best.items():
        per_hour = f"  {rate * 3600:9.0f} images/GPU-hour" if device == "cuda" else ""
        print(f"{name:>10}: {rate:8.3f} images/s{per_hour}")
    for name in runs:
        if name != "bare" and "bare" in runs:
            print(f"ratio {name}/bare: {best[name] / best['bare']:.3f}")
    if args.json_out:
        figures = {"model": "FLUX.1-dev full size" if args.full_size else "tiny Flux", "device": where, "size": args.size,
                   "steps": args.steps, "batch_size": args.batch_size, "compile": args.compile,
                   "first_block_cache": args.first_block_cache, "fp8_weights": args.fp8_weights,
                   **{f"{name}_images_per_s": round(rate, 4) for name, rate in best.items()},
                   **{f"ratio_{name}_to_bare": round(best[name] / best["bare"], 4) for name in runs
                      if name != "bare" and "bare" in runs}}
        if device == "cuda":
            figures |= {f"{name}_images_per_gpu_hour": round(rate * 3600) for name, rate in best.items()}
        Path(args.json_out).write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
