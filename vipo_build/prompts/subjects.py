"""The subject pass: before a unit is expanded, the prompt LLM writes new seed subjects for some of
its requests, each for the request's facet values, so a category of 200,000 pairs is not drawn
from its library of a few hundred seed subjects alone.

Which requests get a written subject, the library subjects shown as examples and the sampling
seed depend only on (seed, category, unit, index), so a unit's subjects are the same in every run
and are kept with its prompts in the prompt cache (a resumed run does not ask again). A written
subject that is too long or repeats the library or an earlier one of its unit (same words, or a word-set
Jaccard similarity at or above `similarity`) is not used: the request keeps its library subject.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TYPE_CHECKING

from vipo_build.prompts.categories import Category
from vipo_build.prompts.dedup import normalise
from vipo_build.prompts.facets import describe
from vipo_build.seeding import derive_seed

if TYPE_CHECKING:
    from vipo_build.prompts.expand import ExpansionRequest


def subject_schema(max_chars: int) -> dict:
    return {"type": "object", "properties": {"subject": {"type": "string", "maxLength": max_chars}},
            "required": ["subject"], "additionalProperties": False}


def writes_subject(run_seed: int, category: str, unit: int, index: int, share: float) -> bool:
    """Whether the subject pass writes the seed subject of request `index` of a category's unit."""
    return random.Random(derive_seed(run_seed, "writes-subject", category, unit, index)).random() < share


def subject_seed(run_seed: int, request: ExpansionRequest) -> int:
    return derive_seed(run_seed, "subject", request.category, request.unit, request.index)


def subject_conversation(category: Category, run_seed: int, request: ExpansionRequest, examples: int) -> list[dict]:
    """Ask for one new seed subject that fits the request's facets, shown `examples` library subjects."""
    rng = random.Random(derive_seed(run_seed, "subject-examples", request.category, request.unit, request.index))
    shown = rng.sample(category.seeds, min(examples, len(category.seeds)))
    medium = "text-to-image" if category.modality == "image" else "text-to-video"
    system = (f"You invent seed subjects for {medium} prompts. {category.description} A seed subject is one short "
              "phrase saying who or what is shown and what happens, like the examples. Write a new one, unlike every "
              "example, that fits the given facets.")
    given = "Examples:\n" + "".join(f"- {s}\n" for s in shown)
    if request.facets:
        given += f"Facets: {describe(request.facets)}\n"
    return [{"role": "system", "content": system}, {"role": "user", "content": f"{given}Answer in JSON: the new seed subject."}]


class SubjectLibrary:
    """A category's library subjects, as written subjects are checked against them."""

    def __init__(self, seeds: Sequence[str], similarity: float, max_chars: int):
        self.similarity, self.max_chars = similarity, max_chars
        self.word_sets = [frozenset(normalise(s).split()) for s in seeds]

    def novel(self, written: Sequence[str | None]) -> list[str | None]:
        """Each written subject (whitespace tidied), or None where there is none, it is longer than
        max_chars (a grammar's bound is not always exact) or it repeats the library or an earlier
        subject of the same list."""
        out: list[str | None] = []
        earlier: list[frozenset] = []
        for subject in written:
            text = " ".join(str(subject or "").split())
            key = normalise(text)
            words = frozenset(key.split())
            if not key or len(text) > self.max_chars or any(self.similar(words, other) for other in (*self.word_sets, *earlier)):
                out.append(None)
                continue
            earlier.append(words)
            out.append(text)
        return out

    def similar(self, a: frozenset, b: frozenset) -> bool:
        return len(a & b) >= self.similarity * len(a | b)
