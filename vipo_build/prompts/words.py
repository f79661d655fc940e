"""Text to render, for categories with `words`: drawn from a vocabulary by script, length and letter
case from (seed, category, unit, index), always carried verbatim by the prompt, and perturbed by an
edit of those words made here (a known loser whose difference is exactly one edit)."""

from __future__ import annotations

import random
from dataclasses import dataclass

from vipo_build.prompts.categories import Category, Words
from vipo_build.seeding import derive_seed

EDITS = ("swap_letters", "replace_letter", "drop_letter", "replace_word")


@dataclass(frozen=True)
class RenderText:
    text: str
    script: str


def draw_text(category: Category, run_seed: int, unit: int, index: int) -> RenderText | None:
    words = category.words
    if words is None:
        return None
    rng = random.Random(derive_seed(run_seed, "text", category.name, unit, index))
    script = _weighted(rng, words.scripts)
    length = _weighted(rng, words.lengths)
    case = _weighted(rng, words.cases)
    chosen = rng.sample(sorted(set(words.vocabulary[script])), length)
    return RenderText(" ".join(_cased(w, case) for w in chosen), script)


def carried(prompt: str, text: str) -> str:
    """The prompt with the text in double quotes: as written, or added at the end where the LLM left it out."""
    return prompt if f'"{text}"' in prompt else f'{prompt} The text reads "{text}".'


def perturbed(prompt: str, render: RenderText, words: Words, seed: int) -> tuple[str, str]:
    """The prompt with its quoted text edited once, and what the edit was."""
    edited, edit = edit_text(render, words, random.Random(seed))
    return prompt.replace(f'"{render.text}"', f'"{edited}"'), f'{edit}: "{render.text}" -> "{edited}"'


def edit_text(render: RenderText, words: Words, rng: random.Random) -> tuple[str, str]:
    """One edit that changes the text: two neighbouring letters swapped, a letter replaced by another
    of its script, a letter dropped, or a word replaced by another of the vocabulary."""
    tokens = render.text.split(" ")
    alphabet = sorted({c.lower() for w in words.vocabulary[render.script] for c in w if c.isalpha()})
    for edit in rng.sample(EDITS, len(EDITS)):
        i = rng.randrange(len(tokens))
        word = tokens[i]
        if edit == "swap_letters":
            spots = [j for j in range(len(word) - 1) if word[j] != word[j + 1]]
            if not spots:
                continue
            j = rng.choice(spots)
            new = word[:j] + word[j + 1] + word[j] + word[j + 2 :]
        elif edit == "replace_letter":
            j = rng.randrange(len(word))
            letter = rng.choice([c for c in alphabet if c != word[j].lower()])
            new = word[:j] + (letter.upper() if word[j].isupper() else letter) + word[j + 1 :]
        elif edit == "drop_letter":
            if len(word) < 3:
                continue
            j = rng.randrange(len(word))
            new = word[:j] + word[j + 1 :]
        else:
            others = sorted({w.lower() for w in words.vocabulary[render.script]} - {t.lower() for t in tokens})
            new = _like(rng.choice(others), word)
        if new != word:
            return " ".join([*tokens[:i], new, *tokens[i + 1 :]]), edit.replace("_", " ")
    raise AssertionError(f"no edit changes {render.text!r}")  # replace_word always can: the vocabulary has other words


def _weighted(rng: random.Random, weights: dict):
    return rng.choices(list(weights), weights=list(weights.values()))[0]


def _cased(word: str, case: str) -> str:
    return {"upper": word.upper(), "title": word[:1].upper() + word[1:].lower(), "lower": word.lower()}[case]


def _like(word: str, model: str) -> str:
    """`word` in the letter case of `model`."""
    if model.isupper():
        return word.upper()
    return _cased(word, "title") if model[:1].isupper() else word.lower()
