"""Agreement statistics: of the judge's votes on each pair, and of people labelling the same pairs.

Judge side: per pair, vote share, order consistency and per-dimension score margins; per
category or dataset, order-consistency rate, Fleiss' kappa over the votes, mean vote share, tie
rate, position bias (the share of decisive votes for the candidate shown first, with a two-sided
binomial test against one half) and the drop funnel. Human side: majority labels, each rater against the majority of the others,
and inter-rater agreement. Cohen's kappa compares any two raters (e.g. judge and human majority).

Human ratings are given per item as {rater: label}, with abstentions (skips) left out.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Hashable, Iterable, Mapping, Sequence
from itertools import combinations

import numpy as np
from pydantic import Field
from scipy.stats import binomtest

from vipo_build import drops
from vipo_build.records import Verdict, Vote
from vipo_build.strict import StrictModel

Label = Hashable
Ratings = Mapping[str, Label]  # one item: rater id -> label

# The reasons in the order aggregate() tests its rules, so the counts read as a funnel.
FUNNEL = (*drops.of_step("judge"), "kept")  # a verdict's outcomes, in the order the judge checks them
VOTE_CATEGORIES = ("side0", "side1", "tie")


# ---- two or more raters, any labels ------------------------------------------------------------


def fleiss_kappa(table: np.ndarray | Sequence[Sequence[int]]) -> float | None:
    """Fleiss' kappa of an items x categories table of rating counts.

    Items may have different numbers of ratings n_i: an item's agreement is the share of its own
    n_i (n_i - 1) ordered rating pairs that agree, averaged over the items with n_i >= 2 (items
    with fewer have no pair to agree on and are left out); chance agreement uses the category
    shares over all ratings of those items. With the same n for every item this is Fleiss'
    kappa exactly. None where it is undefined: no item with two ratings, or every rating in one
    category (chance agreement 1).
    """
    counts = np.asarray(table, dtype=float)
    if counts.ndim != 2:
        raise ValueError(f"expected an items x categories table, got shape {counts.shape}")
    per_item = counts.sum(axis=1)
    counts, per_item = counts[per_item >= 2], per_item[per_item >= 2]
    if len(per_item) == 0:
        return None
    observed = (((counts * counts).sum(axis=1) - per_item) / (per_item * (per_item - 1))).mean()
    shares = counts.sum(axis=0) / per_item.sum()
    chance = float((shares * shares).sum())
    if np.isclose(chance, 1.0):
        return None
    return float((observed - chance) / (1.0 - chance))


def cohen_kappa(first: Sequence[Label], second: Sequence[Label]) -> float | None:
    """Cohen's kappa of two raters' labels on the same items (position i: item i).

    None where it is undefined: no items, or both raters always giving the same single label.
    """
    if len(first) != len(second):
        raise ValueError(f"the raters labelled {len(first)} and {len(second)} items; need the same items")
    labels = {label: i for i, label in enumerate(dict.fromkeys([*first, *second]))}
    table = np.zeros((len(labels), len(labels)))
    for a, b in zip(first, second):
        table[labels[a], labels[b]] += 1
    return cohen_kappa_of_table(table)


def cohen_kappa_of_table(table: np.ndarray) -> float | None:
    """Cohen's kappa of a labels x labels table of two raters' counts (row: first rater's label)."""
    n = table.sum()
    if n == 0:
        return None
    observed = np.trace(table) / n
    chance = float((table.sum(axis=1) * table.sum(axis=0)).sum() / (n * n))
    if np.isclose(chance, 1.0):
        return None
    return float((observed - chance) / (1.0 - chance))


def majority_label(labels: Iterable[Label]) -> Label | None:
    """The most frequent label; None when there is none or the top two are tied."""
    top = Counter(labels).most_common(2)
    if not top or (len(top) == 2 and top[0][1] == top[1][1]):
        return None
    return top[0][0]


# ---- human raters ------------------------------------------------------------------------------


class RaterAccuracy(StrictModel):
    """One rater against the majority of the other raters, over the items where that majority exists."""

    scored: int
    agreed: int
    accuracy: float | None


class InterRater(StrictModel):
    items: int = Field(description="Items with at least two ratings: the ones agreement can be measured on.")
    raters: int
    pairwise_agreement: float | None = Field(description="Mean over rater pairs of their percent agreement on the items both labelled.")
    fleiss_kappa: float | None


def leave_one_out_accuracy(items: Iterable[Ratings]) -> dict[str, RaterAccuracy]:
    """Each rater's accuracy against the majority label of the OTHER raters of each item.

    An item counts for a rater only where the others have a majority (at least one other rating,
    no tie at the top), so a rater is never compared with a majority their own label decided.
    Raters with no such item get accuracy None. Sorted by rater id.
    """
    scored: Counter = Counter()
    agreed: Counter = Counter()
    raters: set[str] = set()
    for ratings in items:
        for rater, label in ratings.items():
            raters.add(rater)
            others = majority_label(other for r, other in ratings.items() if r != rater)
            if others is not None:
                scored[rater] += 1
                agreed[rater] += label == others
    return {
        rater: RaterAccuracy(scored=scored[rater], agreed=agreed[rater],
                             accuracy=agreed[rater] / scored[rater] if scored[rater] else None)
        for rater in sorted(raters)
    }


def mean_accuracy(accuracies: Mapping[str, RaterAccuracy]) -> float | None:
    """Unweighted mean over the raters that have an accuracy: every rater counts once."""
    values = [a.accuracy for a in accuracies.values() if a.accuracy is not None]
    return float(np.mean(values)) if values else None


def pairwise_agreement(items: Iterable[Ratings]) -> float | None:
    """Mean pairwise percent agreement: for every two raters who labelled at least one item in
    common, the share of their common items with the same label; the unweighted mean over those
    rater pairs (pairs with no common item are left out). None when no two raters share an item."""
    shared: Counter = Counter()
    same: Counter = Counter()
    for ratings in items:
        for (rater_a, label_a), (rater_b, label_b) in combinations(sorted(ratings.items()), 2):
            shared[rater_a, rater_b] += 1
            same[rater_a, rater_b] += label_a == label_b
    if not shared:
        return None
    return float(np.mean([same[pair] / shared[pair] for pair in shared]))


def rating_table(items: Iterable[Ratings], categories: Sequence[Label]) -> np.ndarray:
    """Items x categories counts of the ratings, for fleiss_kappa."""
    column = {category: j for j, category in enumerate(categories)}
    rows = []
    for ratings in items:
        row = [0] * len(categories)
        for rater, label in ratings.items():
            if label not in column:
                raise ValueError(f"rater {rater!r} gave label {label!r}, not one of {list(categories)}")
            row[column[label]] += 1
        rows.append(row)
    return np.array(rows, dtype=int).reshape(len(rows), len(categories))


def inter_rater_agreement(items: Sequence[Ratings], categories: Sequence[Label]) -> InterRater:
    """Agreement among the raters of the items: mean pairwise percent agreement and Fleiss' kappa.

    Items may have different raters and different numbers of them; both statistics use only
    the items with at least two ratings (see pairwise_agreement and fleiss_kappa for how each
    handles the varying numbers).
    """
    rated = [ratings for ratings in items if len(ratings) >= 2]
    return InterRater(
        items=len(rated),
        raters=len({rater for ratings in rated for rater in ratings}),
        pairwise_agreement=pairwise_agreement(rated),
        fleiss_kappa=fleiss_kappa(rating_table(rated, categories)),
    )


# ---- the judge ---------------------------------------------------------------------------------


class PairAgreement(StrictModel):
    pair_id: str
    vote_share: float
    order_consistent: bool
    margins: dict[str, float] = Field(description="Chosen minus rejected mean score per dimension; empty when no side won.")


class JudgeAgreement(StrictModel):
    pairs: int
    decided: int = Field(description="Pairs where a side won the vote; the rates and means below are over these.")
    order_consistency_rate: float | None
    mean_vote_share: float | None
    mean_margins: dict[str, float]
    fleiss_kappa: float | None = Field(description="Over the usable votes: items = pairs, raters = votes, categories = side 0 / side 1 / tie.")
    tie_rate: float | None = Field(None, description="Share of the usable votes that are ties.")
    first_shown_rate: float | None = Field(None, description="Share of the decisive votes (not ties) for the candidate shown first; 0.5 is no position bias.")
    first_shown_p_value: float | None = Field(None, description="Two-sided binomial test of first_shown_rate against 0.5.")
    funnel: dict[str, int] = Field(description="Pairs per reason, in the order the keep rules are tested (reasons not known here go last).")
    between_judges: list[JudgesAgreement] = Field(default_factory=list, description="Each two judges of a panel; empty for one judge.")


class JudgesAgreement(StrictModel):
    """Two judges of a panel on the same pairs: each one's own winner (side 0, side 1 or none)."""

    first: str
    second: str
    pairs: int
    agreement: float | None = Field(description="Share of the pairs where both picked the same winner (or both none).")
    cohen_kappa: float | None


class DatasetAgreement(StrictModel):
    categories: dict[str, JudgeAgreement]
    overall: JudgeAgreement


def score_margins(verdict: Verdict) -> dict[str, float]:
    if verdict.chosen_side is None:
        return {}
    chosen, rejected = verdict.mean_scores[verdict.chosen_side], verdict.mean_scores[1 - verdict.chosen_side]
    return {d: round(chosen[d] - rejected[d], 4) for d in chosen}  # mean scores carry 4 decimals


def pair_agreement(verdict: Verdict) -> PairAgreement:
    return PairAgreement(pair_id=verdict.pair_id, vote_share=verdict.vote_share,
                         order_consistent=verdict.order_consistent, margins=score_margins(verdict))


def vote_counts(verdict: Verdict) -> list[int]:
    """Usable votes for side 0, side 1 and tie (the columns of VOTE_CATEGORIES)."""
    usable = [v.winner_side for v in verdict.votes if v.valid]
    return [usable.count(0), usable.count(1), usable.count(None)]


def _winner_column(side: int | None) -> int:
    return 2 if side is None else side


def for_first_shown(vote: Vote) -> bool:
    """The vote went to the candidate shown first (side 0 in order AB, side 1 in BA)."""
    return vote.winner_side == (0 if vote.order == "AB" else 1)


class AgreementTally:
    """judge_agreement's figures as running sums, so a run adds each verdict as it comes and keeps
    none of them (a million verdicts would take gigabytes)."""

    def __init__(self) -> None:
        self.pairs = self.decided = self.consistent = 0
        self.vote_share = 0.0
        self.margins: defaultdict[str, list[float]] = defaultdict(lambda: [0.0, 0])  # dimension -> [sum, count]
        self.reasons: Counter = Counter()
        self.rated = 0  # pairs with two or more usable votes: Fleiss' items
        self.observed = 0.0  # sum of their agreement
        self.votes = np.zeros(3)  # their votes per category
        self.usable = self.ties = 0  # usable votes, and how many of them are ties
        self.first_shown = 0  # decisive votes for the candidate shown first (side 0 in AB, side 1 in BA)
        self.between: dict[tuple[str, str], np.ndarray] = {}  # two judges -> 3 x 3 counts of their winners

    def add(self, verdict: Verdict) -> None:
        self.pairs += 1
        self.reasons[verdict.reason] += 1
        if verdict.chosen_side is not None:
            self.decided += 1
            self.consistent += bool(verdict.order_consistent)
            self.vote_share += verdict.vote_share
            for dimension, margin in score_margins(verdict).items():
                self.margins[dimension][0] += margin
                self.margins[dimension][1] += 1
        for vote in verdict.votes:
            if vote.valid:
                self.usable += 1
                self.ties += vote.winner_side is None
                self.first_shown += for_first_shown(vote)
        for first, second in combinations(verdict.panel, 2):
            table = self.between.setdefault((first.judge, second.judge), np.zeros((3, 3)))
            table[_winner_column(first.chosen_side), _winner_column(second.chosen_side)] += 1
        counts = np.array(vote_counts(verdict), dtype=float)
        n = counts.sum()
        if n >= 2:
            self.rated += 1
            self.observed += ((counts * counts).sum() - n) / (n * (n - 1))
            self.votes += counts

    def update(self, other: AgreementTally) -> None:
        """Add another tally's sums to this one."""
        self.pairs += other.pairs
        self.decided += other.decided
        self.consistent += other.consistent
        self.vote_share += other.vote_share
        for dimension, (value, n) in other.margins.items():
            self.margins[dimension][0] += value
            self.margins[dimension][1] += n
        self.reasons.update(other.reasons)
        self.rated += other.rated
        self.observed += other.observed
        self.votes += other.votes
        self.usable += other.usable
        self.ties += other.ties
        self.first_shown += other.first_shown
        for judges, table in other.between.items():
            self.between[judges] = self.between.get(judges, np.zeros((3, 3))) + table

    @classmethod
    def merged(cls, tallies: Iterable[AgreementTally]) -> AgreementTally:
        total = cls()
        for tally in tallies:
            total.update(tally)
        return total

    def result(self) -> JudgeAgreement:
        funnel = {reason: self.reasons[reason] for reason in FUNNEL}
        funnel |= {reason: n for reason, n in sorted(self.reasons.items()) if reason not in funnel}
        return JudgeAgreement(
            pairs=self.pairs,
            decided=self.decided,
            order_consistency_rate=self.consistent / self.decided if self.decided else None,
            mean_vote_share=self.vote_share / self.decided if self.decided else None,
            mean_margins={d: total / n for d, (total, n) in sorted(self.margins.items())},
            fleiss_kappa=self._kappa(),
            tie_rate=self.ties / self.usable if self.usable else None,
            first_shown_rate=self.first_shown / decisive if (decisive := self.usable - self.ties) else None,
            first_shown_p_value=float(binomtest(self.first_shown, decisive).pvalue) if decisive else None,
            funnel=funnel,
            between_judges=[
                JudgesAgreement(first=a, second=b, pairs=int(table.sum()), agreement=float(np.trace(table) / table.sum()),
                                cohen_kappa=cohen_kappa_of_table(table))
                for (a, b), table in sorted(self.between.items())
            ],
        )

    def _kappa(self) -> float | None:
        """fleiss_kappa of the pairs' vote table, from the sums."""
        if not self.rated:
            return None
        shares = self.votes / self.votes.sum()
        chance = float((shares * shares).sum())
        if np.isclose(chance, 1.0):
            return None
        return float((self.observed / self.rated - chance) / (1.0 - chance))


def judge_agreement(verdicts: Sequence[Verdict]) -> JudgeAgreement:
    tally = AgreementTally()
    for verdict in verdicts:
        tally.add(verdict)
    return tally.result()


def dataset_agreement(verdicts: Mapping[str, Sequence[Verdict]]) -> DatasetAgreement:
    """judge_agreement per category ({category: its verdicts}) and over all of them."""
    return DatasetAgreement(
        categories={name: judge_agreement(found) for name, found in sorted(verdicts.items())},
        overall=judge_agreement([v for found in verdicts.values() for v in found]),
    )
