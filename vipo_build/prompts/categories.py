"""Categories are data: one YAML file per category, shipped in `vipo_build/categories/` (a config may name its own folder)."""

from __future__ import annotations

import math
from functools import cache
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field, ValidationError, model_validator

from vipo_build.errors import VipoError, read_utf8
from vipo_build.strict import FrozenModel

PACKAGED_CATEGORIES: Traversable = files("vipo_build") / "categories"

Modality = Literal["image", "video"]


class Dimension(FrozenModel):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$", description="Score key in the judge's answer.")
    description: str = Field(description="What a 5 and a 1 mean on this dimension.")


class Rubric(FrozenModel):
    criteria: list[str] = Field(min_length=1, description="Ordered criteria, most important first.")
    dimensions: list[Dimension] = Field(min_length=1, description="Dimensions the judge scores 1-5.")
    critical: list[str] = Field(
        default_factory=list, description="Dimensions the chosen candidate must not lose on."
    )

    @model_validator(mode="after")
    def _critical_are_dimensions(self) -> Rubric:
        names = {d.name for d in self.dimensions}
        unknown = [c for c in self.critical if c not in names]
        if unknown:
            raise ValueError(f"critical dimensions {unknown} are not among the dimensions {sorted(names)}")
        return self

    @property
    def dimension_names(self) -> list[str]:
        return [d.name for d in self.dimensions]


class Expansion(FrozenModel):
    instructions: str = Field(description="Instructions to the LLM that turns a seed subject into a prompt.")
    perturbation: str | None = Field(
        None,
        description="Instructions for a controlled edit of the prompt (swap a count, an attribute, a relation, a word "
        "to render). Set, the LLM also writes the edited prompt; the `perturbed` pair strategy makes a known loser from it.",
    )


class Facet(FrozenModel):
    values: dict[str, float] = Field(min_length=2, description="Each value and its relative weight (> 0).")

    @model_validator(mode="after")
    def _positive_weights(self) -> Facet:
        bad = [v for v, w in self.values.items() if not (math.isfinite(w) and w > 0)]
        if bad:
            raise ValueError(f"facet values {bad} need a finite weight above 0")
        return self


class Words(FrozenModel):
    """The text a request renders: drawn words, not the LLM's, so their spelling is known and edited by code."""

    vocabulary: dict[str, list[str]] = Field(description="Script -> words; in the category file, the name of a YAML file "
                                                         "beside it that holds them.")
    scripts: dict[str, float] = Field(min_length=1, description="Script (a key of the vocabulary) -> weight.")
    lengths: dict[int, float] = Field(min_length=1, description="Words per text -> weight.")
    cases: dict[Literal["upper", "title", "lower"], float] = Field(
        default_factory=lambda: {"upper": 1.0}, description="Letter case of the text -> weight.")

    @model_validator(mode="after")
    def _drawable(self) -> Words:
        unknown = [s for s in self.scripts if s not in self.vocabulary]
        if unknown:
            raise ValueError(f"words.scripts {unknown} are not in the vocabulary (scripts: {sorted(self.vocabulary)})")
        longest = max(self.lengths)
        short = [s for s in self.scripts if len(set(self.vocabulary[s])) < 2 * longest]
        if min(self.lengths) < 1 or short:
            raise ValueError(f"words.lengths must be at least 1 and each script needs twice the longest length in distinct "
                             f"words (too few: {short})")
        weights = [*self.scripts.values(), *self.lengths.values(), *self.cases.values()]
        if not all(math.isfinite(w) and w > 0 for w in weights):
            raise ValueError("words weights must be finite and above 0")
        return self


class Category(FrozenModel):
    name: str
    modality: Modality
    description: str
    default_share: float = Field(gt=0, le=1)
    expansion: Expansion
    rubric: Rubric
    seeds: list[str] = Field(min_length=50, description="Seed subjects the expansion starts from.")
    facets: dict[str, Facet] = Field(
        default_factory=dict,
        description="Named facets (setting, lighting, camera...); each request draws one value of each by weight, and "
        "the expansion works them into the prompt.",
    )
    words: Words | None = Field(None, description="Text to render drawn per request from a vocabulary; its perturbation "
                                                  "is an edit of those words (no expansion.perturbation needed).")

    @property
    def perturbable(self) -> bool:
        """Whether a prompt of the category has a controlled edit (a known loser) to pair against."""
        return self.expansion.perturbation is not None or self.words is not None


def category_folder(folder: str | None) -> Traversable:
    """A config's category folder: its own, or the one shipped in the package."""
    return PACKAGED_CATEGORIES if folder is None else Path(folder)


@cache
def read_category_files(name: str, directory: Traversable = PACKAGED_CATEGORIES) -> tuple[dict, tuple[str, ...]]:
    """A category file's data with its vocabulary read in, and the names (in the folder) of the files read."""
    path = directory / f"{name}.yaml"
    if not path.is_file():
        raise VipoError(f"unknown category {name!r} (known: {', '.join(known_categories(directory))})")
    read = [f"{name}.yaml"]
    try:
        data = yaml.safe_load(read_utf8(path))
        words = data.get("words") if isinstance(data, dict) else None
        if isinstance(words, dict) and isinstance(words.get("vocabulary"), str):
            vocabulary = directory / words["vocabulary"]
            if not vocabulary.is_file():
                raise VipoError(f"{path}: words.vocabulary: no file {vocabulary}")
            read.append(words["vocabulary"])
            words["vocabulary"] = yaml.safe_load(read_utf8(vocabulary))
    except yaml.YAMLError as err:
        raise VipoError(f"{path}: invalid category file: {' '.join(str(err).splitlines()[0:3])}") from None
    return data, tuple(read)


@cache
def load_category(name: str, directory: Traversable = PACKAGED_CATEGORIES) -> Category:
    data, _ = read_category_files(name, directory)
    try:
        return Category.model_validate(data)
    except ValidationError as err:
        raise VipoError(f"{directory / f'{name}.yaml'}: invalid category file: {' '.join(str(err).splitlines()[0:3])}") from None


def known_categories(directory: Traversable = PACKAGED_CATEGORIES) -> list[str]:
    return sorted(p.name.removesuffix(".yaml") for p in directory.iterdir() if p.is_file() and p.name.endswith(".yaml"))
