"""Sub-topic balance: least shares of facet values held on a category's kept pairs, shard by shard.

A category's kept pairs fill its shard slots in dataset order (shard 0's slots first). Each shard's
block of n slots owes every value with a least share s at least floor(s x n) pairs, and the blocks
so far together owe floor(s x slots so far): each shard is within one pair of the share and the
dataset as a whole is too. Pairs are admitted in dataset order; one whose facet values would leave
the block fewer free slots than the values it still owes is left out (for good: it is dropped as
`facet_share`). The decision depends on the order of pairs only, so a resumed run makes the same.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from itertools import accumulate

FACET_SHARE = "facet_share"  # the drop reason of a pair left out for balance
EPSILON = 1e-9  # 0.4 x 10 is 4, not 3.9999999999999996


class FacetBalance:
    def __init__(self, shares: Mapping[str, Mapping[str, float]], per_shard: Sequence[int]):
        self.shares = {facet: {v: s for v, s in values.items() if s > 0} for facet, values in shares.items()}
        self.ends = list(accumulate(int(n) for n in per_shard))  # the category's slots up to each shard's end
        self.admitted = 0
        self.before = Counter()  # (facet, value) -> pairs in the finished blocks
        self.counts = Counter()  # and in the current block
        self.block = -1
        self._next_block()

    def _next_block(self) -> None:
        """Move on to the next shard with a slot of the category."""
        self.before.update(self.counts)
        self.counts.clear()
        self.block += 1
        while self.block < len(self.ends) and self.ends[self.block] == self.admitted:
            self.block += 1
        if self.block < len(self.ends):
            self.targets = self._targets()

    def _targets(self) -> dict[tuple[str, str], int]:
        end = self.ends[self.block]
        size = end - (self.ends[self.block - 1] if self.block else 0)
        return {(facet, value): max(owed_pairs(share, size), owed_pairs(share, end) - self.before[facet, value])
                for facet, values in self.shares.items() for value, share in values.items()}

    def owed(self, facet: str) -> int:
        return sum(max(0, self.targets[facet, v] - self.counts[facet, v]) for v in self.shares[facet])

    def admit(self, facets: Mapping[str, str]) -> bool:
        """Whether the next kept pair, with these facet values, joins the dataset (it then counts)."""
        if self.block >= len(self.ends):  # past the quota: not part of the dataset anyway
            return True
        free = self.ends[self.block] - self.admitted
        for facet, values in self.shares.items():
            value = facets.get(facet)
            pays = value in values and self.counts[facet, value] < self.targets[facet, value]
            if not pays and self.owed(facet) >= free:
                return False
        self.admitted += 1
        self.counts.update((facet, facets[facet]) for facet in self.shares if facet in facets)
        if self.admitted == self.ends[self.block]:
            self._next_block()
        return True


def owed_pairs(share: float, pairs: int) -> int:
    """Pairs of a value that `pairs` pairs owe at a least share: floor(share x pairs)."""
    return math.floor(share * pairs + EPSILON)
