"""The shard plan: which kept pairs of each category go into which shard, fixed before any work.

Each modality has its own shard set (`{name}-image-NNNNNN`, `{name}-video-NNNNNN`), so a shard
holds one kind of media and every reader sees the same members and types in all its samples.
Within a set, each shard gets, per category, the floor or the ceiling of its exact share of the shard, so
every shard has the planned mix within one pair. Which categories get the ceiling is decided by
their running deficit against the exact cumulative share, so the totals come out exactly at
the quotas. Inside a shard the categories are interleaved evenly. Category c's pairs in shard
s are its kept pairs number start..start+n in (unit, index) order, so the j-th kept pair of a
category always lands in the same shard at the same position.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pyarrow as pa


@dataclass(frozen=True)
class ShardSet:
    """The shards of one modality: its categories' quotas spread evenly over them."""

    name: str
    quotas: dict[str, int]
    pairs_per_shard: int

    @cached_property
    def categories(self) -> list[str]:
        return list(self.quotas)

    @property
    def total_pairs(self) -> int:
        return sum(self.quotas.values())

    @property
    def num_shards(self) -> int:
        return -(-self.total_pairs // self.pairs_per_shard)

    def shard_name(self, shard: int) -> str:
        return f"{self.name}-{shard:06d}"

    @cached_property
    def count_matrix(self) -> np.ndarray:
        """Pairs per (shard, category). Integer arithmetic throughout (shares scaled by the total)."""
        quotas = np.array(list(self.quotas.values()), dtype=np.int64)
        total, per_shard = self.total_pairs, self.pairs_per_shard
        matrix = np.zeros((self.num_shards, len(quotas)), dtype=np.int64)
        assigned = np.zeros(len(quotas), dtype=np.int64)
        done = 0
        for shard in range(self.num_shards):
            size = min(per_shard, total - done)
            base, remainder = np.divmod(size * quotas, total)
            deficit = (done + size) * quotas - (assigned + base) * total  # scaled by total
            ceilings = [c for c in np.lexsort((np.arange(len(quotas)), -deficit)) if remainder[c] > 0]
            counts = base.copy()
            counts[ceilings[: size - int(base.sum())]] += 1
            matrix[shard] = counts
            assigned += counts
            done += size
        if not np.array_equal(assigned, quotas):  # the deficit rule keeps totals exact; guard the invariant
            raise AssertionError(f"shard plan totals {assigned.tolist()} differ from quotas {quotas.tolist()}")
        return matrix

    @cached_property
    def _starts(self) -> np.ndarray:
        """Ordinal of each category's first pair in each shard."""
        return np.cumsum(self.count_matrix, axis=0) - self.count_matrix

    def slots(self, shard: int) -> list[tuple[str, int]]:
        """(category, ordinal among its kept pairs) for each sample of the shard, in order."""
        counts, starts = self.count_matrix[shard], self._starts[shard]
        entries = [
            ((j + 0.5) / n, c, int(starts[c]) + j)
            for c, n in enumerate(counts.tolist())
            for j in range(n)
        ]
        return [(self.categories[c], ordinal) for _, c, ordinal in sorted(entries)]

    def counts(self, shard: int) -> dict[str, int]:
        return dict(zip(self.categories, self.count_matrix[shard].tolist()))

    def needed(self, shard: int) -> dict[str, int]:
        """Kept pairs each category must have (as a prefix) before the shard can be written."""
        ends = self._starts[shard] + self.count_matrix[shard]
        return {c: int(e) if n else 0 for c, e, n in zip(self.categories, ends, self.count_matrix[shard])}


@dataclass(frozen=True)
class ShardPlan:
    """Every shard of a root: the shard sets of its modalities, numbered one after the other."""

    name: str
    quotas: dict[str, int]
    pairs_per_shard: int
    modalities: dict[str, str]  # category -> modality

    @classmethod
    def of(cls, config) -> ShardPlan:
        quotas = config.quotas()
        return cls(config.shards.name, quotas, config.shards.pairs_per_shard,
                   {c: config.category(c).modality for c in quotas})

    @cached_property
    def sets(self) -> list[ShardSet]:
        kinds = list(dict.fromkeys(self.modalities[c] for c in self.quotas))
        return [ShardSet(f"{self.name}-{kind}", {c: q for c, q in self.quotas.items() if self.modalities[c] == kind},
                         self.pairs_per_shard) for kind in kinds]

    @cached_property
    def _located(self) -> list[tuple[ShardSet, int]]:
        return [(shard_set, local) for shard_set in self.sets for local in range(shard_set.num_shards)]

    @property
    def total_pairs(self) -> int:
        return sum(self.quotas.values())

    @property
    def num_shards(self) -> int:
        return len(self._located)

    def per_shard(self, category: str) -> np.ndarray:
        """The category's pairs in each shard of its modality's set."""
        shard_set = next(s for s in self.sets if category in s.quotas)
        return shard_set.count_matrix[:, shard_set.categories.index(category)]

    def set_shards(self) -> list[list[int]]:
        """The shard numbers of each set, in order: a set's shards are written one after another."""
        numbers, start = [], 0
        for shard_set in self.sets:
            numbers.append(list(range(start, start + shard_set.num_shards)))
            start += shard_set.num_shards
        return numbers

    def shard_name(self, shard: int) -> str:
        shard_set, local = self._located[shard]
        return shard_set.shard_name(local)

    def modality(self, shard: int) -> str:
        shard_set, _ = self._located[shard]
        return self.modalities[next(iter(shard_set.quotas))]

    def slots(self, shard: int) -> list[tuple[str, int]]:
        shard_set, local = self._located[shard]
        return shard_set.slots(local)

    def counts(self, shard: int) -> dict[str, int]:
        shard_set, local = self._located[shard]
        return shard_set.counts(local)

    def needed(self, shard: int) -> dict[str, int]:
        shard_set, local = self._located[shard]
        return shard_set.needed(local)

    def table(self) -> pa.Table:
        rows = [{"shard": self.shard_name(s), "modality": self.modality(s), "category": c, "pairs": n}
                for s in range(self.num_shards) for c, n in self.counts(s).items()]
        return pa.Table.from_pylist(rows)
