"""The judge registry: the VLMs a config's judge.engines can name, their vLLM settings, the prompt
protocol they are asked with and the pairwise accuracy on record, for `vipo-build models list --judges`.

The data lives in registry.yaml beside this module.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files
from typing import TYPE_CHECKING, Literal

import yaml
from pydantic import Field

from vipo_build.prompts.categories import Modality
from vipo_build.strict import FrozenModel

if TYPE_CHECKING:
    from rich.console import Console

REGISTRY_FILE = files("vipo_build.judge") / "registry.yaml"


class ServingSettings(FrozenModel):
    """What an EngineConfig of this model sets (judge.engines[].engine)."""

    dtype: str
    tensor_parallel_size: int = Field(ge=1)
    max_model_len: int = Field(ge=128, description="The longest context these settings serve (a config may ask for less).")


class VisionGrid(FrozenModel):
    """How the model's vision encoder turns pixels into tokens (vipo_build/judge/budget.py)."""

    patch: int = Field(28, ge=1, description="Pixels per visual token side (Qwen2-VL: 14 px patches merged 2 x 2).")
    temporal_patch: int = Field(1, ge=1, description="Frames folded into one visual token (Qwen2-VL: 2).")
    tokens_per_image: int | None = Field(None, ge=1, description="A fixed count per image whatever its size (LLaVA: 576).")
    min_pixels: int = Field(0, ge=0, description="The processor scales a smaller image or frame up to this area.")
    max_pixels: int | None = Field(None, ge=1, description="The processor scales a larger image or frame down to this area.")


class PublishedAccuracy(FrozenModel):
    benchmark: str = Field(description="e.g. GenAI-Bench image, with its tie convention.")
    accuracy: float = Field(ge=0, le=1)
    source: str = Field(description="Paper or model card, with its date.")


class JudgeModel(FrozenModel):
    name: str
    title: str
    hub_id: str
    inputs: tuple[Modality, ...] = Field(min_length=1, description="What the model family reads natively.")
    vllm: ServingSettings
    vision: VisionGrid = Field(description="The visual token grid, for the plan's request budget.")
    protocol: Literal["rubric"] = Field(description="rubric: vipo-build's per-category rubric, both orders, JSON schema.")
    published: tuple[PublishedAccuracy, ...] = Field(description="Figures on record with their source; empty: none recorded.")
    notes: str = ""


@cache
def judge_models() -> dict[str, JudgeModel]:
    """Every registered judge model by name, in registry.yaml order."""
    data = yaml.safe_load(REGISTRY_FILE.read_text(encoding="utf-8"))
    return {name: JudgeModel(name=name, **entry) for name, entry in data.items()}


def list_judges() -> list[dict[str, str]]:
    """One row per judge model (all strings), for `vipo-build models list --judges`."""
    return [
        {
            "judge": m.name,
            "hub_id": m.hub_id,
            "inputs": ", ".join(m.inputs),
            "vllm": f"{m.vllm.dtype}, tp {m.vllm.tensor_parallel_size}, {m.vllm.max_model_len} tokens",
            "protocol": m.protocol,
            "published accuracy": "; ".join(f"{p.benchmark} {p.accuracy:.1%} ({p.source})" for p in m.published)
            or "none recorded: measure with judge-eval",
        }
        for m in judge_models().values()
    ]


def print_judges(console: Console) -> None:
    from rich.table import Table

    rows = list_judges()
    table = Table(title=f"{len(rows)} judge models")
    for column in rows[0]:
        table.add_column(column, no_wrap=column in ("judge", "hub_id"))
    for row in rows:
        table.add_row(*row.values())
    console.print(table)
