"""Which categories and shards break the balance: each offender names what is off and by how much."""

from __future__ import annotations

from collections.abc import Callable

from vipo_build.audit.diversity import CategoryDiversity, FacetShare
from vipo_build.audit.model import Offender, RunAudit
from vipo_build.shards.facet_balance import owed_pairs


def beyond(deviation_pp: float, tolerance_pct: float) -> bool:
    return abs(deviation_pp) > tolerance_pct


def category_offenders(run: RunAudit, tolerance_pct: float) -> list[Offender]:
    return [
        Offender(root=run.root, kind="category", category=c.category, shard=None, deviation_pp=c.deviation_pp,
                 message=f"category {c.category}: {c.share:.2%} of the committed pairs ({c.pairs}), plan "
                         f"{c.target_share:.2%} ({c.target}); {c.deviation_pp:+.2f} pp")
        for c in run.categories
        if beyond(c.deviation_pp, tolerance_pct)
    ]


def shard_offenders(run: RunAudit, tolerance_pct: float) -> list[Offender]:
    offenders = []
    for shard in run.shard_balance:
        if shard.planned is None:
            offenders.append(Offender(root=run.root, kind="unplanned_shard", category=None, shard=shard.shard, deviation_pp=None,
                                      message=f"shard {shard.shard}: committed but not in the shard plan"))
            continue
        for name, c in shard.categories.items():
            if c.recorded != c.pairs:
                offenders.append(Offender(
                    root=run.root, kind="record_mismatch", category=name, shard=shard.shard, deviation_pp=None,
                    message=f"shard {shard.shard} category {name}: commit record says {c.recorded} pairs, manifest has {c.pairs}",
                ))
            if beyond(c.deviation_pp, tolerance_pct):
                offenders.append(Offender(
                    root=run.root, kind="shard_mix", category=name, shard=shard.shard, deviation_pp=c.deviation_pp,
                    message=f"shard {shard.shard} category {name}: {c.pairs} of {shard.pairs} pairs ({c.share:.2%}), "
                            f"plan {c.planned} of {shard.planned} ({c.planned_share:.2%}); {c.deviation_pp:+.2f} pp",
                ))
    return offenders


# (label, figure of the judge's agreement, floor in the config's audit section)
JUDGE_FLOORS = (("order consistency", "order_consistency_rate", "min_order_consistency"),
                ("Fleiss' kappa", "fleiss_kappa", "min_kappa"))


def below_floors(run: RunAudit, category: str) -> list[str]:
    """What of the judge's figures on `category` (over every judged pair) is below the config's floors."""
    figures, floors = run.judge.categories[category], run.judge_floors
    found = []
    for name, figure, config_key in JUDGE_FLOORS:
        value, floor = getattr(figures, figure), getattr(floors, config_key)
        if floor is not None and value is not None and value < floor:
            found.append(f"{name} {value:.3f} below audit.{config_key} {floor:g}")
    return found


def judge_offenders(run: RunAudit) -> list[Offender]:
    return [
        Offender(root=run.root, kind="judge_quality", category=category, shard=None, deviation_pp=None,
                 message=f"category {category}: judge {problem} (over {run.judge.categories[category].pairs} judged pairs)")
        for category in run.judge.categories
        for problem in below_floors(run, category)
    ]


# (label, a category's diversity figure, limit in the config's audit section, whether the limit is a floor)
DIVERSITY_LIMITS: tuple[tuple[str, Callable[[CategoryDiversity], float | None], str, bool], ...] = (
    ("distinct bigrams", lambda d: d.distinct_n.get("2"), "min_distinct_2", True),
    ("near-duplicate rate", lambda d: d.near_duplicate_rate, "max_near_duplicate_rate", False),
    ("mean embedding similarity", lambda d: d.mean_similarity, "max_mean_similarity", False),
)


def diversity_problems(run: RunAudit, figures: CategoryDiversity) -> list[str]:
    """What of a category's diversity figures is beyond the config's limits."""
    found = []
    for name, figure, config_key, floor in DIVERSITY_LIMITS:
        value = figure(figures)
        limit = getattr(run.judge_floors, config_key)
        if limit is not None and value is not None and (value < limit if floor else value > limit):
            found.append(f"{name} {value:.3f} {'below' if floor else 'above'} audit.{config_key} {limit:g}")
    return found


def diversity_offenders(run: RunAudit) -> list[Offender]:
    return [
        Offender(root=run.root, kind="diversity", category=c.category, shard=None, deviation_pp=None,
                 message=f"category {c.category}: prompt {problem} (over {c.sample} sampled prompts)")
        for c in run.diversity.categories
        for problem in diversity_problems(run, c)
    ]


def facet_value_short(figures: CategoryDiversity, f: FacetShare) -> bool:
    """A facet value below its least share over the category's pairs or in some shard."""
    return f.least_share is not None and (bool(f.shards_short) or f.pairs < owed_pairs(f.least_share, figures.pairs))


def facet_share_problems(figures: CategoryDiversity) -> list[str]:
    return [f"facet {f.facet} = {f.value!r} holds {f.share:.1%} of {figures.pairs} pairs "
            f"(least share {f.least_share:.0%}; {f.shards_short} shard(s) short)"
            for f in figures.facet_shares if facet_value_short(figures, f)]


def facet_share_offenders(run: RunAudit) -> list[Offender]:
    return [
        Offender(root=run.root, kind="facet_share", category=c.category, shard=None, deviation_pp=None,
                 message=f"category {c.category}: {problem}")
        for c in run.diversity.categories
        for problem in facet_share_problems(c)
    ]


def bad_shard_offenders(run: RunAudit) -> list[Offender]:
    """Shards whose files no longer match their commit record (or never got one) while no run writes them."""
    if run.shards.running:
        return []
    return [Offender(root=run.root, kind="bad_shard", category=None, shard=shard, deviation_pp=None,
                     message=f"shard {shard}: data files without a valid commit record (corrupt or half-written; not "
                             "audited); `vipo-build verify ROOT` names the file, `--repair` lets a run rebuild it")
            for shard in run.shards.incomplete]


def offenders(run: RunAudit, tolerance_pct: float) -> list[Offender]:
    return (category_offenders(run, tolerance_pct) + shard_offenders(run, tolerance_pct) + judge_offenders(run)
            + diversity_offenders(run) + facet_share_offenders(run) + bad_shard_offenders(run))
