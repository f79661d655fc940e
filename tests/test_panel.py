"""Several judges: how their verdicts combine, and their agreement with each other."""

from __future__ import annotations

import random

import pytest
from sklearn.metrics import cohen_kappa_score

from vipo_build.config import EngineConfig, JudgeEngineConfig, JudgeStageConfig
from vipo_build.judge.aggregate import aggregate, to_vote
from vipo_build.judge.agreement import AgreementTally
from vipo_build.judge.panel import combine
from vipo_build.prompts.categories import load_category
from vipo_build.records import Verdict

CATEGORY = load_category("aesthetics")  # its critical dimension: aesthetics
DIMS = CATEGORY.rubric.dimension_names
THRESHOLD = 0.75


def panel(rule: str) -> JudgeStageConfig:
    engines = [JudgeEngineConfig(name=n, engine=EngineConfig(model=f"/models/{n}")) for n in ("general", "reward")]
    return JudgeStageConfig(engines=engines, combine=rule, votes=2, threshold=THRESHOLD)


def answer(winner: str) -> dict:
    """Side-neutral scores, so only the winners decide."""
    return {"winner": winner, "scores_a": dict.fromkeys(DIMS, 3), "scores_b": dict.fromkeys(DIMS, 3)}


def judged(judge: str, ab: list[str], ba: list[str], pair_id: str = "aesthetics-u000000-p000") -> Verdict:
    """One judge's verdict from its winners in AB and BA order ("A", "B", "tie")."""
    votes = [to_vote(answer(w), "AB", i, i, DIMS, judge, "image") for i, w in enumerate(ab)]
    votes += [to_vote(answer(w), "BA", i, 100 + i, DIMS, judge, "image") for i, w in enumerate(ba)]
    return aggregate(pair_id, votes, THRESHOLD, CATEGORY.rubric.critical)


SIDE0 = (["A", "A"], ["B", "B"])  # side 0 shown first in AB, second in BA: every vote for side 0
SIDE1 = (["B", "B"], ["A", "A"])


def combined(rule: str, general: Verdict, reward: Verdict) -> Verdict:
    [verdict] = combine(panel(rule), CATEGORY, {"general": [general], "reward": [reward]})
    return verdict


def test_all_agree_keeps_a_pair_only_when_every_judge_keeps_the_same_side():
    both = combined("all_agree", judged("general", *SIDE0), judged("reward", *SIDE0))
    assert (both.kept, both.reason, both.chosen_side, both.vote_share, both.votes_for) == (True, "kept", 0, 1.0, [8, 0, 0])
    assert [(v.judge, v.order) for v in both.votes] == [("general", "AB")] * 2 + [("general", "BA")] * 2 + \
        [("reward", "AB")] * 2 + [("reward", "BA")] * 2  # each judge's votes kept, named
    assert [(p.judge, p.kept, p.chosen_side) for p in both.panel] == [("general", True, 0), ("reward", True, 0)]

    split = judged("reward", ["A", "A"], ["A", "B"])  # side 0 wins 3 to 1, but not in BA order
    one = combined("all_agree", judged("general", *SIDE0), split)
    assert (one.kept, one.reason) == (False, "order_inconsistent") and split.reason == "order_inconsistent"
    assert [p.reason for p in one.panel] == ["kept", "order_inconsistent"]

    opposed = combined("all_agree", judged("general", *SIDE0), judged("reward", *SIDE1))
    assert (opposed.kept, opposed.reason) == (False, "judges_disagree")


def test_pooled_applies_the_keep_rules_to_all_votes_together():
    general, reward = judged("general", *SIDE0), judged("reward", ["A", "tie"], ["B", "tie"])
    assert reward.reason == "low_agreement"  # 2 of 4 votes; pooled, 6 of 8 reach the threshold
    pooled = combined("pooled", general, reward)
    expected = aggregate(general.pair_id, general.votes + reward.votes, THRESHOLD, CATEGORY.rubric.critical)
    assert pooled.model_dump(exclude={"panel"}) == expected.model_dump(exclude={"panel"})
    assert (pooled.kept, pooled.vote_share) == (True, 6 / 8)
    assert combined("all_agree", general, reward).reason == "low_agreement"
    assert combined("pooled", judged("general", *SIDE0), judged("reward", *SIDE1)).reason == "tie"


def test_a_defect_found_before_judging_is_the_reason_for_every_rule():
    unjudged = [aggregate("aesthetics-u000000-p000", [], THRESHOLD, [], "below_resolution")] * 2
    for rule in ("all_agree", "pooled"):
        verdict = combined(rule, unjudged[0], unjudged[1])
        assert (verdict.kept, verdict.reason, verdict.votes) == (False, "below_resolution", [])


def test_one_judge_verdicts_pass_through_unchanged():
    config = panel("all_agree").model_copy(update={"engines": panel("all_agree").engines[:1]})
    verdict = judged("general", *SIDE0)
    assert combine(config, CATEGORY, {"general": [verdict]}) == [verdict]


def test_agreement_between_judges_is_cohens_kappa_of_their_winners():
    rng = random.Random(5)
    ways = [SIDE0, SIDE1, (["tie", "tie"], ["tie", "tie"]), (["A", "A"], ["A", "A"])]
    tally, labels = AgreementTally(), {"general": [], "reward": []}
    for i in range(200):
        general = rng.choice(ways)
        reward = general if rng.random() < 0.6 else rng.choice(ways)  # agrees more often than chance
        pair = f"aesthetics-u000000-p{i:03d}"
        verdict = combined("all_agree", judged("general", *general, pair), judged("reward", *reward, pair))
        tally.add(verdict)
        for p in verdict.panel:
            labels[p.judge].append(-1 if p.chosen_side is None else p.chosen_side)
    [between] = tally.result().between_judges
    assert (between.first, between.second, between.pairs) == ("general", "reward", 200)
    assert between.cohen_kappa == pytest.approx(cohen_kappa_score(labels["general"], labels["reward"]))
    assert between.agreement == pytest.approx(sum(a == b for a, b in zip(*labels.values())) / 200)
    assert 0.3 < between.cohen_kappa < 0.9
    halves = AgreementTally(), AgreementTally()  # the run adds each unit's tally to its category's
    assert AgreementTally.merged([tally, *halves]).result().between_judges == [between]
