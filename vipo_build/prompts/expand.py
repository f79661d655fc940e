"""Prompt expansion: an instruction LLM (vLLM) turns seed subjects into detailed prompts, as JSON."""

from __future__ import annotations

import random
from dataclasses import dataclass

from vipo_build.config import PromptStageConfig
from vipo_build.prompts.categories import Category
from vipo_build.prompts.facets import FacetValues, describe, draw_facets
from vipo_build.runtime.stage import Stage
from vipo_build.runtime.vllm_engine import chat_json, start_engine
from vipo_build.seeding import derive_seed


def expansion_schema(max_chars: int, perturbed: bool) -> dict:
    """The answer: the prompt and the checkable constraints it carries, and for categories with a
    controlled edit the edited prompt and what changed (bounded, so answers fit max_tokens)."""
    properties = {
        "prompt": {"type": "string", "maxLength": max_chars},
        "constraints": {"type": "array", "items": {"type": "string", "maxLength": max_chars // 5}, "maxItems": 4},
    }
    if perturbed:
        properties |= {"perturbed": {"type": "string", "maxLength": max_chars},
                       "perturbation": {"type": "string", "maxLength": max_chars // 5}}
    return {"type": "object", "properties": properties, "required": list(properties), "additionalProperties": False}


@dataclass(frozen=True)
class ExpansionRequest:
    category: str
    unit: int
    index: int
    seed_subject: str
    seed: int
    facets: FacetValues = ()


def unit_requests(category: Category, run_seed: int, unit: int, size: int) -> list[ExpansionRequest]:
    """The fixed requests of one work unit: seed subjects, facets and sampling seeds depend only on (seed, category, unit)."""
    rng = random.Random(derive_seed(run_seed, "subjects", category.name, unit))
    return [
        ExpansionRequest(category.name, unit, i, rng.choice(category.seeds), derive_seed(run_seed, "expand", category.name, unit, i),
                         draw_facets(category, run_seed, unit, i))
        for i in range(size)
    ]


def first_round_draws(category: Category, run_seed: int, units: int, size: int) -> int:
    """Distinct (seed subject, facet values) among the requests of a round's first `units` units."""
    return len({(r.seed_subject, r.facets) for unit in range(units) for r in unit_requests(category, run_seed, unit, size)})


def conversation(category: Category, subject: str, facets: FacetValues = ()) -> list[dict]:
    medium = "text-to-image" if category.modality == "image" else "text-to-video"
    ask = "the prompt and the list of checkable constraints it contains"
    system = f"You write {medium} prompts. {category.expansion.instructions}"
    if facets:
        system += " Work every given facet into the prompt where it fits the seed; where they clash, the seed wins."
    if category.expansion.perturbation:
        system += f" Then write a perturbed copy of the prompt: {category.expansion.perturbation}"
        ask += ", the perturbed prompt and what the perturbation changed"
    given = f"Seed subject: {subject}\n" + (f"Facets: {describe(facets)}\n" if facets else "")
    return [{"role": "system", "content": system}, {"role": "user", "content": f"{given}Answer in JSON: {ask}."}]


@dataclass(frozen=True)
class ExpansionWork:
    """One unit's expansion requests."""

    category: Category
    requests: list[ExpansionRequest]


class ExpandStage(Stage):
    """The prompt LLM: every request of a batch of units goes to the engine in one call."""

    name = "prompts"

    def __init__(self, stage: PromptStageConfig, seed: int):
        self.config, self.seed, self.resources = stage, seed, stage.pool

    def setup(self) -> None:
        self.engine = start_engine(self.config.engine, self.seed, "prompts.engine")

    def process(self, batch: list[ExpansionWork]) -> list[list[dict | None]]:
        """Each unit's answers (None where one is not valid JSON), in request order."""
        conversations, seeds, schemas = [], [], []
        for work in batch:
            schema = expansion_schema(self.config.max_chars, work.category.expansion.perturbation is not None)
            for r in work.requests:
                conversations.append(conversation(work.category, r.seed_subject, r.facets))
                seeds.append(r.seed)
                schemas.append(schema)
        answers = chat_json(self.engine, conversations, seeds, schemas, self.config.temperature, self.config.max_tokens)
        out, start = [], 0
        for work in batch:
            out.append(answers[start : start + len(work.requests)])
            start += len(work.requests)
        return out
