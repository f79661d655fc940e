"""Prompt expansion: an instruction LLM (vLLM) turns seed subjects into detailed prompts, as JSON."""

from __future__ import annotations

import random
from dataclasses import dataclass

from vipo_build.config import PromptStageConfig
from vipo_build.prompts import subjects
from vipo_build.prompts.categories import Category
from vipo_build.prompts.facets import FacetValues, describe, draw_facets
from vipo_build.prompts.words import RenderText, draw_text
from vipo_build.runtime.stage import Stage
from vipo_build.runtime.vllm_engine import start_engine
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
    text: RenderText | None = None  # the words to render, for categories with `words`


def seed_subjects(category: Category, run_seed: int, unit: int, size: int) -> list[str]:
    """The library seed subject of each request of a unit, drawn in request order from (seed, category, unit)."""
    rng = random.Random(derive_seed(run_seed, "subjects", category.name, unit))
    return [rng.choice(category.seeds) for _ in range(size)]


def unit_requests(category: Category, run_seed: int, unit: int, size: int) -> list[ExpansionRequest]:
    """The fixed requests of one work unit: seed subjects, facets, texts and sampling seeds depend only on (seed, category, unit)."""
    return [
        ExpansionRequest(category.name, unit, i, subject, derive_seed(run_seed, "expand", category.name, unit, i),
                         draw_facets(category, run_seed, unit, i), draw_text(category, run_seed, unit, i))
        for i, subject in enumerate(seed_subjects(category, run_seed, unit, size))
    ]


def first_round_draws(category: Category, run_seed: int, units: int, size: int, subject_share: float | None = None) -> int:
    """Distinct (seed subject, facet values, text to render) among the requests of a round's first
    `units` units; a request the subject pass asks (at `subject_share`) counts as one of its own, and its
    facets and text are not drawn here (at a million pairs, most of the plan's time)."""
    draws, written = set(), 0
    for unit in range(units):
        for i, subject in enumerate(seed_subjects(category, run_seed, unit, size)):
            if subject_share and subjects.writes_subject(run_seed, category.name, unit, i, subject_share):
                written += 1
            else:
                draws.add((subject, draw_facets(category, run_seed, unit, i), draw_text(category, run_seed, unit, i)))
    return len(draws) + written


def conversation(category: Category, subject: str, facets: FacetValues = (), text: RenderText | None = None) -> list[dict]:
    medium = "text-to-image" if category.modality == "image" else "text-to-video"
    ask = "the prompt and the list of checkable constraints it contains"
    system = f"You write {medium} prompts. {category.expansion.instructions}"
    if facets:
        system += " Work every given facet into the prompt where it fits the seed; where they clash, the seed wins."
    if category.expansion.perturbation:
        system += f" Then write a perturbed copy of the prompt: {category.expansion.perturbation}"
        ask += ", the perturbed prompt and what the perturbation changed"
    if text:
        system += " Render the given text, in double quotes exactly as given, instead of any text the seed names."
    given = f"Seed subject: {subject}\n" + (f"Facets: {describe(facets)}\n" if facets else "")
    if text:
        given += f'Text to render: "{text.text}"\n'
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
        self.libraries: dict[str, subjects.SubjectLibrary] = {}  # by category, for the subject pass

    def setup(self) -> None:
        self.engine = start_engine(self.config.engine, self.seed, "prompts.engine")

    def process(self, batch: list[ExpansionWork]) -> list[list[dict | None]]:
        """Each unit's answers (None where one is not valid JSON), in request order; an answer's
        `subject` is the seed subject it was written from."""
        chosen = [subject for unit in self.seed_subjects(batch) for subject in unit]
        conversations, seeds, schemas = [], [], []
        for work in batch:
            schema = expansion_schema(self.config.max_chars, work.category.expansion.perturbation is not None)
            for r in work.requests:
                conversations.append(conversation(work.category, chosen[len(conversations)], r.facets, r.text))
                seeds.append(r.seed)
                schemas.append(schema)
        answers = self.engine.chat_json(conversations, seeds, schemas, self.config.temperature, self.config.max_tokens)
        answers = [None if a is None else a | {"subject": s} for a, s in zip(answers, chosen)]
        return split_by_unit(batch, answers)

    def seed_subjects(self, batch: list[ExpansionWork]) -> list[list[str]]:
        """Each request's seed subject: written by the subject pass where it draws one and it is new, else the library's."""
        chosen = [[r.seed_subject for r in work.requests] for work in batch]
        settings = self.config.subjects
        if settings is None:
            return chosen
        asked = [(u, i) for u, work in enumerate(batch) for i, r in enumerate(work.requests)
                 if subjects.writes_subject(self.seed, r.category, r.unit, r.index, settings.share)]
        requests = [batch[u].requests[i] for u, i in asked]
        conversations = [subjects.subject_conversation(batch[u].category, self.seed, r, settings.examples)
                         for (u, _), r in zip(asked, requests)]
        answers = self.engine.chat_json(conversations, [subjects.subject_seed(self.seed, r) for r in requests],
                                        subjects.subject_schema(settings.max_chars), self.config.temperature,
                                        settings.max_tokens) if asked else []
        written: dict[int, list[tuple[int, str | None]]] = {}  # unit in the batch -> (request, the LLM's subject)
        for (u, i), answer in zip(asked, answers):
            written.setdefault(u, []).append((i, (answer or {}).get("subject")))
        for u, found in written.items():
            category = batch[u].category
            if category.name not in self.libraries:
                self.libraries[category.name] = subjects.SubjectLibrary(category.seeds, settings.similarity, settings.max_chars)
            for (i, _), subject in zip(found, self.libraries[category.name].novel([s for _, s in found])):
                if subject is not None:
                    chosen[u][i] = subject
        return chosen


def split_by_unit(batch: list[ExpansionWork], answers: list) -> list[list]:
    out, start = [], 0
    for work in batch:
        out.append(answers[start : start + len(work.requests)])
        start += len(work.requests)
    return out
