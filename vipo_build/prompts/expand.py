"""Prompt expansion: an instruction LLM (vLLM) turns seed subjects into detailed prompts, as JSON."""

from __future__ import annotations

import random
import time
from collections import Counter
from dataclasses import dataclass

from vipo_build.config import PromptStageConfig
from vipo_build.prompts.categories import Category
from vipo_build.prompts.dedup import normalise
from vipo_build.prompts.filters import PromptFilters
from vipo_build.records import Prompt
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


def unit_requests(category: Category, run_seed: int, unit: int, size: int) -> list[ExpansionRequest]:
    """The fixed requests of one work unit: seed subjects and sampling seeds depend only on (seed, category, unit)."""
    rng = random.Random(derive_seed(run_seed, "subjects", category.name, unit))
    return [
        ExpansionRequest(category.name, unit, i, rng.choice(category.seeds), derive_seed(run_seed, "expand", category.name, unit, i))
        for i in range(size)
    ]


def conversation(category: Category, subject: str) -> list[dict]:
    medium = "text-to-image" if category.modality == "image" else "text-to-video"
    ask = "the prompt and the list of checkable constraints it contains"
    system = f"You write {medium} prompts. {category.expansion.instructions}"
    if category.expansion.perturbation:
        system += f" Then write a perturbed copy of the prompt: {category.expansion.perturbation}"
        ask += ", the perturbed prompt and what the perturbation changed"
    return [{"role": "system", "content": system}, {"role": "user", "content": f"Seed subject: {subject}\nAnswer in JSON: {ask}."}]


class PromptExpander:
    """Runs as a Ray actor (see runtime/pools.py)."""

    def __init__(self, stage: PromptStageConfig, seed: int):
        self.stage = stage
        self.engine = start_engine(stage.engine, seed, "prompts.engine")

    def expand(self, category: Category, requests: list[ExpansionRequest]) -> tuple[list[dict | None], float]:
        start = time.perf_counter()
        answers = chat_json(
            self.engine,
            [conversation(category, r.seed_subject) for r in requests],
            [r.seed for r in requests],
            expansion_schema(self.stage.max_chars, category.expansion.perturbation is not None),
            self.stage.temperature,
            self.stage.max_tokens,
        )
        return answers, time.perf_counter() - start


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
                id=f"{category.name}-u{request.unit:06d}-p{request.index:03d}",
                category=category.name,
                modality=category.modality,
                unit=request.unit,
                index=request.index,
                round=round_,
                seed_subject=request.seed_subject,
                text=text,
                constraints=constraints,
                perturbed_text=perturbed_text,
                perturbation=perturbation,
                expansion_model=model,
            )
        )
    return kept
