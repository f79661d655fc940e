"""How varied each category's prompts are, over the committed pairs.

Distinct-n ratios, the near-duplicate rate and the embedding figures all grow or shrink with the
number of prompts they cover, so they are computed on a sample of a fixed size per category (the
prompts whose pair keys hash lowest: every reader of a root draws the same sample, whatever the
shard order) and are comparable between runs with the same `audit.diversity_sample`. Distinct
subjects are counted over every committed pair. Manifests are read a batch of shards at a time,
so memory stays bounded by the sample, not the dataset.
"""

from __future__ import annotations

import heapq
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
from pydantic import Field

from vipo_build.config import PipelineConfig
from vipo_build.prompts.dedup import NearDuplicateIndex, normalise, stable_hash64
from vipo_build.prompts.filter_config import NearDuplicateConfig
from vipo_build.shards.facet_balance import owed_pairs
from vipo_build.strict import StrictModel

NGRAM_ORDERS = (1, 2, 3)


class FacetShare(StrictModel):
    facet: str
    value: str
    pairs: int = Field(description="Committed pairs of the category with this value.")
    share: float = Field(description="Their share of the category's committed pairs.")
    least_share: float | None = Field(description="categories.<name>.facet_shares: the least share set for it; None if none.")
    shards_short: int | None = Field(description="Committed shards holding fewer than floor(least share x the category's pairs "
                                                 "in the shard) of it; 0 when every shard is within one pair; None without a least share.")


class CategoryDiversity(StrictModel):
    category: str
    pairs: int = Field(description="Committed pairs of the category.")
    distinct_subjects: int = Field(description="Distinct seed subjects over every committed pair.")
    sample: int = Field(description="Prompts the figures below are computed on (audit.diversity_sample, or all if fewer).")
    distinct_prompts: float | None = Field(description="Share of the sampled prompts that are distinct after normalisation; "
                                                       "None (as every figure below) for a category with no committed pair.")
    distinct_n: dict[str, float] = Field(description="Distinct word n-grams over all word n-grams of the sample, for n = 1, 2, 3.")
    near_duplicate_rate: float | None = Field(description="Share of sampled prompts the near-duplicate filter would drop against the "
                                                   "sampled prompts before them (MinHash LSH, the config's threshold).")
    mean_similarity: float | None = Field(description="Mean cosine similarity of the sampled prompts' sentence embeddings over "
                                                      "all pairs of them; None without an encoder.")
    vendi: float | None = Field(description="Vendi score of the embeddings: the effective number of distinct prompts, "
                                            "from 1 (all alike) to the sample size; None without an encoder.")
    distinct_facet_combinations: int = Field(description="Distinct combinations of facet values over every committed pair.")
    facet_shares: list[FacetShare] = Field(description="Every facet value's share of the committed pairs, with its least share "
                                                       "where the config sets one.")


class Diversity(StrictModel):
    sample_size: int = Field(description="audit.diversity_sample: prompts per category the figures are computed on.")
    encoder: str | None = Field(description="The sentence-transformers model of the embedding figures; None without one.")
    encoder_missing: str | None = Field(description="A configured encoder directory that is not on this machine, so no embedding figures.")
    categories: list[CategoryDiversity]


@dataclass
class CategoryPrompts:
    """What is kept per category while the manifests stream by."""

    pairs: int = 0
    subjects: set[str] = field(default_factory=set)
    lowest: list[tuple[int, str]] = field(default_factory=list)  # max-heap of (-hash, prompt): the sample so far
    combinations: set[int] = field(default_factory=set)  # hashes of the distinct facet combinations
    shard_pairs: Counter = field(default_factory=Counter)  # shard -> pairs of the category
    shard_values: Counter = field(default_factory=Counter)  # (shard, facet, value) -> pairs

    def add(self, key: str, subject: str, prompt: str, size: int, shard: str = "", facets: Sequence[dict] = ()) -> None:
        self.pairs += 1
        self.subjects.add(subject)
        values = tuple(sorted((f["facet"], f["value"]) for f in facets))
        self.combinations.add(hash(values))
        self.shard_pairs[shard] += 1
        self.shard_values.update((shard, facet, value) for facet, value in values)
        entry = (-stable_hash64(key), prompt)
        if len(self.lowest) < size:
            heapq.heappush(self.lowest, entry)
        elif entry > self.lowest[0]:
            heapq.heapreplace(self.lowest, entry)

    def sample(self) -> list[str]:
        """The sampled prompts, lowest key hash first."""
        return [prompt for _, prompt in sorted(self.lowest, reverse=True)]

    def facet_shares(self, least: dict[str, dict[str, float]]) -> list[FacetShare]:
        """Each facet value's share, and for those with a least share the shards that hold too few."""
        totals = Counter()
        for (_, facet, value), n in self.shard_values.items():
            totals[facet, value] += n
        shares = []
        for facet, value in sorted(totals.keys() | {(f, v) for f, values in least.items() for v in values}):
            floor = least.get(facet, {}).get(value)
            short = None if floor is None else sum(
                1 for shard, n in self.shard_pairs.items() if self.shard_values[shard, facet, value] < owed_pairs(floor, n))
            shares.append(FacetShare(facet=facet, value=value, pairs=totals[facet, value],
                                     share=totals[facet, value] / self.pairs if self.pairs else 0.0,
                                     least_share=floor, shards_short=short))
        return shares


PROMPT_COLUMNS = ["key", "category", "seed_subject", "prompt", "shard", "facets"]


def collect_prompts(manifests: Iterable[pa.Table], size: int) -> dict[str, CategoryPrompts]:
    """Per category: pair count, subjects, facet values by shard and the fixed-size sample, from
    manifest batches with the PROMPT_COLUMNS."""
    found: defaultdict[str, CategoryPrompts] = defaultdict(CategoryPrompts)
    for table in manifests:
        columns = table.select(PROMPT_COLUMNS).to_pydict()
        for key, category, subject, prompt, shard, facets in zip(*(columns[c] for c in PROMPT_COLUMNS)):
            found[category].add(key, subject, prompt, size, shard, facets)
    return dict(found)


def distinct_n(texts: Sequence[str], n: int) -> float:
    """Distinct word n-grams over all word n-grams of the normalised texts (0 when there are none)."""
    grams = [tuple(words[i : i + n]) for words in (normalise(t).split() for t in texts) for i in range(len(words) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def near_duplicate_rate(texts: Sequence[str], config: NearDuplicateConfig) -> float:
    """Share of texts that are near-duplicates of a text before them that was not one itself."""
    if not texts:
        return 0.0
    index = NearDuplicateIndex(config)
    batch = index.batch([normalise(t) for t in texts])
    duplicates = 0
    for i in range(len(texts)):
        if batch.is_duplicate(i):
            duplicates += 1
        else:
            batch.keep(i)
    return duplicates / len(texts)


def embedding_figures(embeddings: np.ndarray) -> tuple[float | None, float | None]:
    """(mean pairwise cosine similarity, Vendi score) of row embeddings.

    Both come from d x d quantities, never the n x n similarity matrix: the sum of all
    similarities is |sum of unit rows|^2, and U U^T / n has the non-zero eigenvalues of U^T U / n."""
    n = len(embeddings)
    if n < 2:
        return None, None
    unit = np.asarray(embeddings, dtype=np.float64)
    unit = unit / np.linalg.norm(unit, axis=1, keepdims=True)
    mean = (np.square(unit.sum(axis=0)).sum() - n) / (n * (n - 1))
    eigenvalues = np.clip(np.linalg.eigvalsh(unit.T @ unit / n), 0, None)
    eigenvalues = eigenvalues[eigenvalues > 1e-12]
    vendi = float(np.exp(-(eigenvalues * np.log(eigenvalues)).sum()))
    return float(mean), vendi


def configured_encoder(config: PipelineConfig) -> str | None:
    """The sentence-transformers model the embedding figures use: audit.encoder, else the
    embedding dedup's model; None when neither is set."""
    if config.audit.encoder:
        return config.audit.encoder
    embedding = config.prompts.filters.embedding
    return embedding.model if embedding is not None else None


def diversity_report(prompts: dict[str, CategoryPrompts], categories: Sequence[str], config: PipelineConfig) -> Diversity:
    """The figures of each category (in the given order); the embedding ones where the encoder is on this machine."""
    encoder = configured_encoder(config)
    missing = encoder if encoder is not None and not Path(encoder).is_dir() else None
    model = None
    if encoder is not None and missing is None:
        from vipo_build.prompts.embedding import load_encoder

        model = load_encoder(encoder, "cpu")
    return Diversity(
        sample_size=config.audit.diversity_sample,
        encoder=None if missing else encoder,
        encoder_missing=missing,
        categories=[category_diversity(c, prompts.get(c, CategoryPrompts()), config, model) for c in categories],
    )


def category_diversity(category: str, prompts: CategoryPrompts, config: PipelineConfig, encoder) -> CategoryDiversity:
    sample = prompts.sample()
    mean_similarity = vendi = None
    if encoder is not None and len(sample) > 1:
        mean_similarity, vendi = embedding_figures(np.asarray(encoder.encode(list(sample), batch_size=64)))
    return CategoryDiversity(
        category=category,
        pairs=prompts.pairs,
        distinct_subjects=len(prompts.subjects),
        sample=len(sample),
        distinct_prompts=len({normalise(t) for t in sample}) / len(sample) if sample else None,
        distinct_n={str(n): distinct_n(sample, n) for n in NGRAM_ORDERS} if sample else {},
        near_duplicate_rate=near_duplicate_rate(sample, config.prompts.filters.near_duplicates) if sample else None,
        mean_similarity=mean_similarity,
        vendi=vendi,
        distinct_facet_combinations=len(prompts.combinations),
        facet_shares=prompts.facet_shares(config.categories[category].facet_shares if category in config.categories else {}),
    )
