"""Semantic dedup: sentence-transformers embeddings, cosine similarity with every kept prompt.

The search is exact (a matrix product with all kept embeddings), which suits the tens of thousands
of prompts a category holds; its cost grows with the square of the kept prompts.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from vipo_build.errors import VipoError
from vipo_build.prompts.dedup import RowStore
from vipo_build.prompts.filter_config import EmbeddingDedupConfig

if TYPE_CHECKING:  # torch and sentence-transformers load only when embedding dedup is on
    from sentence_transformers import SentenceTransformer


@cache
def load_encoder(model: str, device: str) -> SentenceTransformer:
    """The encoder, loaded once per process and shared by every category's index."""
    if not Path(model).is_dir():
        raise VipoError(f"prompts.filters.embedding.model: model directory not found: {model}")
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(model, device=device, local_files_only=True)


class EmbeddingIndex:
    """Unit-length embeddings of the kept prompts."""

    def __init__(self, config: EmbeddingDedupConfig):
        self.config = config
        self.encoder = load_encoder(config.model, config.device)
        self.embeddings = RowStore(np.float32)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        return self.encoder.encode(
            list(texts), batch_size=self.config.batch_size, convert_to_numpy=True, normalize_embeddings=True, show_progress_bar=False
        ).astype(np.float32, copy=False)

    def max_similarity(self, embeddings: np.ndarray) -> np.ndarray:
        """Highest cosine similarity of each embedding with the kept ones (-1 when none is kept)."""
        best = np.full(len(embeddings), -1.0, np.float32)
        for block in self.embeddings.filled_blocks():
            np.maximum(best, (embeddings @ block.T).max(axis=1), out=best)
        return best

    def batch(self, texts: Sequence[str]) -> EmbeddingBatch:
        embeddings = self.encode(texts)
        return EmbeddingBatch(self, embeddings, self.max_similarity(embeddings))


class EmbeddingBatch:
    """One matrix product against the prompts kept before the batch, and one within the batch."""

    def __init__(self, index: EmbeddingIndex, embeddings: np.ndarray, before: np.ndarray):
        self.index, self.embeddings, self.before = index, embeddings, before
        self.within = embeddings @ embeddings.T
        self.kept: list[int] = []

    def is_duplicate(self, i: int) -> bool:
        threshold = self.index.config.threshold
        return bool(self.before[i] >= threshold or (self.kept and self.within[i, self.kept].max() >= threshold))

    def keep(self, i: int) -> None:
        self.kept.append(i)
        self.index.embeddings.append(self.embeddings[i])
