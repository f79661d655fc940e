"""The `json` member of every shard sample, as a typed record (its JSON Schema is in schemas/)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SampleSide(_Record):
    generator: str
    seed: int
    width: int
    height: int
    frames: int = Field(description="1 for images.")
    fps: int | None
    sha256: str = Field(description="sha256 of the media file in the sample.")
    perturbed: bool = Field(description="Generated from the prompt's perturbed text (a known loser by construction).")


class SampleVote(_Record):
    order: str = Field(description="AB: the chosen candidate's side 0 was shown first; BA: side 1 first.")
    sample: int
    winner: str = Field(description="chosen, rejected or tie.")
    scores: dict[str, dict[str, int]] = Field(description="{chosen: {dimension: 1-5}, rejected: {...}}; empty for an unusable answer.")


class SampleJudge(_Record):
    votes: list[SampleVote]
    vote_share: float = Field(description="Votes for the chosen candidate over all usable votes.")
    order_consistent: bool
    mean_scores: dict[str, dict[str, float]] = Field(description="{chosen: {dimension: mean}, rejected: {...}}.")
    score_margins: dict[str, float] = Field(description="Chosen minus rejected mean score per dimension.")


class SampleJson(_Record):
    key: str
    category: str
    modality: str
    prompt_id: str
    seed_subject: str
    chosen: SampleSide
    rejected: SampleSide
    judge: SampleJudge
