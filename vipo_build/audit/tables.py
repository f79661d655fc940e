"""The report's tables as plain rows of text, rendered to the terminal, Markdown and HTML alike."""

from __future__ import annotations

from dataclasses import dataclass, field

from vipo_build.audit.check import (DIVERSITY_LIMITS, JUDGE_FLOORS, below_floors, beyond, diversity_problems,
                                   facet_value_short)
from vipo_build.audit.diversity import NGRAM_ORDERS
from vipo_build.audit.model import AuditReport, RunAudit


@dataclass(frozen=True)
class TextTable:
    title: str
    header: list[str]
    rows: list[list[str]]
    flagged: list[bool] = field(default_factory=list)  # rows that break the balance, per row


def percent(share: float) -> str:
    return f"{share:.2%}"


def points(deviation_pp: float) -> str:
    return f"{deviation_pp:+.2f} pp"


def optional(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def category_table(run: RunAudit, tolerance_pct: float) -> TextTable:
    return TextTable(
        title=f"{run.name} ({run.root}): {run.shards.committed} of {run.shards.planned} shards committed, "
              f"{run.pairs.committed} pairs (plan for them: {run.pairs.target}; dataset: {run.pairs.planned})",
        header=["category", "pairs", "target", "share", "target share", "deviation", "quota", "progress"],
        rows=[[c.category, str(c.pairs), str(c.target), percent(c.share), percent(c.target_share), points(c.deviation_pp),
               str(c.quota), percent(c.progress)] for c in run.categories],
        flagged=[beyond(c.deviation_pp, tolerance_pct) for c in run.categories],
    )


def comparison_table(report: AuditReport) -> TextTable:
    run, other = report.run, report.compare
    return TextTable(
        title=f"side by side: A = {run.name} ({run.root}), B = {other.name} ({other.root})",
        header=["category", "pairs A", "share A", "pairs B", "share B", "share A - B"],
        rows=[[r.category, str(r.pairs), percent(r.share), str(r.other_pairs), percent(r.other_share), points(r.difference_pp)]
              for r in report.comparison or []],
    )


def shard_table(run: RunAudit, report: AuditReport) -> TextTable:
    offending = {o.shard for o in report.offenders if o.root == run.root and o.shard}
    return TextTable(
        title=f"{run.name}: shards (committed; category mix against the plan)",
        header=["shard", "pairs", "planned", "largest |deviation|", "mix (pairs/planned)"],
        rows=[[s.shard, str(s.pairs), "-" if s.planned is None else str(s.planned), f"{s.max_abs_deviation_pp:.2f} pp",
               ", ".join(f"{name} {c.pairs}/{c.planned}" for name, c in s.categories.items() if c.pairs or c.planned)]
              for s in run.shard_balance],
        flagged=[s.shard in offending for s in run.shard_balance],
    )


def generator_table(run: RunAudit) -> TextTable:
    return TextTable(
        title=f"{run.name}: generators (pairs against another generator)",
        header=["generator", "chosen", "rejected", "win rate"],
        rows=[[g.generator, str(g.chosen), str(g.rejected), optional(g.win_rate, ".1%")] for g in run.generators.generators],
    )


def judge_table(run: RunAudit) -> TextTable:
    floors = run.judge_floors
    shown = [f"{name} {getattr(floors, key):g}" for name, _, key in JUDGE_FLOORS if getattr(floors, key) is not None]
    rows = {**run.judge.categories, "all": run.judge.overall}
    return TextTable(
        title=f"{run.name}: judge quality over every judged pair, kept or dropped (floors: {', '.join(shown) or 'none'})",
        header=["category", "judged", "decided", "order consistency", "Fleiss' kappa", "tie rate",
                "votes for the first shown", "binomial p"],
        rows=[[name, str(a.pairs), str(a.decided), optional(a.order_consistency_rate, ".1%"), optional(a.fleiss_kappa, ".3f"),
               optional(a.tie_rate, ".1%"), optional(a.first_shown_rate, ".1%"), optional(a.first_shown_p_value, ".3g")]
              for name, a in rows.items()],
        flagged=[name in run.judge.categories and bool(below_floors(run, name)) for name in rows],
    )


def judges_table(run: RunAudit) -> TextTable | None:
    """Each two judges of a panel, per category: None for a run with one judge."""
    rows = [[name, f"{b.first} / {b.second}", str(b.pairs), optional(b.agreement, ".1%"), optional(b.cohen_kappa, ".3f")]
            for name, a in {**run.judge.categories, "all": run.judge.overall}.items() for b in a.between_judges]
    if not rows:
        return None
    return TextTable(title=f"{run.name}: agreement between judges over every judged pair (each judge's own winner)",
                     header=["category", "judges", "pairs", "same winner", "Cohen's kappa"], rows=rows)


def calibration_table(run: RunAudit) -> TextTable | None:
    """The judge against the human majority of the calibration labels: None without labels."""
    c = run.calibration
    if c is None:
        return None
    return TextTable(
        title=f"{run.name}: judge against human labels ({c.raters} raters, {c.label_rows} labels, {c.skips} skips; {c.labels})",
        header=["category", "sampled", "with a majority", "judge accuracy", "Cohen's kappa", "mean rater accuracy"],
        rows=[[name, str(g.pairs), str(g.scored), optional(g.judge_accuracy, ".1%"), optional(g.judge_kappa, ".3f"),
               optional(g.mean_rater_accuracy, ".1%")] for name, g in {**c.categories, "all": c.overall}.items()],
    )


def diversity_table(run: RunAudit) -> TextTable:
    d = run.diversity
    limits = [f"{name} {getattr(run.judge_floors, key):g}" for name, _, key, _ in DIVERSITY_LIMITS
              if getattr(run.judge_floors, key) is not None]
    encoder = d.encoder or (f"none: {d.encoder_missing} is not on this machine" if d.encoder_missing else "none configured")
    return TextTable(
        title=f"{run.name}: prompt diversity over the committed pairs (figures on up to {d.sample_size} prompts per category; "
              f"encoder: {encoder}; limits: {', '.join(limits) or 'none'})",
        header=["category", "pairs", "subjects", "facet combinations", "sampled", "distinct prompts",
                *(f"distinct-{n}" for n in NGRAM_ORDERS), "near-dup rate", "mean similarity", "Vendi"],
        rows=[[c.category, str(c.pairs), str(c.distinct_subjects), str(c.distinct_facet_combinations), str(c.sample),
               optional(c.distinct_prompts, ".1%"),
               *(optional(c.distinct_n.get(str(n)), ".3f") for n in NGRAM_ORDERS), optional(c.near_duplicate_rate, ".1%"),
               optional(c.mean_similarity, ".3f"), optional(c.vendi, ".1f")] for c in d.categories],
        flagged=[bool(diversity_problems(run, c)) for c in d.categories],
    )


def facet_share_table(run: RunAudit) -> TextTable | None:
    """The facet values with a least share (categories.<name>.facet_shares); None when no category sets one."""
    rows = [(c, f) for c in run.diversity.categories for f in c.facet_shares if f.least_share is not None]
    if not rows:
        return None
    return TextTable(
        title=f"{run.name}: facet values with a least share, over the committed pairs (each shard must hold "
              "floor(least share x its pairs of the category))",
        header=["category", "facet", "value", "pairs", "share", "least share", "shards short"],
        rows=[[c.category, f.facet, f.value, str(f.pairs), f"{f.share:.1%}", f"{f.least_share:.0%}", str(f.shards_short)]
              for c, f in rows],
        flagged=[facet_value_short(c, f) for c, f in rows],
    )


def agreement_table(run: RunAudit) -> TextTable:
    return TextTable(
        title=f"{run.name}: judge agreement on the kept pairs in committed shards",
        header=["category", "pairs", "mean vote share", "order-consistency rate"],
        rows=[[a.category, str(a.pairs), optional(a.mean_vote_share, ".3f"), optional(a.order_consistent_rate, ".1%")]
              for a in run.agreement],
    )


def motion_table(run: RunAudit) -> TextTable | None:
    """The video categories' clip figures; None when no committed pair is a clip."""
    if not run.motion.categories:
        return None
    return TextTable(
        title=f"{run.name}: clip motion over the committed pairs (mean optical flow, frame widths per second; pairs below "
              "generate.video.min_motion were dropped as static_clip before judging)",
        header=["category", "pairs", "chosen motion (median)", "rejected motion (median)", "motion p10", "flicker (median)"],
        rows=[[c.category, str(c.pairs), f"{c.chosen_motion_median:.4f}", f"{c.rejected_motion_median:.4f}",
               f"{c.motion_p10:.4f}", f"{c.flicker_median:.4f}"] for c in run.motion.categories],
    )


def funnel_table(run: RunAudit) -> TextTable:
    f = run.funnel
    stages = ", ".join(f"{name} {s.done}/{s.total}" for name, s in f.stages.items())
    return TextTable(
        title=f"{run.name}: drop funnel ({f.prompts_accepted} of {f.prompts_requested} prompts accepted; stages: {stages})",
        header=["category", "judged", "kept", "written", "dropped"],
        rows=[[c.category, str(c.judged), str(c.kept), str(c.written), ", ".join(f"{k} {v}" for k, v in c.dropped.items()) or "-"]
              for c in f.categories],
    )


def run_tables(run: RunAudit, report: AuditReport) -> list[TextTable]:
    tables = [category_table(run, report.tolerance_pct), shard_table(run, report), generator_table(run),
              judge_table(run), judges_table(run), calibration_table(run), diversity_table(run), facet_share_table(run), agreement_table(run),
              motion_table(run), funnel_table(run)]
    return [t for t in tables if t is not None]
