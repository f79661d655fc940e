"""The `json` member of every shard sample, as a typed record (its JSON Schema is in schemas/).

Every field has one type in every sample of a shard set, whatever the category: per-dimension
scores are lists of records named by their dimension, never objects keyed by dimension names
(which differ between categories), so readers that infer one schema from the first samples
(Hugging Face `datasets`, Ray Data, DuckDB) read every sample with it.
"""

from __future__ import annotations

from pydantic import Field

from vipo_build.records import FacetValue
from vipo_build.strict import StrictModel


class SampleSide(StrictModel):
    generator: str
    seed: int
    width: int
    height: int
    frames: int = Field(description="1 for images.")
    fps: int | None
    sha256: str = Field(description="sha256 of the media file in the sample.")
    perturbed: bool = Field(description="Generated from the prompt's perturbed text (a known loser by construction).")
    motion: float | None = Field(description="A clip's mean optical flow per second, in frame widths; null for images.")
    flicker: float | None = Field(description="A clip's mean jump of mean luminance between frames (0-1); null for images.")


class VoteScore(StrictModel):
    dimension: str
    chosen: int = Field(description="1-5.")
    rejected: int = Field(description="1-5.")


class SampleVote(StrictModel):
    judge: str = Field(description="The judge (judge.engines[].name) that gave the vote.")
    order: str = Field(description="AB: the chosen candidate's side 0 was shown first; BA: side 1 first.")
    view: str = Field(description="What the judge saw of each candidate: image, contact_sheet (a clip's frames tiled) "
                                  "or video (the clip's sampled frames, as video).")
    sample: int
    winner: str = Field(description="chosen, rejected or tie.")
    scores: list[VoteScore] = Field(description="Per dimension; empty for an unusable answer.")


class DimensionScore(StrictModel):
    dimension: str
    chosen_mean: float
    rejected_mean: float
    margin: float = Field(description="chosen_mean - rejected_mean.")


class PanelJudge(StrictModel):
    judge: str
    winner: str = Field(description="chosen, rejected or tie: the side this judge's own votes picked.")
    reason: str = Field(description="This judge's own keep rule outcome (kept, tie, order_inconsistent, ...).")
    vote_share: float
    order_consistent: bool


class SampleJudge(StrictModel):
    votes: list[SampleVote] = Field(description="Every judge's votes.")
    vote_share: float = Field(description="Votes for the chosen candidate over all usable votes.")
    order_consistent: bool
    dimensions: list[DimensionScore] = Field(description="Mean scores of both sides and their margin, per dimension.")
    panel: list[PanelJudge] = Field(description="Each judge's own verdict when several judged the pair; empty for one.")


class SampleJson(StrictModel):
    key: str
    category: str
    modality: str
    prompt_id: str
    seed_subject: str
    facets: list[FacetValue] = Field(default_factory=list, description="The facet values the prompt was written for.")
    chosen: SampleSide
    rejected: SampleSide
    judge: SampleJudge
