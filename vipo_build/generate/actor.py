"""The generate stage: one diffusers pipeline per actor, turning a unit's candidate specs into
encoded candidates that the actor caches itself (raw pixels never wait in Ray's object store)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vipo_build.config import GeneratorConfig, ImageOutputConfig, VideoOutputConfig
from vipo_build.errors import VipoError
from vipo_build.generate.encode import decode_video_with_fps, encode_image, encode_video
from vipo_build.generate.motion import clip_motion
from vipo_build.records import Candidate, CandidateSpec
from vipo_build.runtime import cache, failpoints
from vipo_build.runtime.stage import Stage
from vipo_build.runtime.storage import Storage


@dataclass(frozen=True)
class GenerationWork:
    """One generator's share of a unit: its specs and the text each is generated from."""

    category: str
    unit: int
    specs: list[CandidateSpec]
    texts: list[str]


class GenerateStage(Stage):
    def __init__(self, generator: GeneratorConfig, image: ImageOutputConfig, video: VideoOutputConfig, storage: Storage):
        self.config, self.image, self.video, self.storage = generator, image, video, storage
        self.name, self.resources = f"generate:{generator.name}", generator.pool

    def setup(self) -> None:
        import torch

        from vipo_build.generate.registry import load_pipeline, resolve_family

        generator = self.config
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        family = resolve_family(generator.model, generator.family)
        # With offload, diffusers moves each component to the GPU when it runs.
        self.pipeline = load_pipeline(family, generator.model, generator.dtype, "cpu" if generator.cpu_offload else self.device)
        if generator.cpu_offload and self.device == "cuda":
            self.pipeline.enable_model_cpu_offload()
        denoiser_name = next(n for n in ("transformer", "unet") if getattr(self.pipeline, n, None) is not None)
        if generator.first_block_cache:
            from diffusers.hooks import FirstBlockCacheConfig

            denoiser = getattr(self.pipeline, denoiser_name)
            if not hasattr(denoiser, "enable_cache"):
                raise VipoError(f"generator {generator.name}: first_block_cache: {type(denoiser).__name__} has no "
                                "diffusers cache support")
            denoiser.enable_cache(FirstBlockCacheConfig(threshold=generator.first_block_cache))
        if generator.fp8_weights:
            getattr(self.pipeline, denoiser_name).enable_layerwise_casting(
                storage_dtype=torch.float8_e4m3fn, compute_dtype=getattr(torch, generator.dtype))
        if generator.compile:
            setattr(self.pipeline, denoiser_name, torch.compile(getattr(self.pipeline, denoiser_name)))

    def process(self, batch: list[GenerationWork]) -> list[int]:
        """Generates, encodes and caches each unit's candidates; returns how many each unit got."""
        out = []
        for work in batch:
            pixels = self.generate(work.specs, work.texts)
            failpoints.reached("generate.batch", self.config.name)
            candidates = [encode_candidate(spec, array, self.image, self.video.min_motion) for spec, array in zip(work.specs, pixels)]
            cache.write_candidates(self.storage, work.category, work.unit, self.config.name, candidates)
            failpoints.reached("candidates.written", f"{cache.unit_name(work.category, work.unit)}/{self.config.name}")
            out.append(len(candidates))
        return out

    def generate(self, specs: list[CandidateSpec], prompts: list[str]) -> list[np.ndarray]:
        """Pixels of each spec ((H, W, 3) or (frames, H, W, 3) uint8).

        Each candidate gets its own torch.Generator, so its pixels depend on its seed, not on
        which other candidates share the batch.
        """
        import torch

        from vipo_build.generate.encode import to_uint8

        out: list[np.ndarray] = []
        size = self.config.batch_size
        for lo in range(0, len(specs), size):
            batch, texts = specs[lo : lo + size], prompts[lo : lo + size]
            spec = batch[0]
            kwargs = {
                "prompt": texts,
                "height": spec.height,
                "width": spec.width,
                "num_inference_steps": self.config.steps,
                "generator": [torch.Generator(self.device).manual_seed(s.seed) for s in batch],
                "output_type": "np",
                **self.config.call_options,
            }
            if self.config.guidance is not None:
                kwargs["guidance_scale"] = self.config.guidance
            if self.config.modality == "video":
                result = self.pipeline(num_frames=spec.frames, **kwargs).frames
            else:
                result = self.pipeline(**kwargs).images
            out.extend(to_uint8(np.asarray(x)) for x in result)
        return out


def encode_candidate(spec: CandidateSpec, pixels: np.ndarray, image: ImageOutputConfig, min_motion: float) -> Candidate:
    """The candidate's file, its size defect, and a clip's temporal figures measured on the file as decoded (what the
    dataset holds and the judge sees), a static clip being a defect too."""
    if spec.frames == 1:
        return Candidate(**spec.model_dump(), format=image.format, media=encode_image(pixels, image.format, image.quality),
                         defect=size_defect(spec, pixels))
    media = encode_video(pixels, spec.fps)
    motion = clip_motion(*decode_video_with_fps(media), min_motion)
    defect = size_defect(spec, pixels) or ("static_clip" if motion.static else None)
    return Candidate(**spec.model_dump(), format="mp4", media=media, defect=defect, motion=motion)


def size_defect(spec: CandidateSpec, pixels: np.ndarray) -> str | None:
    """below_resolution or too_few_frames when the generator returned less than was asked for."""
    frames, height, width = (1, *pixels.shape[:2]) if spec.frames == 1 else pixels.shape[:3]
    if height < spec.height or width < spec.width:
        return "below_resolution"
    if frames < spec.frames:
        return "too_few_frames"
    return None
