"""How often people agree with the judge: the judge and each rater against the human majority.

    ROOT/reports/calibration.json             the report

Gold pairs are left out of every figure but their own: they tell which raters were looking, and a
rater whose gold accuracy is below the floor is left out of the human majority (the report says
who and why). The labelling app's live page shows this same report.
"""

from __future__ import annotations

import posixpath
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence

from pydantic import Field
from rich.console import Console
from rich.table import Table

from vipo_build.calibration import DEFAULT_GOLD_FLOOR
from vipo_build.calibration.gold import GoldCheck, check_gold_floor, gold_checks
from vipo_build.calibration.labels import read_labels
from vipo_build.calibration.sample import SIDES, Sample, read_sample
from vipo_build.judge.agreement import (
    InterRater,
    RaterAccuracy,
    cohen_kappa,
    inter_rater_agreement,
    leave_one_out_accuracy,
    majority_label,
    mean_accuracy,
)
from vipo_build.layout import CALIBRATION_REPORT, SAMPLE_TABLE
from vipo_build.runtime.storage import Storage
from vipo_build.strict import StrictModel



class Excluded(StrictModel):
    human_tie: int = Field(description="Raters split evenly between A and B.")
    all_skipped: int = Field(description="Every rater of the pair pressed skip.")
    unlabelled: int = Field(description="No label rows for the pair.")


class GroupReport(StrictModel):
    pairs: int = Field(description="Sampled pairs in the group.")
    scored: int = Field(description="Pairs with a human majority: what judge accuracy and kappa are over.")
    excluded: Excluded
    judge_accuracy: float | None = Field(description="Share of scored pairs where the human majority picked the judge's chosen side.")
    judge_kappa: float | None = Field(description="Cohen's kappa of judge and human majority on the A/B labels shown.")
    mean_rater_accuracy: float | None = Field(description="Mean over raters of each rater's accuracy against the majority of the other raters.")
    raters: dict[str, RaterAccuracy]
    inter_rater: InterRater


class CalibrationReport(StrictModel):
    sample: str
    labels: str
    label_rows: int = Field(description="Every answer, gold pairs and left-out raters included.")
    skips: int
    raters: int = Field(description="Raters who answered at least once.")
    gold_pairs: int = Field(0, description="Gold pairs in the sample; left out of every group below.")
    gold_floor: float = Field(0.0, description="A rater below this gold accuracy is left out of the human majority.")
    gold: dict[str, GoldCheck] = Field(default_factory=dict, description="Each rater's gold pairs answered and accuracy.")
    left_out: dict[str, str] = Field(default_factory=dict, description="Raters left out of the human majority, and why.")
    overall: GroupReport
    categories: dict[str, GroupReport]


def calibrate(root: str, labels_path: str, console: Console, gold_floor: float = DEFAULT_GOLD_FLOOR) -> dict:
    """Score the judge and the raters on an exported sample; write ROOT/reports/calibration.json,
    print it as a table and return it."""
    check_gold_floor(gold_floor)
    storage = Storage(root)
    sample = read_sample(storage)
    report = score(sample, read_labels(labels_path, sample), posixpath.join(storage.url, SAMPLE_TABLE), labels_path, gold_floor)
    storage.write_bytes(CALIBRATION_REPORT, report.model_dump_json(indent=1).encode())
    show(report, console)
    return report.model_dump(mode="json")


def score(sample: Sample, labels: Sequence[dict], sample_url: str, labels_name: str, gold_floor: float) -> CalibrationReport:
    """The report over label rows {key, rater, choice} of the sample."""
    checks = gold_checks(labels, sample.gold_winners, gold_floor)
    left_out = {rater: check.why for rater, check in checks.items() if check.left_out}
    ratings: defaultdict[str, dict[str, str]] = defaultdict(dict)  # key -> {rater: "A" or "B"}, skips left out
    for label in labels:
        if label["choice"] != "skip" and label["rater"] not in left_out:
            ratings[label["key"]][label["rater"]] = label["choice"]
    labelled = {label["key"] for label in labels if label["rater"] not in left_out}
    judged = [row for row in sample.rows.values() if not row["gold"]]
    categories = sorted({row["category"] for row in judged})
    return CalibrationReport(
        sample=sample_url,
        labels=labels_name,
        label_rows=len(labels),
        skips=sum(label["choice"] == "skip" for label in labels),
        raters=len(checks),
        gold_pairs=len(sample.gold_winners),
        gold_floor=gold_floor,
        gold=checks,
        left_out=left_out,
        overall=group_report(judged, ratings, labelled),
        categories={c: group_report([r for r in judged if r["category"] == c], ratings, labelled) for c in categories},
    )


def group_report(rows: Sequence[dict], ratings: Mapping[str, Mapping[str, str]], labelled: set[str]) -> GroupReport:
    """Judge and raters on one group of sample rows. Everything is computed on the A/B labels the
    raters saw: since A is drawn at random, the judge's A/B picks are not constant, so Cohen's
    kappa is informative, and the raters' chance agreement is that of the task they did."""
    excluded: Counter = Counter()
    judge, human = [], []
    for row in rows:
        majority = majority_label(ratings.get(row["key"], {}).values())
        if majority is None:
            excluded[_exclusion(row["key"], ratings, labelled)] += 1
            continue
        judge.append("A" if row["a_side"] == "chosen" else "B")
        human.append(majority)
    items = [ratings[row["key"]] for row in rows if ratings.get(row["key"])]
    raters = leave_one_out_accuracy(items)
    return GroupReport(
        pairs=len(rows),
        scored=len(judge),
        excluded=Excluded(**{field: excluded[field] for field in Excluded.model_fields}),
        judge_accuracy=sum(j == h for j, h in zip(judge, human)) / len(judge) if judge else None,
        judge_kappa=cohen_kappa(judge, human),
        mean_rater_accuracy=mean_accuracy(raters),
        raters=raters,
        inter_rater=inter_rater_agreement(items, SIDES),
    )


def _exclusion(key: str, ratings: Mapping[str, Mapping[str, str]], labelled: set[str]) -> str:
    """Why a pair without a human majority has none (an Excluded field)."""
    if key not in labelled:
        return "unlabelled"
    return "human_tie" if ratings.get(key) else "all_skipped"


def show(report: CalibrationReport, console: Console) -> None:
    table = Table(
        title=f"Judge vs human majority ({report.raters} raters, {report.label_rows} labels, {report.skips} skips)",
        caption="judge: against the majority of all raters; raters: each against the majority of the others, "
                "averaged; excluded: human tie / all skipped / unlabelled",
    )
    table.add_column("category", no_wrap=True)
    for column in ("pairs", "scored", "excluded", "judge acc", "judge κ", "rater acc", "human agree", "human κ"):
        table.add_column(column, justify="right")
    groups = [*report.categories.items(), ("overall", report.overall)]
    for i, (name, group) in enumerate(groups):
        excluded = group.excluded
        table.add_row(
            name, str(group.pairs), str(group.scored),
            f"{excluded.human_tie}/{excluded.all_skipped}/{excluded.unlabelled}",
            _percent(group.judge_accuracy), _number(group.judge_kappa), _percent(group.mean_rater_accuracy),
            _percent(group.inter_rater.pairwise_agreement), _number(group.inter_rater.fleiss_kappa),
            end_section=i == len(groups) - 2,
        )
    console.print(table)
    if report.gold_pairs:
        checked = {r: g for r, g in report.gold.items() if g.accuracy is not None}
        accuracies = ", ".join(f"{r} {g.accuracy:.0%}" for r, g in checked.items()) or "none answered yet"
        console.print(f"gold pairs: {report.gold_pairs} (left out of the figures above); raters' gold accuracy: {accuracies}",
                      markup=False, highlight=False)
    for rater, why in report.left_out.items():
        console.print(f"left out of the human majority: {rater}: {why}", markup=False, highlight=False)


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"
