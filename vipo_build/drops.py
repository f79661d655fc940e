"""Every reason a prompt or a pair is dropped, in pipeline order, with the step that drops it.

Each drop is for good: the same unit gives the same prompts, candidates and votes again, so a
dropped item would be dropped again by any rerun. (A unit a stage fails on is not dropped: it is
recorded under failed/ and retried by `run --retry-failed`.) The summary, `status` and the audit
show reasons in this order; the judge's verdicts use the `judge` ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Step = Literal["filter", "generate", "judge", "balance"]


@dataclass(frozen=True)
class DropReason:
    name: str
    step: Step
    meaning: str


REASONS: tuple[DropReason, ...] = (
    DropReason("malformed", "filter", "the expansion LLM's answer is not the JSON asked for"),
    DropReason("no_perturbation", "filter", "the answer has no usable controlled edit, where the category needs one"),
    DropReason("control_chars", "filter", "control characters in the prompt"),
    DropReason("too_short", "filter", "fewer characters than prompts.filters.lint.min_chars"),
    DropReason("too_long", "filter", "more characters than prompts.filters.lint.max_chars"),
    DropReason("too_few_words", "filter", "fewer words than prompts.filters.lint.min_words"),
    DropReason("url", "filter", "a URL in the prompt"),
    DropReason("unbalanced_quotes", "filter", "straight or curly double quotes that do not pair up"),
    DropReason("unbalanced_brackets", "filter", "brackets that do not pair up"),
    DropReason("repetition", "filter", "repeated word trigrams beyond prompts.filters.lint.max_repeated_share"),
    DropReason("blocklist", "filter", "a blocklisted phrase"),
    DropReason("duplicate", "filter", "equal to a kept prompt after normalisation"),
    DropReason("unsafe", "filter", "the safety classifier says so"),
    DropReason("near_duplicate", "filter", "MinHash near-duplicate of a kept prompt"),
    DropReason("semantic_duplicate", "filter", "embedding near-duplicate of a kept prompt"),
    DropReason("below_resolution", "generate", "a candidate smaller than asked for"),
    DropReason("too_few_frames", "generate", "a clip with fewer frames than asked for"),
    DropReason("static_clip", "generate", "a clip that barely moves: its motion is below generate.video.min_motion"),
    DropReason("judge_error", "judge", "no valid vote in one of the two presentation orders"),
    DropReason("tie", "judge", "neither side wins the votes"),
    DropReason("order_inconsistent", "judge", "the two presentation orders pick different winners"),
    DropReason("low_agreement", "judge", "the winner's share of the votes is below judge.threshold"),
    DropReason("critical_conflict", "judge", "the winner loses on a critical dimension of the rubric"),
    DropReason("judges_disagree", "judge", "a panel of judges does not agree on the winner"),
    DropReason("facet_share", "balance", "kept by the judge, left out so that its shard holds the least facet shares"),
)
NAMES = tuple(r.name for r in REASONS)


def of_step(step: Step) -> tuple[str, ...]:
    return tuple(r.name for r in REASONS if r.step == step)


def in_order(counts: dict[str, int]) -> dict[str, int]:
    """Drop counts in pipeline order (a reason this list does not know, from another version, last)."""
    return dict(sorted(counts.items(), key=lambda item: (NAMES.index(item[0]) if item[0] in NAMES else len(NAMES), item[0])))
