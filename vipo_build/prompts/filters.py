"""The filters an expanded prompt must pass to be kept: lint rules, safety and dedup.

One `PromptFilters` holds the dedup state of one category. Prompts are checked in the order given,
each against every prompt kept before it (earlier ones of the same call included), so the survivors
depend only on that order: splitting the prompts into calls differently changes nothing.

Its drop reasons are the `filter` ones of vipo_build.drops, in the order the checks run.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Protocol

from vipo_build.prompts.dedup import ExactDeduplicator, NearDuplicateIndex, normalise
from vipo_build.prompts.embedding import EmbeddingIndex
from vipo_build.prompts.filter_config import PromptFilterConfig
from vipo_build.prompts.lint import lint_problem
from vipo_build.prompts.safety import classify, load_blocklist, load_classifier

__all__ = ["PromptFilterConfig", "PromptFilters"]


class DedupBatch(Protocol):
    def is_duplicate(self, i: int) -> bool: ...
    def keep(self, i: int) -> None: ...


class PromptFilters:
    """Lint, safety and dedup of one category's prompts; blocklists, classifier and encoder are shared."""

    def __init__(self, config: PromptFilterConfig):
        self.config = config
        self.blocklist = load_blocklist(tuple(config.safety.blocklists))
        self.classifier = load_classifier(config.safety.classifier) if config.safety.classifier else None
        self.exact = ExactDeduplicator() if config.exact_dedup else None
        self.near = NearDuplicateIndex(config.near_duplicates) if config.near_duplicates.enabled else None
        self.embedding = EmbeddingIndex(config.embedding) if config.embedding is not None else None

    def filter(self, texts: Sequence[str], drops: Counter) -> list[bool]:
        """Which texts are kept; the kept ones join the dedup state and each drop is counted in `drops` by reason."""
        normalised = [normalise(text) for text in texts]
        reasons = [self.surface_problem(text, key.split()) for text, key in zip(texts, normalised)]
        exact = self.exact.batch(normalised) if self.exact is not None else None
        # Only prompts that can still be kept go to the classifier and the similarity indexes.
        undecided = [i for i, reason in enumerate(reasons) if reason is None and not (exact is not None and exact.is_duplicate(i))]
        verdicts = self.classify_unsafe([texts[i] for i in undecided])
        unsafe = {i for i, bad in zip(undecided, verdicts) if bad}
        compared = [i for i in undecided if i not in unsafe]
        slot = {i: j for j, i in enumerate(compared)}
        similarity = self.similarity_batches([normalised[i] for i in compared], [texts[i] for i in compared])
        keep = []
        for i, reason in enumerate(reasons):
            if reason is None and exact is not None and exact.is_duplicate(i):
                reason = "duplicate"
            elif reason is None and i in unsafe:
                reason = "unsafe"
            elif reason is None:
                reason = next((why for why, batch in similarity if batch.is_duplicate(slot[i])), None)
            if reason is None:
                if exact is not None:
                    exact.keep(i)
                for _, batch in similarity:
                    batch.keep(slot[i])
            else:
                drops[reason] += 1
            keep.append(reason is None)
        return keep

    def remember(self, texts: Sequence[str]) -> None:
        """Add prompts kept earlier (e.g. read back from a cache on resume) to the dedup state, unchecked."""
        normalised = [normalise(text) for text in texts]
        batches: list[DedupBatch] = [batch for _, batch in self.similarity_batches(normalised, texts)]
        if self.exact is not None:
            batches.append(self.exact.batch(normalised))
        for batch in batches:
            for i in range(len(texts)):
                batch.keep(i)

    def surface_problem(self, text: str, words: list[str]) -> str | None:
        """Why a text fails on its own (lint rules, then the blocklist), or None."""
        return lint_problem(text, words, self.config.lint) or ("blocklist" if self.blocklist.match(words) else None)

    def classify_unsafe(self, texts: list[str]) -> list[bool]:
        """The classifier's verdicts (True: unsafe); all False without a classifier."""
        if self.classifier is None or not texts:
            return [False] * len(texts)
        safety = self.config.safety
        return classify(self.classifier, texts, safety.classifier_batch_size, str(safety.classifier))

    def similarity_batches(self, normalised: Sequence[str], texts: Sequence[str]) -> list[tuple[str, DedupBatch]]:
        """The near-duplicate and embedding indexes' batches for these texts, with their drop reasons."""
        batches: list[tuple[str, DedupBatch]] = []
        if self.near is not None and texts:
            batches.append(("near_duplicate", self.near.batch(normalised)))
        if self.embedding is not None and texts:
            batches.append(("semantic_duplicate", self.embedding.batch(texts)))
        return batches
