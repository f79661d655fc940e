"""Safety checks: per-language blocklists of words and phrases, and a pluggable classifier."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from functools import cache
from importlib.resources import files
from importlib.resources.abc import Traversable

from vipo_build.errors import VipoError
from vipo_build.prompts.dedup import normalise

PACKAGED_BLOCKLISTS: Traversable = files("vipo_build") / "blocklists"

Classifier = Callable[[list[str]], list[bool]]


class Blocklist:
    """Normalised phrases, matched as whole word sequences of a normalised text."""

    def __init__(self, phrases: set[str]):
        self.phrases = phrases
        self.single_words = {phrase for phrase in phrases if " " not in phrase}
        # Multi-word phrases by their first word, so most texts are cleared by two set operations.
        self.by_first_word: dict[str, list[list[str]]] = {}
        for phrase in sorted(phrases - self.single_words):
            words = phrase.split()
            self.by_first_word.setdefault(words[0], []).append(words)

    def match(self, words: list[str]) -> str | None:
        """The first blocklisted word or phrase in the words of a normalised text, or None."""
        if self.single_words.isdisjoint(words) and self.by_first_word.keys().isdisjoint(words):
            return None
        for start, word in enumerate(words):
            if word in self.single_words:
                return word
            for phrase in self.by_first_word.get(word, ()):
                if words[start : start + len(phrase)] == phrase:
                    return " ".join(phrase)
        return None


def read_blocklist(path: Traversable) -> set[str]:
    """A blocklist file: one word or phrase a line; blank lines and lines starting with # are skipped."""
    lines = (line.strip() for line in path.read_text(encoding="utf-8").splitlines())
    return {normalise(line) for line in lines if line and not line.startswith("#")} - {""}


@cache
def load_blocklist(languages: tuple[str, ...], directory: Traversable = PACKAGED_BLOCKLISTS) -> Blocklist:
    """The union of the languages' blocklists, read once per process."""
    phrases: set[str] = set()
    for language in languages:
        path = directory / f"{language}.txt"
        if not path.is_file():
            known = sorted(p.name.removesuffix(".txt") for p in directory.iterdir() if p.name.endswith(".txt"))
            raise VipoError(f"prompts.filters.safety.blocklists: no blocklist for {language!r} in {directory} (known: {', '.join(known)})")
        phrases |= read_blocklist(path)
    return Blocklist(phrases)


@cache
def load_classifier(path: str) -> Classifier:
    """The callable at "package.module:function" (or "package.module.function")."""
    module_name, _, name = path.rpartition(":") if ":" in path else path.rpartition(".")
    try:
        classifier = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError, ValueError) as err:
        raise VipoError(f"prompts.filters.safety.classifier: cannot import {path!r}: {err}") from None
    if not callable(classifier):
        raise VipoError(f"prompts.filters.safety.classifier: {path!r} is not callable")
    return classifier


def classify(classifier: Classifier, texts: Sequence[str], batch_size: int, name: str) -> list[bool]:
    """The classifier's verdicts (True: unsafe), asked in batches of at most batch_size texts."""
    verdicts: list[bool] = []
    for start in range(0, len(texts), batch_size):
        batch = list(texts[start : start + batch_size])
        answer = list(classifier(batch))
        if len(answer) != len(batch):
            raise VipoError(f"prompts.filters.safety.classifier: {name} returned {len(answer)} verdicts for {len(batch)} texts")
        verdicts += map(bool, answer)
    return verdicts
