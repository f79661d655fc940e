"""The pipeline configuration: pydantic models of a pipeline YAML, and its loader.

Every field is documented (the docs land in `schemas/pipeline.schema.json`); unknown keys are
rejected; errors name the file and the YAML path, e.g. `pipelines/x.yaml: judge.votes: must be >= 1`.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_core import to_jsonable_python

from vipo_build.errors import VipoError, read_utf8
from vipo_build.prompts.categories import Category, Modality, category_folder, known_categories, load_category
from vipo_build.prompts.filter_config import PromptFilterConfig
from vipo_build.runtime.endpoint import EndpointConfig
from vipo_build.strict import RUNTIME_ONLY, StrictModel

PairStrategy = Literal["cross_model", "cross_seed", "perturbed"]
ImageFormat = Literal["jpg", "png", "webp"]


def unique_names(kind: str, items: list) -> list:
    """A validator's check that the items' names (cache files and pools are named after them) are distinct."""
    names = [item.name for item in items]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"{kind} names must be unique, repeated: {', '.join(dupes)}")
    return items


def check_facet_shares(name: str, category: Category, shares: dict[str, dict[str, float]]) -> None:
    """Facet shares name the category file's facets and values, each in [0, 1], adding up to at most 1 per facet."""
    for facet, values in shares.items():
        if facet not in category.facets:
            raise ValueError(f"categories.{name}.facet_shares: unknown facet {facet!r} (facets of {name}: "
                             f"{', '.join(sorted(category.facets)) or 'none'})")
        known = category.facets[facet].values
        for value, share in values.items():
            if value not in known:
                raise ValueError(f"categories.{name}.facet_shares.{facet}: unknown value {value!r} (values: {', '.join(known)})")
            if not 0 <= share <= 1:
                raise ValueError(f"categories.{name}.facet_shares.{facet}.{value}: share {share} is not between 0 and 1")
        if sum(values.values()) > 1 + 1e-9:
            raise ValueError(f"categories.{name}.facet_shares.{facet}: shares add up to {sum(values.values()):g}, more than 1")


class PoolConfig(StrictModel):
    """A Ray actor pool: the model is loaded once per actor."""

    actors: int = Field(1, ge=1, description="Number of actors (model replicas) in the pool.")
    num_gpus: float = Field(0, ge=0, description="GPUs reserved per actor (0 on CPU machines).")
    num_cpus: float = Field(1, ge=0, description="CPUs reserved per actor.")
    max_restarts: int = Field(3, ge=0, description="Times Ray restarts a dead actor (and retries its call) before the call counts as failed.")
    units_per_call: int = Field(1, ge=1, description="Work units sent to an actor in one call: an engine sees all their requests at once.")
    calls_in_flight: int = Field(2, ge=1, description="Calls queued on each actor, so it starts the next as soon as one ends.")
    retries: int = Field(2, ge=0, description="Times a call that raised or timed out is retried (on a fresh actor, one unit per call) "
                                              "before its units are recorded as failed.")
    call_timeout_s: float | None = Field(None, gt=0, description="Seconds a call may run before its actor is replaced and the call retried; default: no limit.")


class EngineConfig(StrictModel):
    """A vLLM engine (`vllm.LLM`) serving a model."""

    model: str = Field(description="Hub id (org/name) or local directory (absolute, or relative to the config file).")
    load_format: str = Field("auto", description='vLLM load format; "dummy" gives random weights without reading a checkpoint.')
    dtype: str = Field("auto", description="Weights dtype, e.g. bfloat16.")
    max_model_len: int | None = Field(None, ge=128, description="Context length; defaults to the model's.")
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1, description="Share of accelerator memory (of RAM on CPU) for weights and KV cache.")
    tensor_parallel_size: int = Field(1, ge=1, description="GPUs one engine spans.")
    enforce_eager: bool = Field(False, description="Skip CUDA graph capture (faster start, slower decode).")
    gpu_seconds_per_request: float | None = Field(
        None, gt=0, json_schema_extra=RUNTIME_ONLY, description="GPU-seconds one request takes at full concurrency, for `vipo-build plan`; default: the "
        "registry's figure for the model.")
    options: dict[str, Any] = Field(default_factory=dict, description="Further keyword arguments for vllm.LLM, passed as-is.")
    endpoint: EndpointConfig | None = Field(
        None, description="Ask an OpenAI-compatible server (e.g. `vllm serve`) instead of loading the model in the stage's "
        "actors; `model` then only names it in the records. The actors need no GPU (pool.num_gpus: 0).")


class CategoryConfig(StrictModel):
    """How many pairs of one category the dataset holds."""

    pairs: int | None = Field(None, ge=1, description="Kept pairs of this category; default: total_pairs times share.")
    share: float | None = Field(None, gt=0, le=1, description="Share of total_pairs; default: the category file's default_share.")
    pair_strategies: dict[PairStrategy, float] | None = Field(
        None, description="Mix of pair strategies for this category; default: generate.pair_strategies."
    )
    facet_shares: dict[str, dict[str, float]] = Field(
        default_factory=dict,
        description="Least share of the category's kept pairs per facet value (facet -> value -> share), held in every "
        "shard (within one pair) and overall: a kept pair that would leave a shard too few slots for the values still "
        "short is left out of the dataset (dropped as facet_share).",
    )


class SubjectPassConfig(StrictModel):
    """The subject pass: the prompt LLM first writes new seed subjects for some requests, for their facet values."""

    share: float = Field(gt=0, le=1, description="Share of requests whose seed subject the LLM writes (drawn per request); "
                                                 "the others, and those whose written subject repeats, keep a library subject.")
    examples: int = Field(3, ge=1, le=20, description="Library subjects shown to the LLM as examples.")
    similarity: float = Field(0.6, gt=0, le=1, description="Word-set Jaccard similarity to a library subject, or an earlier one "
                                                           "of the unit, at which a written subject counts as a repeat.")
    max_chars: int = Field(120, ge=16, description="Longest subject the LLM may write (a JSON-schema bound).")
    max_tokens: int = Field(64, ge=8, description="Token limit of one subject answer.")


class PromptStageConfig(StrictModel):
    """Prompt expansion: an instruction LLM turns seed subjects into detailed prompts."""

    engine: EngineConfig
    pool: PoolConfig = Field(default_factory=PoolConfig, json_schema_extra=RUNTIME_ONLY)
    subjects: SubjectPassConfig | None = Field(None, description="Write new seed subjects first (off: library subjects only).")
    overgen: float = Field(1.5, ge=1, description="Prompts expanded per planned pair in the first round.")
    max_rounds: int = Field(5, ge=1, description="Expansion rounds before a category that misses its quota fails the run.")
    temperature: float = Field(1.0, ge=0, description="Sampling temperature of the expansion LLM.")
    max_tokens: int = Field(400, ge=8, description="Token limit of one expansion answer (leave room for max_chars).")
    max_chars: int = Field(600, ge=16, description="Longest prompt the LLM may write (a JSON-schema bound).")
    filters: PromptFilterConfig = Field(default_factory=PromptFilterConfig,
                                        description="Checks an expanded prompt must pass to be kept (lint, safety, dedup).")


class GeneratorConfig(StrictModel):
    """One generator: a diffusers pipeline and its sampling settings."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", description="Name recorded with every candidate.")
    family: str | None = Field(None, description="Registered family (`vipo-build models list`): fills model, steps, "
                                                 "guidance, dtype and call_options; keys set here win.")
    model: str = Field(description="Hub id (org/name) or local directory (absolute, or relative to the config file).")
    modality: Modality
    steps: int = Field(28, ge=1, description="Denoising steps.")
    guidance: float | None = Field(None, ge=0, description="Guidance scale; default: the pipeline's.")
    dtype: Literal["float32", "bfloat16", "float16"] = Field("bfloat16", description="Weights dtype.")
    batch_size: int = Field(4, ge=1, description="Prompts per pipeline call.")
    call_options: dict[str, Any] = Field(default_factory=dict, description="Further keyword arguments for the pipeline call, passed as-is.")
    compile: bool = Field(False, json_schema_extra=RUNTIME_ONLY, description="torch.compile the denoiser (transformer or UNet): slower start, faster steps.")
    cpu_offload: bool = Field(False, json_schema_extra=RUNTIME_ONLY, description="Keep idle components in CPU memory (diffusers model CPU offload), for GPUs too small for the whole pipeline.")
    first_block_cache: float | None = Field(
        None, gt=0, lt=1, description="diffusers' first-block cache at this threshold: a step whose first denoiser block "
        "output changed less than this reuses the rest of the last step's (fewer full passes; the pixels change, so it "
        "counts in the drift check). Denoisers with diffusers' cache support only.")
    fp8_weights: bool = Field(
        False, description="Store the denoiser's weights in float8 (diffusers' layerwise casting), computing in `dtype`: "
        "about half its memory, a little slower per step; the pixels change, so it counts in the drift check.")
    gpu_seconds_per_candidate: float | None = Field(
        None, gt=0, json_schema_extra=RUNTIME_ONLY, description="GPU-seconds one candidate takes, for `vipo-build plan`; default: the registry's cost "
        "figure scaled to this size, frames and steps.")
    pool: PoolConfig = Field(default_factory=PoolConfig, json_schema_extra=RUNTIME_ONLY)

    @model_validator(mode="before")
    @classmethod
    def _family_defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict) or data.get("family") is None:
            return data
        from vipo_build.generate.registry import apply_family_defaults  # the registry imports this module

        return apply_family_defaults(data)


class ImageOutputConfig(StrictModel):
    width: int = Field(1024, ge=16, multiple_of=16)
    height: int = Field(1024, ge=16, multiple_of=16)
    format: ImageFormat = "jpg"
    quality: int = Field(95, ge=1, le=100, description="JPEG/WebP quality.")


class VideoOutputConfig(StrictModel):
    width: int = Field(1280, ge=16, multiple_of=16)
    height: int = Field(720, ge=16, multiple_of=16)
    frames: int = Field(81, ge=1, description="Frames per clip (Wan wants 4k+1).")
    fps: int = Field(16, ge=1)
    min_motion: float = Field(
        0.01, ge=0, description="Least mean optical flow of a clip, in frame widths per second (0.1: the content moves a "
        "tenth of the frame's width each second); a clip below it is a static_clip defect, its pair dropped unjudged. "
        "0 turns the check off.")


class GenerateStageConfig(StrictModel):
    """Candidate generation."""

    unit_size: int = Field(16, ge=1, description="Prompts per work unit (generated and judged as one batch).")
    pair_strategies: dict[PairStrategy, float] = Field(
        default_factory=lambda: {"cross_model": 1.0}, description="Default mix of pair strategies (weights)."
    )
    image: ImageOutputConfig = Field(default_factory=ImageOutputConfig)
    video: VideoOutputConfig = Field(default_factory=VideoOutputConfig)
    generators: list[GeneratorConfig] = Field(min_length=1)

    @field_validator("generators")
    @classmethod
    def _unique_names(cls, generators: list[GeneratorConfig]) -> list[GeneratorConfig]:
        return unique_names("generator", generators)


class JudgeEngineConfig(StrictModel):
    """One judge of the panel: a VLM served by vLLM in its own actor pool."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]*$", description="Names its votes, its cache files and its pool (judge:{name}).")
    engine: EngineConfig
    pool: PoolConfig = Field(default_factory=PoolConfig, json_schema_extra=RUNTIME_ONLY)
    modalities: list[Modality] = Field(["image", "video"], min_length=1,
                                       description="The categories' modalities this judge judges (a panel of the judges "
                                                   "of each pair's modality gives its verdict).")
    video_input: Literal["native", "contact_sheet"] | None = Field(
        None, description="How this judge sees a clip: native (sampled frames sent as video, for model families that read "
        "video) or contact_sheet (frames tiled into one image). Default: native when the judge registry lists video "
        "among the model's inputs, or a local model's config.json names a video-reading family (Qwen2-VL, Qwen2.5-VL, "
        "Qwen3-VL); else contact_sheet.")


PanelRule = Literal["all_agree", "pooled"]


class JudgeStageConfig(StrictModel):
    """Pairwise judging by one or more VLMs, each with the same protocol: both orders, k votes per order."""

    engines: list[JudgeEngineConfig] = Field(min_length=1, description="The judges; each judges every pair in its own pool.")
    combine: PanelRule = Field(
        "all_agree", description="How several judges' votes make one verdict. all_agree: kept only if every judge keeps "
        "the pair with the same winner (else the first dropping judge's reason, or judges_disagree); pooled: the keep "
        "rules applied to all judges' votes together. One judge: its verdict as it is.")
    votes: int = Field(3, ge=1, description="Votes per order (distinct seeds); 2 x votes answers per pair.")
    threshold: float = Field(0.75, gt=0.5, le=1, description="Least share of all votes the winner needs for the pair to be kept.")
    temperature: float = Field(1.0, ge=0, description="Sampling temperature of the judge.")
    max_tokens: int = Field(256, ge=16, description="Token limit of one answer (leave room for reason_chars).")
    reason_chars: int = Field(200, ge=0, description="Longest reason the judge may give; 0 asks for none.")
    image_size: int = Field(448, ge=16, description="Longest side of the images the judge sees.")
    video_frames: int = Field(8, ge=1, description="Frames sampled uniformly from a clip, shown as one contact sheet "
                                                   "(judges that see clips as contact sheets).")
    video_fps: float = Field(2.0, gt=0, description="Frames per second of clip sampled for judges that read video natively.")
    video_max_frames: int = Field(16, ge=2, description="Most frames sampled from one clip for a native video judge.")
    video_size: int = Field(448, ge=28, description="Longest side of the frames a native video judge sees.")

    @field_validator("engines")
    @classmethod
    def _unique_judges(cls, engines: list[JudgeEngineConfig]) -> list[JudgeEngineConfig]:
        return unique_names("judge", engines)

    def judges_for(self, modality: str) -> list[JudgeEngineConfig]:
        """The judges of a modality's pairs, in config order."""
        return [e for e in self.engines if modality in e.modalities]


class ShardConfig(StrictModel):
    name: str = Field("vipo", pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]*$", description="Shard file prefix.")
    pairs_per_shard: int = Field(1000, ge=1)
    pool: PoolConfig = Field(default_factory=lambda: PoolConfig(num_cpus=0.5),
                             json_schema_extra=RUNTIME_ONLY, description="Shard writers (CPU actors reading the unit caches).")


class RayConfig(StrictModel):
    address: str | None = Field(None, description="Cluster address; default: $RAY_ADDRESS, else a local Ray.")
    num_cpus: int | None = Field(None, ge=1, description="CPUs of a local Ray (default: all).")
    object_store_mb: int | None = Field(None, ge=78, description="Object store size of a local Ray.")
    max_units_in_flight: int | None = Field(
        None, ge=1, description="Work units between expansion and judging at once (backpressure); default: twice the calls "
        "all generator and judge actors can hold.")
    gpu_memory_gb: float | None = Field(None, gt=0, description="Memory of one cluster GPU, for the preflight's check of "
                                                                "model sizes; default: what the driver's own GPU has, if any.")
    cluster_gpus: int | None = Field(None, ge=1, description="GPUs of the cluster the pools are sized for: what "
                                                             "`vipo-build plan` balances them on by default.")
    cluster_cpus: int | None = Field(None, ge=1, description="CPUs of that cluster.")


class AuditConfig(StrictModel):
    """Floors on the judge's quality over every judged pair and on the prompts' diversity: `vipo-build audit`
    exits 1 naming each category beyond one."""

    min_order_consistency: float | None = Field(None, ge=0, le=1, description="Least share of decided pairs whose winner does not depend on presentation order.")
    min_kappa: float | None = Field(None, ge=-1, le=1, description="Least Fleiss' kappa over the judge's votes.")
    diversity_sample: int = Field(2000, ge=2, le=100_000, description="Prompts per category the diversity figures are computed on "
                                                                       "(they depend on it: compare runs at the same size).")
    encoder: str | None = Field(None, description="Local sentence-transformers model directory (absolute) for the embedding "
                                                  "diversity figures; default: prompts.filters.embedding.model.")
    min_distinct_2: float | None = Field(None, ge=0, le=1, description="Least share of distinct word bigrams in a category's sampled prompts.")
    max_near_duplicate_rate: float | None = Field(None, ge=0, le=1, description="Most share of near-duplicates among a category's sampled prompts.")
    max_mean_similarity: float | None = Field(None, ge=-1, le=1, description="Most mean cosine similarity of a category's sampled prompts' embeddings.")


class PipelineConfig(StrictModel):
    """A vipo-build pipeline."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
    seed: int = Field(0, ge=0, description="Seed of every random choice; same config and seed give the same dataset.")
    output: str = Field(json_schema_extra=RUNTIME_ONLY, description="Dataset root: a local path (relative to the config file) or any fsspec URL.")
    total_pairs: int | None = Field(None, ge=1, description="Total kept pairs, split by category shares.")
    category_dir: str | None = Field(
        None, json_schema_extra=RUNTIME_ONLY,  # where the files are does not change the output; their bytes are hashed
        description="Folder of category files and the vocabularies they name, relative to the config file (and readable "
                    "on every node, like local model paths); default: the category files shipped with vipo-build.")
    categories: dict[str, CategoryConfig] = Field(min_length=1, description="Categories (files in the category folder) and quotas.")
    prompts: PromptStageConfig
    generate: GenerateStageConfig
    judge: JudgeStageConfig
    shards: ShardConfig = Field(default_factory=ShardConfig)
    ray: RayConfig = Field(default_factory=RayConfig, json_schema_extra=RUNTIME_ONLY)
    audit: AuditConfig = Field(default_factory=AuditConfig, json_schema_extra=RUNTIME_ONLY)

    @field_validator("category_dir")
    @classmethod
    def _category_dir_exists(cls, folder: str | None) -> str | None:
        if folder is not None and not Path(folder).is_dir():
            raise ValueError(f"no folder {folder}")
        return folder

    @field_validator("categories")
    @classmethod
    def _known_categories(cls, categories: dict[str, CategoryConfig], info: ValidationInfo) -> dict[str, CategoryConfig]:
        if "category_dir" not in info.data:  # the folder itself was refused: that is the error to show
            return categories
        known = known_categories(category_folder(info.data["category_dir"]))
        for name in categories:
            if name not in known:
                raise ValueError(f"unknown category {name!r} (known: {', '.join(known)})")
        return categories

    @model_validator(mode="after")
    def _quotas_resolvable(self) -> PipelineConfig:
        shared = [n for n, c in self.categories.items() if c.pairs is None]
        fixed = sum(c.pairs for c in self.categories.values() if c.pairs is not None)
        if self.total_pairs is None and shared:
            raise ValueError(f"categories {shared} have no pairs and total_pairs is not set")
        if self.total_pairs is not None and (fixed > self.total_pairs or (not shared and fixed != self.total_pairs)):
            raise ValueError(f"total_pairs is {self.total_pairs} but the categories' fixed pairs add up to {fixed}")
        modalities = {g.modality for g in self.generate.generators}
        for name in self.categories:
            category = self.category(name)
            if category.modality not in modalities:
                raise ValueError(f"category {name!r} needs a {category.modality} generator, none is configured")
            if not self.judge.judges_for(category.modality):
                raise ValueError(f"category {name!r} needs a judge of {category.modality} pairs, none lists it in "
                                 "judge.engines[].modalities")
            strategies = self.strategies_for(name)
            same_modality = [g for g in self.generate.generators if g.modality == category.modality]
            if strategies.get("cross_model", 0) > 0 and len(same_modality) < 2:
                raise ValueError(
                    f"category {name!r} uses cross_model pairs but only {len(same_modality)} "
                    f"{category.modality} generator is configured"
                )
            if strategies.get("perturbed", 0) > 0 and not category.perturbable:
                raise ValueError(f"category {name!r} uses perturbed pairs but its category file sets neither "
                                 "expansion.perturbation nor words")
            check_facet_shares(name, category, self.categories[name].facet_shares)
        return self

    # Derived views -----------------------------------------------------------------------

    def category(self, name: str) -> Category:
        return load_category(name, category_folder(self.category_dir))

    def strategies_for(self, category: str) -> dict[str, float]:
        mix = self.categories[category].pair_strategies or self.generate.pair_strategies
        return {k: v for k, v in mix.items() if v > 0}

    def first_round_units(self, quota: int) -> int:
        """Work units the first expansion round of a category with this quota asks for."""
        return math.ceil(quota * self.prompts.overgen / self.generate.unit_size)

    def quotas(self) -> dict[str, int]:
        """Kept pairs per category; shares of total_pairs split by largest remainder so they sum exactly."""
        fixed = {n: c.pairs for n, c in self.categories.items() if c.pairs is not None}
        shared = {n: (c.share or self.category(n).default_share) for n, c in self.categories.items() if c.pairs is None}
        if not shared:
            return fixed
        rest = (self.total_pairs or 0) - sum(fixed.values())
        weight = sum(shared.values())
        exact = {n: rest * s / weight for n, s in shared.items()}
        floors = {n: math.floor(x) for n, x in exact.items()}
        leftover = rest - sum(floors.values())
        for n in sorted(exact, key=lambda n: (floors[n] - exact[n], n))[:leftover]:
            floors[n] += 1
        return {n: fixed.get(n, floors.get(n)) for n in self.categories}

    def judges_at_work(self, categories: Iterable[str] | None = None) -> list[tuple[int, JudgeEngineConfig]]:
        """The judges (with their index in judge.engines) of at least one of `categories` (default: the config's): a
        judge of modalities none of them has never starts its pool, so it asks for no resources and costs nothing."""
        names = {e.name for m in self._modalities(categories) for e in self.judge.judges_for(m)}
        return [(i, e) for i, e in enumerate(self.judge.engines) if e.name in names]

    def combines_judges(self, categories: Iterable[str] | None = None) -> bool:
        """Whether some of `categories` (default: the config's) has its pairs judged by several judges, whose
        verdicts judge.combine then combines."""
        return any(len(self.judge.judges_for(m)) > 1 for m in self._modalities(categories))

    def _modalities(self, categories: Iterable[str] | None) -> set[str]:
        return {self.category(name).modality for name in (self.categories if categories is None else categories)}

    def generators_for(self, modality: str) -> list[GeneratorConfig]:
        return [g for g in self.generate.generators if g.modality == modality]

    def output_for(self, modality: str) -> ImageOutputConfig | VideoOutputConfig:
        return self.generate.image if modality == "image" else self.generate.video

    def model_pools(self) -> dict[str, PoolConfig]:
        """The pools that run a model, by the stage names runs report them under."""
        return {"prompts": self.prompts.pool, **{f"generate:{g.name}": g.pool for g in self.generate.generators},
                **{f"judge:{e.name}": e.pool for e in self.judge.engines}}

    def output_hash(self) -> str:
        """Hash of every field that changes the dataset's bytes (pool sizes and Ray settings do not)."""
        return hashlib.sha256(json.dumps(output_fields(self), sort_keys=True).encode()).hexdigest()[:16]


def output_fields(config: PipelineConfig) -> dict[str, Any]:
    """The config as a flat {dotted.path: value} dict without its runtime-only fields (marked
    RUNTIME_ONLY where they are declared; free-form dicts such as `options` are kept whole)."""
    flat: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, BaseModel):
            for name, info in type(value).model_fields.items():
                if info.json_schema_extra != RUNTIME_ONLY:
                    walk(f"{prefix}.{name}" if prefix else name, getattr(value, name))
        elif isinstance(value, dict):
            for key, sub in value.items():
                walk(f"{prefix}.{key}", sub)
        elif isinstance(value, list) and value and isinstance(value[0], (dict, BaseModel)):
            for i, sub in enumerate(value):
                walk(f"{prefix}[{i}]", sub)
        else:
            flat[prefix] = to_jsonable_python(value)

    walk("", config)
    return flat


# Loading -------------------------------------------------------------------------------

_MESSAGES = {
    "extra_forbidden": lambda e: "unknown key",
    "missing": lambda e: "required field is missing",
    "greater_than_equal": lambda e: f"must be >= {e['ctx']['ge']}",
    "greater_than": lambda e: f"must be > {e['ctx']['gt']}",
    "less_than_equal": lambda e: f"must be <= {e['ctx']['le']}",
    "less_than": lambda e: f"must be < {e['ctx']['lt']}",
    "literal_error": lambda e: f"must be one of {e['ctx']['expected']}",
    "multiple_of": lambda e: f"must be a multiple of {e['ctx']['multiple_of']}",
    "too_short": lambda e: f"must have at least {e['ctx']['min_length']} item(s)",
}


def _format_error(error: dict[str, Any]) -> str:
    path = ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in error["loc"]).replace(".[", "[")
    render = _MESSAGES.get(error["type"])
    message = render(error) if render else error["msg"].removeprefix("Value error, ")
    return f"{path}: {message}" if path else message


def load_config(path: str | Path) -> tuple[PipelineConfig, Path]:
    """Read and validate a pipeline YAML; returns the config and the file's directory.

    Raises VipoError with one line: `FILE: yaml.path: what is wrong`.
    """
    path = Path(path)
    if not path.is_file():
        raise VipoError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(read_utf8(path))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise VipoError(f"{path}: {where}bad YAML: {problem}") from None
    if not isinstance(data, dict):
        raise VipoError(f"{path}: bad YAML: expected a mapping at the top level")
    if isinstance(data.get("category_dir"), str):
        data["category_dir"] = str((path.resolve().parent / Path(data["category_dir"]).expanduser()).resolve())
    try:
        config = PipelineConfig.model_validate(data)
    except ValidationError as err:
        raise VipoError(f"{path}: {_format_error(err.errors()[0])}") from None
    return config, path.resolve().parent


def resolve_model(model: str, base: Path) -> str:
    """A local model path made absolute (relative paths are relative to the config file), or a hub id as-is."""
    if model.startswith(("/", "./", "../", "~")):
        return str((base / Path(model).expanduser()).resolve())
    return model


def is_local_model(model: str) -> bool:
    return model.startswith("/")
