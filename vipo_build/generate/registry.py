"""The generator registry: known diffusers pipeline families, their defaults and their quirks.

The data lives in registry.yaml (one entry per family); this module types it, turns a family into
GeneratorConfig defaults, loads a family's pipeline (extra components, float32 parts, weight
variants), checks requested sizes and frame counts against what the family was trained on, and
renders the `vipo-build models list` table.
"""

from __future__ import annotations

import math
from functools import cache
from importlib.resources import files
from typing import TYPE_CHECKING, Any, Literal

import yaml
from pydantic import Field, model_validator

from vipo_build.config import GeneratorConfig, ImageOutputConfig, PipelineConfig, VideoOutputConfig
from vipo_build.errors import VipoError
from vipo_build.prompts.categories import Modality
from vipo_build.strict import FrozenModel

if TYPE_CHECKING:
    from diffusers import DiffusionPipeline
    from rich.console import Console

REGISTRY_FILE = files("vipo_build.generate") / "registry.yaml"

GuidanceMode = Literal["cfg", "embedded", "true_cfg"]
Size = tuple[int, int]


class ExtraComponent(FrozenModel):
    """A pipeline component the family's hub repo does not ship, loaded from another repo."""

    class_name: str = Field(description="transformers class, e.g. LlamaForCausalLM or AutoTokenizer.")
    repo: str = Field(description="Hub id (or local directory) it is loaded from.")


class LoadQuirks(FrozenModel):
    variant: str | None = Field(None, description="Weight-file variant of the hub repo, e.g. fp16.")
    float32_components: tuple[str, ...] = Field((), description="Components kept in float32 whatever the dtype.")
    extra_components: dict[str, ExtraComponent] = Field(default_factory=dict)


class StepCost(FrozenModel):
    """H100 seconds per denoising step of one candidate at a reference size, guidance passes included."""

    seconds_per_step: float = Field(gt=0)
    size: Size
    frames: int = Field(1, ge=1)
    source: str = Field(description="Where the figure comes from, and when.")

    def seconds(self, steps: int, width: int, height: int, frames: int = 1) -> float:
        """H100 seconds of one candidate of `steps` steps at width x height x frames: the reference figure scaled by
        pixels (the attention share is small at these sizes)."""
        return self.seconds_per_step * steps * ((width * height * frames) / (self.size[0] * self.size[1] * self.frames))


class EngineCost(FrozenModel):
    """A vLLM engine's GPU-seconds per request at full concurrency, for a reference request."""

    gpu_seconds_per_request: float = Field(gt=0)
    visual_tokens: int = Field(ge=0, description="Image or frame tokens of the reference request.")
    note: str
    source: str


class Family(FrozenModel):
    """One generator family: a diffusers pipeline class, a checkpoint, and how to drive it."""

    name: str
    title: str
    modality: Modality
    pipeline: str = Field(description="diffusers pipeline class.")
    hub_id: str
    dtype: Literal["float32", "bfloat16", "float16"]
    steps: int = Field(ge=1)
    guidance: float | None = Field(description="GeneratorConfig.guidance default (None: not passed).")
    guidance_mode: GuidanceMode = Field(
        description="cfg: classic CFG through guidance_scale (two passes per step); embedded: a "
        "guidance-distilled model takes guidance_scale as an input (one pass); true_cfg: CFG through "
        "call_options.true_cfg_scale with a negative_prompt, guidance_scale is ignored."
    )
    call_options: dict[str, Any] = Field(default_factory=dict)
    resolutions: tuple[Size, ...] = Field(min_length=1, description="Native (width, height) sizes.")
    multiple_of: int = Field(ge=1, description="Width and height must be multiples of this.")
    resolution_binning: bool = Field(False, description="The pipeline snaps sizes to bins and resizes back.")
    fixed_area: int | None = Field(None, description="The pipeline rescales every size to this many pixels.")
    frames: int | None = Field(None, description="Native frames per clip (video).")
    fps: int | None = Field(None, description="Native frame rate (video).")
    frame_stride: int | None = Field(None, description="Clip lengths come back unchanged only as frame_stride*k+1.")
    max_frames: int | None = None
    fps_option: str | None = Field(None, description="Call option that must equal the encoded fps.")
    load: LoadQuirks = Field(default_factory=LoadQuirks)
    tiny: str | None = Field(None, description="Tiny random-weight stand-in (models/tiny*.py).")
    weights_gb: float = Field(gt=0, description="GB of weights in the family's dtype, all components: what one GPU must hold without offload.")
    cost: StepCost | None = Field(None, description="What a step costs, for `vipo-build plan`.")
    notes: str = ""

    @model_validator(mode="after")
    def _video_fields(self) -> Family:
        video = (self.frames, self.fps, self.frame_stride)
        if self.modality == "video" and None in video:
            raise ValueError(f"{self.name}: video families need frames, fps and frame_stride")
        if self.modality == "image" and video != (None, None, None):
            raise ValueError(f"{self.name}: image families take no frames, fps or frame_stride")
        return self


# Lookup --------------------------------------------------------------------------------


@cache
def families() -> dict[str, Family]:
    """Every registered family by name, in registry.yaml order."""
    data = yaml.safe_load(REGISTRY_FILE.read_text(encoding="utf-8"))["families"]
    return {name: Family(name=name, **entry) for name, entry in data.items()}


@cache
def engine_costs() -> dict[str, EngineCost]:
    """The cost figures of the vLLM engines the registry knows, by model."""
    data = yaml.safe_load(REGISTRY_FILE.read_text(encoding="utf-8"))["engines"]
    return {model: EngineCost(**entry) for model, entry in data.items()}


def get_family(name: str) -> Family:
    try:
        return families()[name]
    except KeyError:
        raise VipoError(f"unknown generator family {name!r} (known: {', '.join(families())})") from None


def resolve_family(model: str, family: str | None = None) -> Family | None:
    """The family a generator belongs to: the one it names, else the one whose hub id is its model."""
    if family is not None:
        return get_family(family)
    return next((f for f in families().values() if f.hub_id == model), None)


def generator_defaults(name: str) -> dict[str, Any]:
    """GeneratorConfig fields a family sets: model, modality, steps, guidance, dtype, call_options."""
    family = get_family(name)
    return {
        "model": family.hub_id,
        "modality": family.modality,
        "steps": family.steps,
        "guidance": family.guidance,
        "dtype": family.dtype,
        "call_options": dict(family.call_options),
    }


def apply_family_defaults(generator: dict[str, Any]) -> dict[str, Any]:
    """A raw generator mapping (as in the YAML) with its `family`'s defaults under its own keys.

    Keys the generator sets win; call_options merge key by key. Without `family`, it is returned as is.
    """
    if generator.get("family") is None:
        return generator
    defaults = generator_defaults(generator["family"])
    merged = {**defaults, **generator}
    merged["call_options"] = {**defaults["call_options"], **generator.get("call_options", {})}
    return merged


# Loading -------------------------------------------------------------------------------


def from_pretrained_options(family: Family | None, model: str, dtype: str) -> dict[str, Any]:
    """Keyword arguments of DiffusionPipeline.from_pretrained for this family and checkpoint."""
    import torch

    options: dict[str, Any] = {"torch_dtype": getattr(torch, dtype)}
    # Only the family's own repo is known to ship the variant files; copies and tiny models may not.
    if family is not None and family.load.variant and model == family.hub_id:
        options["variant"] = family.load.variant
    return options


def _missing_components(model: str, names: list[str]) -> list[str]:
    """Components listed as absent ([null, null]) or not at all in the checkpoint's model_index."""
    from diffusers import DiffusionPipeline

    index = DiffusionPipeline.load_config(model)
    return [n for n in names if not isinstance(index.get(n), list) or index[n][0] is None]


def _load_extra(component: ExtraComponent, source: str, dtype: str) -> Any:
    import torch
    import transformers

    cls = getattr(transformers, component.class_name)
    if isinstance(cls, type) and issubclass(cls, transformers.PreTrainedModel):
        return cls.from_pretrained(source, torch_dtype=getattr(torch, dtype))
    return cls.from_pretrained(source)


def load_pipeline(
    family: Family | None, model: str, dtype: str, device: str, sources: dict[str, str] | None = None
) -> DiffusionPipeline:
    """DiffusionPipeline.from_pretrained with the family's load quirks, on `device`, bars off.

    `sources` overrides where extra components come from (component name -> repo or directory).
    """
    import torch
    from diffusers import DiffusionPipeline

    quirks = family.load if family is not None else LoadQuirks()
    options = from_pretrained_options(family, model, dtype)
    if quirks.extra_components:
        for name in _missing_components(model, list(quirks.extra_components)):
            extra = quirks.extra_components[name]
            options[name] = _load_extra(extra, (sources or {}).get(name, extra.repo), dtype)
    pipeline = DiffusionPipeline.from_pretrained(model, **options)
    for name in quirks.float32_components:
        getattr(pipeline, name).to(torch.float32)
    pipeline.to(device)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


# Checks --------------------------------------------------------------------------------


def rendered_size(family: Family, width: int, height: int) -> Size:
    """The size the pipeline renders for a request: fixed-area families rescale it (as HiDream does)."""
    if family.fixed_area is None:
        return width, height
    scale = math.sqrt(family.fixed_area / (width * height))
    step = family.multiple_of
    return int(width * scale // step * step), int(height * scale // step * step)


def _sizes(sizes: tuple[Size, ...]) -> str:
    return ", ".join(f"{w}x{h}" for w, h in sizes)


def check_resolution(family: Family, width: int, height: int, strict: bool = False) -> list[str]:
    """Warnings for a requested size; VipoError where the pipeline would render another size or
    refuse it (and, when strict, for any size the family was not trained on)."""
    if width % family.multiple_of or height % family.multiple_of:
        raise VipoError(
            f"{width}x{height} is not a multiple of {family.multiple_of}, which {family.name} needs "
            "(its pipeline would resize or refuse it)"
        )
    rendered = rendered_size(family, width, height)
    if rendered != (width, height):
        raise VipoError(
            f"{family.name} renders {rendered[0]}x{rendered[1]} for {width}x{height} (it rescales every "
            f"size to {family.fixed_area:,} pixels); native: {_sizes(family.resolutions)}"
        )
    if (width, height) in family.resolutions:
        return []
    message = f"{width}x{height} is not a native size of {family.name} ({_sizes(family.resolutions)})"
    if strict:
        raise VipoError(message)
    if family.resolution_binning:
        message += "; it renders at the nearest bin and resizes"
    return [message]


def check_frames(family: Family, frames: int, fps: int, strict: bool = False) -> list[str]:
    """Warnings for a requested clip length and frame rate; VipoError for counts the pipeline
    would change or the model cannot take (and, when strict, for any non-native length or rate)."""
    stride = family.frame_stride
    if stride is None:
        raise ValueError(f"{family.name} is an image family")
    if (frames - 1) % stride:
        raise VipoError(f"{family.name} needs {stride}k+1 frames, not {frames} (its pipeline would change the count)")
    if family.max_frames is not None and frames > family.max_frames:
        raise VipoError(f"{frames} frames, more than {family.name} takes ({family.max_frames})")
    warnings = []
    if frames != family.frames:
        warnings.append(f"{frames} frames, {family.name} was trained on {family.frames}")
    if fps != family.fps:
        warnings.append(f"{fps} fps, {family.name} was trained on {family.fps} (motion plays at another speed)")
    if strict and warnings:
        raise VipoError("; ".join(warnings))
    return warnings


def check_generator(
    generator: GeneratorConfig,
    family: Family,
    image: ImageOutputConfig,
    video: VideoOutputConfig,
    strict: bool = False,
) -> list[str]:
    """Every check of one generator of a pipeline config against its family; messages start with
    the generator's name."""
    try:
        warnings = _generator_warnings(generator, family, image, video, strict)
    except VipoError as err:
        raise VipoError(f"generator {generator.name}: {err}") from None
    return [f"generator {generator.name}: {w}" for w in warnings]


def _generator_warnings(
    generator: GeneratorConfig, family: Family, image: ImageOutputConfig, video: VideoOutputConfig, strict: bool
) -> list[str]:
    if generator.modality != family.modality:
        raise VipoError(f"modality {generator.modality}, but {family.name} is {family.modality}")
    output = image if family.modality == "image" else video
    warnings = check_resolution(family, output.width, output.height, strict)
    if family.modality == "video":
        warnings += check_frames(family, video.frames, video.fps, strict)
        option = family.fps_option
        if option and generator.call_options.get(option) != video.fps:
            warnings.append(
                f"call_options.{option} is {generator.call_options.get(option)} but video.fps is {video.fps} "
                f"({family.name} takes the frame rate as an input)"
            )
    if family.guidance_mode == "true_cfg" and generator.guidance is not None:
        warnings.append(f"{family.name} ignores guidance (guidance_scale); set call_options.true_cfg_scale")
    return warnings


def check_pipeline(config: PipelineConfig, strict: bool = False) -> list[str]:
    """Checks of every generator whose family is known (by hub id); warnings, VipoError on rejects."""
    warnings = []
    for generator in config.generate.generators:
        family = resolve_family(generator.model, generator.family)
        if family is not None:
            warnings += check_generator(generator, family, config.generate.image, config.generate.video, strict)
    return warnings


# Listing -------------------------------------------------------------------------------


def guidance_label(family: Family) -> str:
    if family.guidance_mode == "true_cfg":
        return f"true CFG {family.call_options.get('true_cfg_scale', '-')}"
    return f"{family.guidance_mode} {family.guidance}"


def list_generators(modality: Modality | None = None) -> list[dict[str, str]]:
    """One row per family (all strings), for `vipo-build models list`."""
    rows = []
    for family in families().values():
        if modality is not None and family.modality != modality:
            continue
        first = family.resolutions[0]
        sizes = f"{first[0]}x{first[1]}" + (f" +{len(family.resolutions) - 1}" if len(family.resolutions) > 1 else "")
        clip = f"{family.frames} @ {family.fps} fps, {family.frame_stride}k+1" if family.modality == "video" else ""
        rows.append(
            {
                "family": family.name,
                "title": family.title,
                "modality": family.modality,
                "pipeline": family.pipeline,
                "hub_id": family.hub_id,
                "dtype": family.dtype,
                "steps": str(family.steps),
                "guidance": guidance_label(family),
                "sizes": f"{sizes} (/{family.multiple_of})",
                "clip": clip,
                "tiny": family.tiny or "",
            }
        )
    return rows


TABLE_COLUMNS = ("family", "pipeline", "hub_id", "dtype", "steps", "guidance", "sizes", "clip", "tiny")


def print_generators(console: Console | None = None, modality: Modality | None = None) -> None:
    """The registry as a rich table."""
    from rich.console import Console
    from rich.table import Table

    rows = list_generators(modality)
    table = Table(title=f"{len(rows)} generator families")
    for column in TABLE_COLUMNS:
        table.add_column(column, no_wrap=column in ("family", "hub_id"))
    for row in rows:
        table.add_row(*(row[column] for column in TABLE_COLUMNS))
    (console or Console()).print(table)
