"""The audit.json document, as typed records (its JSON Schema is schemas/audit.schema.json).

Shares are fractions (0-1); deviations are in percentage points of share. Targets are what
the shard plan puts in the committed shards, so a partial run is audited on what it has.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from vipo_build.audit.diversity import Diversity
from vipo_build.calibration.report import CalibrationReport
from vipo_build.config import AuditConfig
from vipo_build.judge.agreement import DatasetAgreement
from vipo_build.status import StageProgress
from vipo_build.strict import StrictModel

SCORE_BIN_EDGES = [1.0 + 0.25 * i for i in range(17)]  # judge scores are means of 1-5 votes
MOTION_BIN_EDGES = [0.0] + [round(10 ** (e / 4), 4) for e in range(-12, 5)]  # 0, then 0.001 to 10 frame widths per second


class CategoryBalance(StrictModel):
    category: str
    pairs: int = Field(description="Pairs of the category in the committed shards' manifests.")
    target: int = Field(description="Pairs the plan puts in the committed shards.")
    quota: int = Field(description="Pairs of the category in the whole planned dataset.")
    share: float = Field(description="Share of the committed pairs.")
    target_share: float = Field(description="Share the plan gives it in the committed shards.")
    deviation_pp: float = Field(description="share - target_share, in percentage points.")
    progress: float = Field(description="pairs / quota.")


class ShardCategory(StrictModel):
    pairs: int = Field(description="Rows of the category in the shard's manifest.")
    recorded: int = Field(description="Pairs of the category in the shard's commit record.")
    planned: int = Field(description="Pairs of the category the plan gives the shard.")
    share: float
    planned_share: float
    deviation_pp: float = Field(description="share - planned_share, in percentage points.")


class ShardBalance(StrictModel):
    shard: str
    pairs: int = Field(description="Rows of the shard's manifest.")
    planned: int | None = Field(description="Pairs the plan gives the shard; null for a shard the plan does not name.")
    categories: dict[str, ShardCategory]
    max_abs_deviation_pp: float


class Matchup(StrictModel):
    chosen: str = Field(description="Generator of the chosen candidate.")
    rejected: str = Field(description="Generator of the rejected candidate.")
    pairs: int


class GeneratorRecord(StrictModel):
    generator: str
    chosen: int = Field(description="Pairs against another generator where this one was chosen.")
    rejected: int = Field(description="Pairs against another generator where this one was rejected.")
    win_rate: float | None = Field(description="chosen / (chosen + rejected); null without cross-generator pairs.")


class Generators(StrictModel):
    matchups: list[Matchup] = Field(description="Pairs per (chosen, rejected) generator; equal names are cross-seed pairs.")
    generators: list[GeneratorRecord]


class Agreement(StrictModel):
    category: str
    pairs: int
    mean_vote_share: float | None = Field(description="Mean share of judge votes for the chosen candidate.")
    order_consistent_rate: float | None = Field(description="Share of pairs whose winner did not depend on presentation order.")


class CategoryFunnel(StrictModel):
    category: str
    judged: int = Field(description="Judged pairs: kept plus dropped.")
    kept: int
    written: int = Field(description="Pairs in committed shards.")
    dropped: dict[str, int] = Field(description="Dropped pairs by reason.")


class Funnel(StrictModel):
    """From the run's caches (as `vipo-build status` reads them), not from the shards."""

    prompts_requested: int = Field(description="Prompts asked of the expansion LLM.")
    prompts_accepted: int = Field(description="Prompts left after the length and duplicate checks: one candidate pair each.")
    judged: int = Field(description="Judged pairs: kept plus dropped.")
    kept: int
    written: int = Field(description="Pairs in committed shards.")
    dropped: dict[str, int] = Field(description="Dropped pairs by reason, all categories.")
    stages: dict[str, StageProgress] = Field(
        description="prompts: accepted of requested; candidates and judged: work units of those expanded; "
        "shards: committed of planned."
    )
    categories: list[CategoryFunnel]


class Resolution(StrictModel):
    width: int
    height: int
    pairs: int


class ClipLength(StrictModel):
    frames: int = Field(description="1 for images.")
    pairs: int


class Media(StrictModel):
    """Of the chosen candidate (both sides of a pair share resolution and length)."""

    resolutions: list[Resolution]
    clip_lengths: list[ClipLength]


class CategoryMotion(StrictModel):
    """A video category's clip figures (vipo_build/generate/motion.py) over its committed pairs."""

    category: str
    pairs: int
    chosen_motion_median: float
    rejected_motion_median: float
    motion_p10: float = Field(description="10th percentile of the motion of both sides' clips.")
    flicker_median: float = Field(description="Median flicker of both sides' clips.")
    chosen_histogram: list[int] = Field(description="Chosen clips per bin of motion.bin_edges.")
    rejected_histogram: list[int] = Field(description="Rejected clips per bin of motion.bin_edges.")


class MotionDistribution(StrictModel):
    bin_edges: list[float] = Field(description="Motion bin edges in frame widths per second (log-spaced); values beyond "
                                               "them count in the first or last bin.")
    categories: list[CategoryMotion] = Field(description="Each video category with committed pairs.")


class DimensionScores(StrictModel):
    dimension: str
    pairs: int = Field(description="Pairs scored on this dimension.")
    chosen_mean: float
    rejected_mean: float
    chosen_histogram: list[int] = Field(description="Counts per bin of scores.bin_edges.")
    rejected_histogram: list[int]


class Scores(StrictModel):
    bin_edges: list[float] = Field(description="Histogram bin edges; the last bin includes its right edge.")
    dimensions: list[DimensionScores]


class ShardCounts(StrictModel):
    planned: int
    committed: int
    incomplete: list[str] = Field(description="Shards with data files but no valid commit record (not audited).")
    running: bool = Field(description="A run holds the root's lock: its incomplete shards may be being written.")


class PairCounts(StrictModel):
    committed: int = Field(description="Pairs in the committed shards' manifests.")
    target: int = Field(description="Pairs the plan puts in the committed shards.")
    planned: int = Field(description="Pairs in the whole planned dataset.")


class RunAudit(StrictModel):
    root: str
    name: str
    config_hash: str
    shards: ShardCounts
    pairs: PairCounts
    categories: list[CategoryBalance]
    shard_balance: list[ShardBalance]
    generators: Generators
    agreement: list[Agreement] = Field(description="Over the kept pairs in committed shards.")
    judge: DatasetAgreement = Field(description="The judge's quality over every judged pair, kept or dropped.")
    judge_floors: AuditConfig
    calibration: CalibrationReport | None = Field(description="The judge against human labels (reports/calibration.json, "
                                                  "from `calibrate --labels`); None where none were given.")
    funnel: Funnel
    media: Media
    scores: Scores
    motion: MotionDistribution = Field(description="How much the clips of each video category move and flicker.")
    diversity: Diversity = Field(description="How varied each category's prompts are, over the committed pairs.")


OffenceKind = Literal["category", "shard_mix", "record_mismatch", "unplanned_shard", "judge_quality", "diversity",
                      "facet_share", "bad_shard"]


class Offender(StrictModel):
    root: str
    kind: OffenceKind = Field(
        description="category: a category's share of the committed pairs; shard_mix: a category's share of one shard; "
        "record_mismatch: commit record and manifest disagree; unplanned_shard: a committed shard the plan does not name; "
        "judge_quality: the judge falls below a floor of the config's audit section on a category; "
        "diversity: a category's prompts fall beyond a diversity floor of the audit section; "
        "facet_share: a facet value holds less than its least share (categories.<name>.facet_shares) overall or in a shard; "
        "bad_shard: a shard has data files but no valid commit record and no run is writing it."
    )
    category: str | None
    shard: str | None
    deviation_pp: float | None
    message: str


class ComparedCategory(StrictModel):
    category: str
    pairs: int
    share: float
    other_pairs: int
    other_share: float
    difference_pp: float = Field(description="share - other_share, in percentage points.")


class AuditReport(StrictModel):
    """`vipo-build audit ROOT`: balance of the committed shards against the shard plan."""

    version: str = Field(description="vipo-build version that wrote the report.")
    tolerance_pct: float = Field(description="Largest allowed |deviation|, in percentage points of share.")
    passed: bool
    offenders: list[Offender]
    run: RunAudit
    compare: RunAudit | None = Field(description="The --compare run, audited the same way.")
    comparison: list[ComparedCategory] | None = Field(description="Categories of both runs side by side.")
