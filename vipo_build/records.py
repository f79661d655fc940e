"""Records that cross stage boundaries: Prompt -> Candidate -> Vote/Verdict -> Pair."""

from __future__ import annotations

import hashlib
from typing import Literal

from pydantic import Field, model_validator

from vipo_build import drops
from vipo_build.prompts.categories import Modality
from vipo_build.strict import StrictModel

Winner = Literal["A", "B", "tie"]
Order = Literal["AB", "BA"]
ViewKind = Literal["image", "contact_sheet", "video"]  # what the judge was shown of a candidate


class FacetValue(StrictModel):
    facet: str
    value: str


class Prompt(StrictModel):
    """One expanded prompt; `unit` and `index` place it in its category's fixed work units."""

    id: str = Field(description="Stable id: {category}-u{unit}-p{index}.")
    category: str
    modality: Modality
    unit: int
    index: int
    round: int = Field(description="Expansion round that produced it.")
    seed_subject: str
    facets: list[FacetValue] = Field(default_factory=list, description="The facet values drawn for the request, "
                                     "as records (readers infer one schema whatever the category's facets).")
    text: str
    rendered_text: str | None = Field(None, description="The words the image must show, drawn from the category's vocabulary "
                                                        "and quoted in the text; None for categories without `words`.")
    constraints: list[str] = Field(default_factory=list, description="Checkable constraints the LLM says the prompt carries.")
    perturbed_text: str | None = Field(None, description="The prompt after the category's controlled edit; None without one.")
    perturbation: str | None = Field(None, description="What the edit changed, in the LLM's words.")
    expansion_model: str


class CandidateSpec(StrictModel):
    """What to generate: everything that determines a candidate's pixels."""

    prompt_id: str
    side: int = Field(ge=0, le=1, description="0 or 1: the two candidates of a pair.")
    generator: str
    seed: int
    width: int
    height: int
    frames: int = Field(1, description="1 for images.")
    fps: int | None = None
    perturbed: bool = Field(False, description="Generated from the prompt's perturbed text: a known loser.")


class ClipMotion(StrictModel):
    """Temporal figures of a clip, from its decoded file (vipo_build/generate/motion.py)."""

    motion: float = Field(description="Mean optical flow per second, in frame widths.")
    flicker: float = Field(description="Mean jump of the mean luminance between consecutive frames, 0-1.")
    static: bool = Field(description="motion is below generate.video.min_motion: a static_clip defect.")


class Candidate(CandidateSpec):
    """A generated, encoded candidate."""

    format: str = Field(description="File extension of media: jpg, png, webp or mp4.")
    media: bytes
    sha256: str = Field("", description="sha256 of media; computed once, where the candidate is encoded.")
    defect: str | None = Field(None, description="Why the candidate cannot be used (below_resolution, too_few_frames, "
                                                 "static_clip); its pair is dropped with this reason, unjudged.")
    motion: ClipMotion | None = Field(None, description="A clip's temporal figures; None for images.")

    @model_validator(mode="after")
    def _hash_media(self) -> Candidate:
        if not self.sha256:
            self.sha256 = hashlib.sha256(self.media).hexdigest()
        return self


class Vote(StrictModel):
    """One judge answer, mapped back to candidate sides."""

    judge: str = Field(description="The judge (judge.engines[].name) that gave it.")
    order: Order = Field(description="AB: side 0 shown first; BA: side 1 shown first.")
    view: ViewKind = Field(description="What the judge saw of each candidate: the image, a contact sheet of a clip's "
                                       "frames, or the clip as video.")
    sample: int
    seed: int
    winner_side: int | None = Field(description="0, 1, or None for a tie or an unusable answer.")
    scores: list[dict[str, int]] = Field(description="Per-dimension 1-5 scores of side 0 and side 1.")
    valid: bool = True


class PanelVerdict(StrictModel):
    """One judge's own verdict on a pair judged by several."""

    judge: str
    kept: bool
    reason: str
    chosen_side: int | None
    vote_share: float
    order_consistent: bool


class Verdict(StrictModel):
    """The aggregated judgement of one pair and why it was kept or dropped."""

    pair_id: str
    kept: bool
    reason: str = Field(description=f"kept, or why not: {', '.join((*drops.of_step('generate'), *drops.of_step('judge')))}.")
    chosen_side: int | None
    vote_share: float = Field(description="Votes for the winner over all votes.")
    order_consistent: bool = Field(description="Both presentation orders picked the same winner.")
    votes_for: list[int] = Field(description="Votes for side 0, side 1, tie.")
    mean_scores: list[dict[str, float]] = Field(description="Mean per-dimension scores of side 0 and side 1.")
    votes: list[Vote] = Field(description="Every judge's votes.")
    panel: list[PanelVerdict] = Field(default_factory=list, description="Each judge's own verdict, in config order, "
                                      "when several judged the pair (judge.combine made this one of them); empty for one judge.")


class Pair(StrictModel):
    """A kept pair, as written to a shard."""

    key: str = Field(description="Stable pair id: {category}-u{unit}-p{index}.")
    prompt: Prompt
    chosen: Candidate
    rejected: Candidate
    verdict: Verdict
