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

from vipo_build.calibration.sample import Sample
from vipo_build.seeding import derive_seed


def left_slot(sample: Sample, key: str, rater: str) -> str:
    """"A" or "B": the sample side shown on the left to this rater, drawn per pair and rater."""
    return "A" if random.Random(derive_seed(sample.seed, "label", "left", key, rater)).random() < 0.5 else "B"


def open_pairs(sample: Sample, answers: Sequence[dict], rater: str, overlap: int) -> tuple[list[str], list[str], int]:
    """(regular pairs still open to the rater, gold pairs the rater has not seen, answers the rater gave)."""
    seen = {a["key"] for a in answers if a["rater"] == rater}
    labels = Counter(a["key"] for a in answers if a["choice"] != "skip")
    regular = [k for k, row in sample.rows.items() if not row["gold"] and k not in seen and labels[k] < overlap]
    gold = [k for k, row in sample.rows.items() if row["gold"] and k not in seen]
    return regular, gold, len(seen)


def next_pair(sample: Sample, answers: Sequence[dict], rater: str, overlap: int) -> str | None:
    """The key of the rater's next pair; None when the rater has nothing left to label."""
    regular, gold, answered = open_pairs(sample, answers, rater, overlap)
    gold_total = len(sample.gold_winners)
    gold_seen = gold_total - len(gold)
    # A gold pair whenever one more keeps the rater's gold share at most the sample's.
    wants_gold = gold and (not regular or (gold_seen + 1) * len(sample.rows) <= (answered + 1) * gold_total)
    pool = gold if wants_gold else regular
    if not pool:
        return None
    labels = Counter(a["key"] for a in answers if a["choice"] != "skip")
    return min(pool, key=lambda k: (labels[k], derive_seed(sample.seed, "label", "order", rater, k)))
