"""The filter stage: an expanded unit's answers become the prompts that pass lint, safety and dedup.

It runs in the driver, one unit at a time in unit order: each category's dedup state is
sequential, so which duplicate survives never depends on scheduling or on how units are batched.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from vipo_build.config import PromptStageConfig
from vipo_build.prompts import words
from vipo_build.prompts.categories import Category
from vipo_build.prompts.dedup import normalise
from vipo_build.prompts.expand import ExpansionRequest
from vipo_build.prompts.filters import PromptFilters
from vipo_build.records import FacetValue, Prompt
from vipo_build.runtime.stage import Stage


def prompt_id(category: str, unit: int, index: int) -> str:
    """A prompt's id, which is also its pair's key in the shards."""
    return f"{category}-u{unit:06d}-p{index:03d}"


@dataclass(frozen=True)
class FilterWork:
    category: Category
    round: int
    requests: list[ExpansionRequest]
    answers: list[dict | None]


class FilterStage(Stage):
    name = "filter"
    resources = None  # in the driver

    def __init__(self, stage: PromptStageConfig, categories: list[str]):
        self.model = stage.engine.model
        self.filters = {name: PromptFilters(stage.filters) for name in categories}

    def process(self, batch: list[FilterWork]) -> list[tuple[list[Prompt], Counter]]:
        """Each unit's kept prompts and its drops by reason."""
        out = []
        for work in batch:
            drops: Counter = Counter()
            kept = accept(work.category, work.requests, work.answers, self.filters[work.category.name], work.round,
                          self.model, drops)
            out.append((kept, drops))
        return out

    def remember(self, category: str, prompts: list[Prompt]) -> None:
        """Prompts kept by an earlier run (read back from the cache): later units still dedup against them."""
        self.filters[category].remember([p.text for p in prompts])


def _perturbed(category: Category, answer: dict, text: str) -> tuple[str, str] | None:
    """The edited prompt and what changed, when the answer has a usable one (different from the prompt)."""
    edited = " ".join(str(answer.get("perturbed", "")).split())
    if not edited or normalise(edited) == normalise(text):
        return None
    return edited, " ".join(str(answer.get("perturbation", "")).split())


def accept(
    category: Category,
    requests: list[ExpansionRequest],
    answers: list[dict | None],
    filters: PromptFilters,
    round_: int,
    model: str,
    drops: Counter,
) -> list[Prompt]:
    """Prompts of a unit that pass the filters, in request order; the filters' dedup state and `drops` are updated.

    Units are accepted in unit order, so which duplicate survives never depends on scheduling.
    """
    usable = []
    for request, answer in zip(requests, answers):
        if answer is None or not isinstance(answer.get("prompt"), str):
            drops["malformed"] += 1
            continue
        text = " ".join(answer["prompt"].split())
        if request.text is not None:  # drawn words: carried verbatim, edited here
            text = words.carried(text, request.text.text)
            perturbed = words.perturbed(text, request.text, category.words, request.seed)
        else:
            perturbed = _perturbed(category, answer, text) if category.expansion.perturbation else None
            if category.expansion.perturbation and perturbed is None:
                drops["no_perturbation"] += 1
                continue
        usable.append((request, answer, text, perturbed or (None, None)))
    keep = filters.filter([text for _, _, text, _ in usable], drops)
    kept = []
    for (request, answer, text, (perturbed_text, perturbation)), passed in zip(usable, keep):
        if not passed:
            continue
        constraints = [c for c in answer.get("constraints", []) if isinstance(c, str)]
        kept.append(
            Prompt(
                id=prompt_id(category.name, request.unit, request.index),
                category=category.name,
                modality=category.modality,
                unit=request.unit,
                index=request.index,
                round=round_,
                seed_subject=answer["subject"],
                facets=[FacetValue(facet=name, value=value) for name, value in request.facets],
                text=text,
                rendered_text=request.text.text if request.text else None,
                constraints=constraints,
                perturbed_text=perturbed_text,
                perturbation=perturbation,
                expansion_model=model,
            )
        )
    return kept
