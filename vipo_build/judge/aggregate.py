"""From judge answers to votes, and from votes to a keep/drop verdict with its reason."""

from __future__ import annotations

from collections import Counter

from vipo_build.records import Order, Verdict, ViewKind, Vote



def to_vote(answer: dict | None, order: Order, sample: int, seed: int, dimensions: list[str], judge: str,
            view: ViewKind) -> Vote:
    """Map an answer given in presentation order (A shown first) back to candidate sides 0 and 1."""
    usable = (
        answer is not None
        and answer.get("winner") in ("A", "B", "tie")
        and all(isinstance(answer.get(k), dict) and all(d in answer[k] for d in dimensions) for k in ("scores_a", "scores_b"))
    )
    if not usable:
        return Vote(judge=judge, order=order, view=view, sample=sample, seed=seed, winner_side=None, scores=[{}, {}],
                    valid=False)
    first, second = (0, 1) if order == "AB" else (1, 0)
    winner = {"A": first, "B": second, "tie": None}[answer["winner"]]
    scores = [{}, {}]
    scores[first] = {d: int(answer["scores_a"][d]) for d in dimensions}
    scores[second] = {d: int(answer["scores_b"][d]) for d in dimensions}
    return Vote(judge=judge, order=order, view=view, sample=sample, seed=seed, winner_side=winner, scores=scores)


def _majority(votes: list[Vote]) -> int | None:
    counts = Counter(v.winner_side for v in votes if v.winner_side is not None)
    if counts[0] == counts[1]:
        return None
    return 0 if counts[0] > counts[1] else 1


def aggregate(pair_id: str, votes: list[Vote], threshold: float, critical: list[str], defect: str | None = None) -> Verdict:
    """Keep the pair only if a side wins, both orders agree, its vote share reaches the threshold,
    and it does not lose on a critical dimension. The first failed rule is the drop reason; a
    candidate's defect (too small, too short), found before judging, comes first of all."""
    valid = [v for v in votes if v.valid]
    counts = [sum(v.winner_side == s for v in valid) for s in (0, 1)] + [sum(v.winner_side is None for v in valid)]
    dimensions = list(valid[0].scores[0]) if valid else []
    mean_scores = [
        {d: round(sum(v.scores[s][d] for v in valid) / len(valid), 4) for d in dimensions} for s in (0, 1)
    ]
    winner = _majority(valid)
    share = counts[winner] / len(valid) if valid and winner is not None else 0.0
    by_order = [_majority([v for v in valid if v.order == o]) for o in ("AB", "BA")]
    consistent = winner is not None and by_order[0] == by_order[1] == winner
    if defect:
        reason = defect
    elif not valid:
        reason = "judge_error"
    elif winner is None:
        reason = "tie"
    elif not consistent:
        reason = "order_inconsistent"
    elif share < threshold:
        reason = "low_agreement"
    elif any(mean_scores[winner][d] < mean_scores[1 - winner][d] for d in critical):
        reason = "critical_conflict"
    else:
        reason = "kept"
    return Verdict(
        pair_id=pair_id,
        kept=reason == "kept",
        reason=reason,
        chosen_side=winner,
        vote_share=round(share, 6),
        order_consistent=consistent,
        votes_for=counts,
        mean_scores=mean_scores,
        votes=votes,
    )
