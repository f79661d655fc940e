"""Which pair a rater labels next, and which candidate is shown on the left.

A rater gets, among the pairs they have not answered, one with the fewest labels (skips are not
labels) until every pair has `overlap` labels from distinct raters; equal counts are broken in
an order seeded per rater, so raters working at once spread over the sample. Every rater sees
every gold pair, spread through their session at the sample's gold share. Both choices depend
only on the answers so far, so a rater who reloads the page or comes back another day resumes at
the same pair.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from vipo_build.calibration.sample import Sample
from vipo_build.seeding import derive_seed


def left_slot(sample: Sample, key: str, rater: str) -> str:
    """"A" or "B": the sample side shown on the left to this rater, drawn per pair and rater."""
    return "A" if random.Random(derive_seed(sample.seed, "label", "left", key, rater)).random() < 0.5 else "B"


@dataclass(frozen=True)
class OpenPairs:
    """One rater's standing, from one pass over the answers so far."""

    regular: list[str]  # judged pairs still open to the rater
    gold: list[str]  # gold pairs the rater has not seen
    answered: int  # answers the rater gave
    labels: Counter  # labels (not skips) per pair, all raters


def open_pairs(sample: Sample, answers: Sequence[dict], rater: str, overlap: int) -> OpenPairs:
    seen = {a["key"] for a in answers if a["rater"] == rater}
    labels = Counter(a["key"] for a in answers if a["choice"] != "skip")
    regular = [k for k, row in sample.rows.items() if not row["gold"] and k not in seen and labels[k] < overlap]
    gold = [k for k, row in sample.rows.items() if row["gold"] and k not in seen]
    return OpenPairs(regular, gold, len(seen), labels)


def next_pair(sample: Sample, standing: OpenPairs, rater: str) -> str | None:
    """The key of the rater's next pair; None when the rater has nothing left to label."""
    gold_total = len(sample.gold_winners)
    gold_seen = gold_total - len(standing.gold)
    # A gold pair whenever one more keeps the rater's gold share at most the sample's.
    wants_gold = standing.gold and (not standing.regular
                                    or (gold_seen + 1) * len(sample.rows) <= (standing.answered + 1) * gold_total)
    pool = standing.gold if wants_gold else standing.regular
    if not pool:
        return None
    return min(pool, key=lambda k: (standing.labels[k], derive_seed(sample.seed, "label", "order", rater, k)))
