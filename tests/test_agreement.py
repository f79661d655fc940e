"""Agreement statistics against statsmodels and scikit-learn on random data, and on small cases worked by hand."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score
from statsmodels.stats.inter_rater import aggregate_raters
from statsmodels.stats.inter_rater import fleiss_kappa as statsmodels_fleiss

from vipo_build import drops
from vipo_build.judge.aggregate import aggregate, to_vote
from vipo_build.judge.agreement import (
    FUNNEL,
    cohen_kappa,
    dataset_agreement,
    fleiss_kappa,
    inter_rater_agreement,
    judge_agreement,
    leave_one_out_accuracy,
    majority_label,
    mean_accuracy,
    pair_agreement,
    pairwise_agreement,
    rating_table,
    vote_counts,
)

DIMS = ["alignment", "aesthetics"]

# Three raters on three items, worked below.
HAND_ITEMS = [{"r1": "A", "r2": "A", "r3": "B"}, {"r1": "A", "r2": "B", "r3": "B"}, {"r1": "B", "r2": "B"}]


def random_ratings(rng: np.random.Generator, items: int, raters: int, p: list[float]) -> np.ndarray:
    """items x raters labels 0..len(p)-1; each item has a true label most raters follow, so kappa is well above 0."""
    truth = rng.choice(len(p), size=items, p=p)
    noise = rng.choice(len(p), size=(items, raters))
    return np.where(rng.random((items, raters)) < 0.6, truth[:, None], noise)


@pytest.mark.parametrize("seed", range(5))
def test_fleiss_kappa_matches_statsmodels(seed):
    rng = np.random.default_rng(seed)
    data = random_ratings(rng, items=60, raters=int(rng.integers(2, 20)), p=[0.5, 0.3, 0.2])
    table, _ = aggregate_raters(data, n_cat=3)
    assert fleiss_kappa(table) == pytest.approx(statsmodels_fleiss(table), abs=1e-12)


def test_fleiss_kappa_by_hand():
    # P_i = 1, 1, (4 + 1 - 3) / 6 = 1/3 -> P = 7/9; p = (5/9, 4/9) -> Pe = 41/81; (7/9 - 41/81) / (40/81) = 22/40
    assert fleiss_kappa([[3, 0], [0, 3], [2, 1]]) == pytest.approx(0.55)
    # Varying raters: the 1-rating item is left out; P_i = 1, 0, (9 + 1 - 4) / 12 -> P = 0.5;
    # p = (6/8, 2/8) -> Pe = 0.625; (0.5 - 0.625) / 0.375 = -1/3
    assert fleiss_kappa([[2, 0], [1, 1], [3, 1], [1, 0]]) == pytest.approx(-1 / 3)
    assert fleiss_kappa([[3, 0], [2, 0]]) is None  # every rating in one category
    assert fleiss_kappa([[1, 0], [0, 1]]) is None  # no item with two ratings


@pytest.mark.parametrize("seed", range(5))
def test_cohen_kappa_matches_scikit_learn(seed):
    rng = np.random.default_rng(100 + seed)
    labels = np.array(["A", "B", "tie"])
    first = rng.choice(3, size=80, p=[0.45, 0.45, 0.1])
    second = np.where(rng.random(80) < 0.7, first, rng.choice(3, size=80))
    a, b = list(labels[first]), list(labels[second])
    assert cohen_kappa(a, b) == pytest.approx(cohen_kappa_score(a, b), abs=1e-12)


def test_cohen_kappa_by_hand():
    # po = 3/4; pe = 0.5 * 0.25 + 0.5 * 0.75 = 0.5 -> (0.75 - 0.5) / 0.5
    assert cohen_kappa(["A", "A", "B", "B"], ["A", "B", "B", "B"]) == pytest.approx(0.5)
    assert cohen_kappa(["A", "B"], ["B", "A"]) == pytest.approx(-1.0)
    assert cohen_kappa(["A", "A"], ["A", "A"]) is None
    assert cohen_kappa([], []) is None
    with pytest.raises(ValueError):
        cohen_kappa(["A"], ["A", "B"])


def test_majority_label():
    assert majority_label(["A", "B", "A"]) == "A"
    assert majority_label(["A", "B"]) is None
    assert majority_label([]) is None


def test_leave_one_out_accuracy_by_hand():
    # item 1: r1, r2 see a tied rest (not scored); r3's rest says A, r3 said B.
    # item 2: r1's rest says B, r1 said A; r2, r3 see a tied rest.
    # item 3: r1's rest (r2) says B, r1 said B; r2's rest (r1) says B, r2 said B.
    accuracy = leave_one_out_accuracy(HAND_ITEMS)
    assert {r: (a.scored, a.agreed, a.accuracy) for r, a in accuracy.items()} == {
        "r1": (2, 1, 0.5), "r2": (1, 1, 1.0), "r3": (1, 0, 0.0)}
    assert mean_accuracy(accuracy) == pytest.approx(0.5)
    lone = leave_one_out_accuracy([{"r1": "A"}])["r1"]
    assert (lone.scored, lone.accuracy) == (0, None)
    assert mean_accuracy({"r1": lone}) is None


def test_pairwise_agreement_by_hand():
    # (r1, r2): items 1-3, agree on 1 and 3 -> 2/3; (r1, r3): items 1-2 -> 0; (r2, r3): items 1-2, agree on 2 -> 1/2
    assert pairwise_agreement(HAND_ITEMS) == pytest.approx((2 / 3 + 0 + 1 / 2) / 3)
    assert pairwise_agreement([{"r1": "A"}, {"r2": "B"}]) is None


def test_inter_rater_agreement_on_complete_data():
    rng = np.random.default_rng(7)
    data = random_ratings(rng, items=50, raters=6, p=[0.5, 0.5])
    items = [{f"r{j}": "AB"[label] for j, label in enumerate(row)} for row in data]
    result = inter_rater_agreement(items, ["A", "B"])
    assert (result.items, result.raters) == (50, 6)
    assert result.fleiss_kappa == pytest.approx(statsmodels_fleiss(aggregate_raters(data, n_cat=2)[0]), abs=1e-12)
    by_pair = [np.mean(data[:, i] == data[:, j]) for i in range(6) for j in range(i + 1, 6)]
    assert result.pairwise_agreement == pytest.approx(np.mean(by_pair))


def test_inter_rater_agreement_with_varying_raters():
    items = [*HAND_ITEMS, {"r4": "A"}]  # one rating: nothing to agree with
    result = inter_rater_agreement(items, ["A", "B"])
    assert (result.items, result.raters) == (3, 3)
    # counts (2,1), (1,2), (0,2): P_i = 1/3, 1/3, 1 -> P = 5/9; p = (3/8, 5/8) -> Pe = 34/64
    assert result.fleiss_kappa == pytest.approx((5 / 9 - 34 / 64) / (1 - 34 / 64))
    with pytest.raises(ValueError, match="'skip'"):
        rating_table([{"r1": "skip"}], ["A", "B"])


# ---- the judge ---------------------------------------------------------------------------------


def answer(winner: str, a: int = 3, b: int = 3) -> dict:
    return {"winner": winner, "scores_a": {"alignment": a, "aesthetics": 3}, "scores_b": {"alignment": b, "aesthetics": 3}}


def verdict(pair_id: str, ab: list, ba: list, critical: tuple = ()):
    votes = [to_vote(x, "AB", i, i, DIMS, "j", "image") for i, x in enumerate(ab)]
    votes += [to_vote(x, "BA", i, 100 + i, DIMS, "j", "image") for i, x in enumerate(ba)]
    return aggregate(pair_id, votes, 0.75, list(critical))


def test_pair_agreement_margins_are_chosen_minus_rejected():
    # side 1 wins: "B" in AB order, "A" in BA order; side 1 scores 5 and 4 on alignment -> 4.5 vs 2
    result = pair_agreement(verdict("p", [answer("B", 2, 5), answer("B", 2, 4)], [answer("A", 4, 2), answer("A", 5, 2)]))
    assert (result.vote_share, result.order_consistent) == (1.0, True)
    assert result.margins == {"alignment": 2.5, "aesthetics": 0.0}
    assert pair_agreement(verdict("t", [answer("tie")] * 2, [answer("tie")] * 2)).margins == {}


def judged() -> dict[str, list]:
    """Two categories, every drop reason once; all votes usable except in the judge_error pair."""
    a, b = answer("A", 5, 2), answer("B", 2, 5)  # side 0 wins in AB order / in BA order
    return {
        "cat1": [
            verdict("kept", [a, a], [b, b]),  # votes (4, 0, 0)
            verdict("tie", [answer("tie")] * 2, [answer("tie")] * 2),  # (0, 0, 4)
            verdict("order", [a, a], [answer("A"), answer("B")]),  # (3, 1, 0): BA order is split
        ],
        "cat2": [
            verdict("low", [a, answer("tie")], [b, answer("tie")]),  # (2, 0, 2)
            verdict("critical", [answer("A", 2, 4)] * 2, [answer("B", 4, 2)] * 2, critical=("alignment",)),  # (4, 0, 0)
            verdict("error", [None, None], [None, None]),  # no usable vote
        ],
    }


def test_judge_agreement_by_hand():
    verdicts = judged()
    result = dataset_agreement(verdicts)
    overall = result.overall
    assert {v.reason for vs in verdicts.values() for v in vs} <= {*drops.of_step("judge"), "kept"}  # the shared list
    assert overall.funnel == dict.fromkeys(FUNNEL, 1) | {"judges_disagree": 0}  # a reason of panels only
    assert list(result.categories["cat1"].funnel.items())[:3] == [("judge_error", 0), ("tie", 1), ("order_inconsistent", 1)]
    # decided: kept, order, low, critical; order-consistent: kept, low, critical
    assert (overall.pairs, overall.decided, overall.order_consistency_rate) == (6, 4, 0.75)
    assert overall.mean_vote_share == pytest.approx((1.0 + 0.75 + 0.5 + 1.0) / 4)
    # alignment margins: kept 5-2; order and low (5+5+3+3)/4 - (2+2+3+3)/4 (3-3 votes count); critical 2-4
    assert overall.mean_margins == pytest.approx({"alignment": (3 + 1.5 + 1.5 - 2) / 4, "aesthetics": 0.0})
    table = np.array([vote_counts(v) for found in verdicts.values() for v in found])
    assert table.tolist() == [[4, 0, 0], [0, 0, 4], [3, 1, 0], [2, 0, 2], [4, 0, 0], [0, 0, 0]]
    assert overall.fleiss_kappa == pytest.approx(statsmodels_fleiss(table[:5]))
    assert result.categories["cat2"].order_consistency_rate == 1.0
    assert judge_agreement([]).fleiss_kappa is None
