"""The audit's figures, computed from what collect.py read (no I/O here).

Counts are nested dicts, shard -> category -> pairs, for the plan, the manifests and the
commit records alike, so the three compare cell by cell.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from vipo_build.audit.collect import RootContents
from vipo_build.audit.diversity import diversity_report
from vipo_build.status import RootStatus
from vipo_build.audit.model import (
    MOTION_BIN_EDGES, SCORE_BIN_EDGES, Agreement, CategoryBalance, CategoryFunnel, CategoryMotion, ClipLength,
    ComparedCategory, DimensionScores, Funnel, GeneratorRecord, Generators, Matchup, Media, MotionDistribution, PairCounts,
    Resolution, RunAudit, Scores, ShardBalance, ShardCategory, ShardCounts,
)

Counts = dict[str, dict[str, int]]  # shard -> category -> pairs


def ratio(part: float, whole: float) -> float:
    return round(part / whole, 6) if whole else 0.0


def points(share: float, target_share: float) -> float:
    """Deviation in percentage points, rounded so that reports and checks see the same number."""
    return round(100 * (share - target_share), 4)


def plan_counts(plan: pa.Table) -> Counts:
    counts: Counts = {}
    for shard, category, pairs in zip(*(plan.column(c).to_pylist() for c in ("shard", "category", "pairs"))):
        counts.setdefault(shard, {})[category] = pairs
    return counts


def manifest_counts(manifests: pa.Table) -> Counts:
    counts: Counts = {}
    grouped = manifests.group_by(["shard", "category"]).aggregate([([], "count_all")])
    for shard, category, pairs in zip(*(grouped.column(c).to_pylist() for c in ("shard", "category", "count_all"))):
        counts.setdefault(shard, {})[category] = pairs
    return counts


def record_counts(records: dict[str, dict]) -> Counts:
    return {shard: dict(record["categories"]) for shard, record in records.items()}


def category_order(quotas: dict[str, int], planned: Counts, written: Counts) -> list[str]:
    """Categories in plan order (the config file's; run.json has them sorted), then any others the shards hold."""
    known = dict.fromkeys(c for shard in planned.values() for c in shard) | dict.fromkeys(quotas)
    extra = {c for shard in written.values() for c in shard} - known.keys()
    return [*known, *sorted(extra)]


def totals(counts: Counts, shards: list[str]) -> Counter:
    total: Counter = Counter()
    for shard in shards:
        total.update(counts.get(shard, {}))
    return total


def category_balance(quotas: dict[str, int], planned: Counts, written: Counts, shards: list[str]) -> list[CategoryBalance]:
    pairs, target = totals(written, shards), totals(planned, shards)
    all_pairs, all_target = sum(pairs.values()), sum(target.values())
    rows = []
    for category in category_order(quotas, planned, written):
        share, target_share = ratio(pairs[category], all_pairs), ratio(target[category], all_target)
        rows.append(CategoryBalance(
            category=category, pairs=pairs[category], target=target[category], quota=quotas.get(category, 0),
            share=share, target_share=target_share, deviation_pp=points(share, target_share),
            progress=ratio(pairs[category], quotas.get(category, 0)),
        ))
    return rows


def shard_balance(planned: Counts, written: Counts, recorded: Counts, shards: list[str]) -> list[ShardBalance]:
    rows = []
    for shard in shards:
        plan, manifest, record = planned.get(shard, {}), written.get(shard, {}), recorded.get(shard, {})
        pairs, planned_pairs = sum(manifest.values()), sum(plan.values())
        categories = {}
        for category in [*plan, *sorted((manifest.keys() | record.keys()) - plan.keys())]:
            share, planned_share = ratio(manifest.get(category, 0), pairs), ratio(plan.get(category, 0), planned_pairs)
            categories[category] = ShardCategory(
                pairs=manifest.get(category, 0), recorded=record.get(category, 0), planned=plan.get(category, 0),
                share=share, planned_share=planned_share, deviation_pp=points(share, planned_share),
            )
        rows.append(ShardBalance(
            shard=shard, pairs=pairs, planned=planned_pairs if shard in planned else None, categories=categories,
            max_abs_deviation_pp=max((abs(c.deviation_pp) for c in categories.values()), default=0.0),
        ))
    return rows


def generators(manifests: pa.Table) -> Generators:
    grouped = manifests.group_by(["chosen_generator", "rejected_generator"]).aggregate([([], "count_all")])
    columns = (grouped.column(k).to_pylist() for k in ("chosen_generator", "rejected_generator", "count_all"))
    matchups = [Matchup(chosen=c, rejected=r, pairs=n) for c, r, n in sorted(zip(*columns))]
    won, lost = Counter(), Counter()
    for m in matchups:
        if m.chosen != m.rejected:  # a cross-seed pair says nothing about which generator is better
            won[m.chosen] += m.pairs
            lost[m.rejected] += m.pairs
    names = sorted({m.chosen for m in matchups} | {m.rejected for m in matchups})
    return Generators(
        matchups=matchups,
        generators=[
            GeneratorRecord(generator=g, chosen=won[g], rejected=lost[g],
                            win_rate=ratio(won[g], won[g] + lost[g]) if won[g] + lost[g] else None)
            for g in names
        ],
    )


def agreement(manifests: pa.Table, categories: list[str]) -> list[Agreement]:
    grouped = manifests.group_by("category").aggregate(
        [("vote_share", "mean"), ("order_consistent", "mean"), ([], "count_all")]
    ).to_pylist()
    by_category = {row["category"]: row for row in grouped}
    rows = []
    for category in categories:
        row = by_category.get(category)
        rows.append(Agreement(
            category=category, pairs=row["count_all"] if row else 0,
            mean_vote_share=round(row["vote_share_mean"], 6) if row else None,
            order_consistent_rate=round(row["order_consistent_mean"], 6) if row else None,
        ))
    return rows


def funnel(status: RootStatus) -> Funnel:
    """Pair counts from the caches, as root_status reads them."""
    categories = [
        CategoryFunnel(category=name, judged=c.kept + sum(c.dropped.values()), kept=c.kept,
                       written=c.written, dropped=c.dropped)
        for name, c in status.categories.items()
    ]
    dropped: Counter = Counter()
    for c in categories:
        dropped.update(c.dropped)
    stages = status.stages
    return Funnel(
        prompts_requested=stages["prompts"].total, prompts_accepted=stages["prompts"].done,
        judged=sum(c.judged for c in categories), kept=sum(c.kept for c in categories),
        written=sum(c.written for c in categories), dropped=dict(sorted(dropped.items())),
        stages=stages, categories=categories,
    )


def media(manifests: pa.Table) -> Media:
    sizes = manifests.group_by(["width", "height"]).aggregate([([], "count_all")])
    sizes = sizes.sort_by([("width", "ascending"), ("height", "ascending")])
    lengths = manifests.group_by("frames").aggregate([([], "count_all")]).sort_by("frames")
    return Media(
        resolutions=[Resolution(width=r["width"], height=r["height"], pairs=r["count_all"]) for r in sizes.to_pylist()],
        clip_lengths=[ClipLength(frames=r["frames"], pairs=r["count_all"]) for r in lengths.to_pylist()],
    )


def scores(manifests: pa.Table) -> Scores:
    edges = np.array(SCORE_BIN_EDGES)
    column = manifests.column("dimensions")
    entries = pc.list_flatten(column.combine_chunks() if column.num_chunks else pa.array([], column.type))
    names = np.asarray(entries.field("dimension").to_pylist(), dtype=object)
    sides = {side: entries.field(f"{side}_mean").to_numpy(zero_copy_only=False) for side in ("chosen", "rejected")}
    dimensions = []
    for dimension in sorted(set(names)):
        values = {side: np.clip(s[names == dimension], edges[0], edges[-1]) for side, s in sides.items()}
        dimensions.append(DimensionScores(
            dimension=dimension, pairs=len(values["chosen"]),
            chosen_mean=round(float(values["chosen"].mean()), 4) if len(values["chosen"]) else 0.0,
            rejected_mean=round(float(values["rejected"].mean()), 4) if len(values["rejected"]) else 0.0,
            chosen_histogram=np.histogram(values["chosen"], edges)[0].tolist(),
            rejected_histogram=np.histogram(values["rejected"], edges)[0].tolist(),
        ))
    return Scores(bin_edges=list(SCORE_BIN_EDGES), dimensions=dimensions)


def motion(manifests: pa.Table) -> MotionDistribution:
    edges = np.array(MOTION_BIN_EDGES)
    clips = manifests.filter(pc.invert(pc.is_null(manifests.column("chosen_motion"))))
    categories = []
    for category in sorted(set(clips.column("category").to_pylist())):
        rows = clips.filter(pc.equal(clips.column("category"), category))
        sides = {side: rows.column(f"{side}_motion").to_numpy() for side in ("chosen", "rejected")}
        both = np.concatenate(list(sides.values()))
        flicker = np.concatenate([rows.column(f"{side}_flicker").to_numpy() for side in ("chosen", "rejected")])
        categories.append(CategoryMotion(
            category=category, pairs=rows.num_rows,
            chosen_motion_median=round(float(np.median(sides["chosen"])), 6),
            rejected_motion_median=round(float(np.median(sides["rejected"])), 6),
            motion_p10=round(float(np.percentile(both, 10)), 6), flicker_median=round(float(np.median(flicker)), 6),
            **{f"{side}_histogram": np.histogram(np.clip(v, edges[0], edges[-1]), edges)[0].tolist() for side, v in sides.items()},
        ))
    return MotionDistribution(bin_edges=MOTION_BIN_EDGES, categories=categories)


def run_audit(contents: RootContents) -> RunAudit:
    quotas = contents.config.quotas()
    planned, written = plan_counts(contents.plan), manifest_counts(contents.manifests)
    shards = sorted(contents.records)
    balance = category_balance(quotas, planned, written, shards)
    target = totals(planned, shards)
    return RunAudit(
        root=contents.storage.url,
        name=contents.config.name,
        config_hash=contents.config.output_hash(),
        shards=ShardCounts(planned=len(planned), committed=len(shards), incomplete=contents.status.shards.incomplete,
                           running=contents.status.running),
        pairs=PairCounts(committed=contents.manifests.num_rows, target=sum(target.values()), planned=sum(quotas.values())),
        categories=balance,
        shard_balance=shard_balance(planned, written, record_counts(contents.records), shards),
        generators=generators(contents.manifests),
        agreement=agreement(contents.manifests, [c.category for c in balance]),
        judge=contents.status.judge,
        judge_floors=contents.config.audit,
        calibration=contents.calibration,
        funnel=funnel(contents.status),
        media=media(contents.manifests),
        scores=scores(contents.manifests),
        motion=motion(contents.manifests),
        diversity=diversity_report(contents.prompts, [c.category for c in balance], contents.config),
    )


def compare_categories(run: RunAudit, other: RunAudit) -> list[ComparedCategory]:
    ours, theirs = {c.category: c for c in run.categories}, {c.category: c for c in other.categories}
    rows = []
    for category in [*ours, *(c for c in theirs if c not in ours)]:
        a, b = ours.get(category), theirs.get(category)
        share, other_share = a.share if a else 0.0, b.share if b else 0.0
        rows.append(ComparedCategory(
            category=category, pairs=a.pairs if a else 0, share=share, other_pairs=b.pairs if b else 0,
            other_share=other_share, difference_pp=points(share, other_share),
        ))
    return rows
