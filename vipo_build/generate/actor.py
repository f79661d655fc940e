"""A generator actor: one diffusers pipeline, loaded once, turning candidate specs into pixels."""

from __future__ import annotations

import time

import numpy as np

from vipo_build.config import GeneratorConfig
from vipo_build.records import CandidateSpec
from vipo_build.runtime import failpoints


class Generator:
    """Runs as a Ray actor (see runtime/pools.py); returns raw uint8 pixels, encoding happens on CPU workers."""

    def __init__(self, generator: GeneratorConfig):
        import torch

        from vipo_build.generate.registry import load_pipeline, resolve_family

        self.config = generator
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        family = resolve_family(generator.model, generator.family)
        # With offload, diffusers moves each component to the GPU when it runs.
        self.pipeline = load_pipeline(family, generator.model, generator.dtype, "cpu" if generator.cpu_offload else self.device)
        if generator.cpu_offload and self.device == "cuda":
            self.pipeline.enable_model_cpu_offload()
        if generator.compile:
            for name in ("transformer", "unet"):
                if getattr(self.pipeline, name, None) is not None:
                    setattr(self.pipeline, name, torch.compile(getattr(self.pipeline, name)))

    def generate(self, specs: list[CandidateSpec], prompts: list[str]) -> tuple[list[np.ndarray], float]:
        """Pixels of each spec ((H, W, 3) or (frames, H, W, 3) uint8) and the seconds spent.

        Each candidate gets its own torch.Generator, so its pixels depend on its seed, not on
        which other candidates share the batch.
        """
        import torch

        from vipo_build.generate.encode import to_uint8

        start = time.perf_counter()
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
        failpoints.reached("generate.batch", self.config.name)
        return out, time.perf_counter() - start
