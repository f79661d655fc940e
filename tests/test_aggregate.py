"""Keep/drop rules on constructed votes."""

from __future__ import annotations

from vipo_build.judge.aggregate import aggregate, to_vote

DIMS = ["alignment", "aesthetics"]


def answer(winner: str, a: int = 3, b: int = 3) -> dict:
    return {"winner": winner, "scores_a": {"alignment": a, "aesthetics": 3}, "scores_b": {"alignment": b, "aesthetics": 3}}


def votes(ab: list, ba: list) -> list:
    out = [to_vote(x, "AB", i, i, DIMS, "j", "image") for i, x in enumerate(ab)]
    return out + [to_vote(x, "BA", i, 100 + i, DIMS, "j", "image") for i, x in enumerate(ba)]


def test_votes_map_back_to_sides():
    v = to_vote(answer("A", a=5, b=1), "BA", 0, 7, DIMS, "j", "image")
    assert v.winner_side == 1 and v.scores[1]["alignment"] == 5 and v.scores[0]["alignment"] == 1
    assert to_vote(answer("tie"), "AB", 0, 7, DIMS, "j", "image").winner_side is None


def test_consistent_unanimous_pair_is_kept():
    # side 0 wins: shown first in AB ("A"), second in BA ("B")
    verdict = aggregate("p", votes([answer("A", 5, 2)] * 2, [answer("B", 2, 5)] * 2), 0.75, ["alignment"])
    assert (verdict.kept, verdict.reason, verdict.chosen_side, verdict.vote_share) == (True, "kept", 0, 1.0)
    assert verdict.order_consistent and verdict.votes_for == [4, 0, 0]
    assert verdict.mean_scores[0]["alignment"] == 5 and verdict.mean_scores[1]["alignment"] == 2


def test_position_bias_is_order_inconsistent():
    # the judge always picks what it sees first
    verdict = aggregate("p", votes([answer("A")] * 2, [answer("A")] * 2), 0.5 + 1e-9, [])
    assert (verdict.kept, verdict.reason) == (False, "tie")
    verdict = aggregate("p", votes([answer("A")] * 2, [answer("A"), answer("B")]), 0.51, [])
    assert (verdict.kept, verdict.reason) == (False, "order_inconsistent")


def test_low_agreement_and_critical_conflict():
    verdict = aggregate("p", votes([answer("A"), answer("tie")], [answer("B"), answer("tie")]), 0.75, [])
    assert (verdict.reason, verdict.vote_share) == ("low_agreement", 0.5)
    verdict = aggregate("p", votes([answer("A", 2, 4)] * 2, [answer("B", 4, 2)] * 2), 0.75, ["alignment"])
    assert (verdict.kept, verdict.reason) == (False, "critical_conflict")


def test_malformed_answers_are_excluded_and_all_bad_is_judge_error():
    verdict = aggregate("p", votes([None, {"winner": "A"}], [None, None]), 0.75, [])
    assert (verdict.kept, verdict.reason) == (False, "judge_error")
    verdict = aggregate("p", votes([answer("A"), None], [answer("B"), None]), 0.75, [])
    assert (verdict.kept, verdict.vote_share, verdict.votes_for) == (True, 1.0, [2, 0, 0])


def test_a_defective_candidate_drops_the_pair_before_any_vote():
    verdict = aggregate("p", [], 0.75, [], defect="below_resolution")
    assert (verdict.kept, verdict.reason, verdict.votes) == (False, "below_resolution", [])
