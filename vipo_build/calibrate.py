"""`vipo-build calibrate`: how often people agree with the judge on kept pairs.

Export a stratified sample of kept pairs for A/B labelling, then score the judge and each rater
against the human majority:

    ROOT/calibration/sample.parquet           one row per sampled pair: what the labelling tool shows
    ROOT/calibration/media/{key}.{A,B}.{ext}  the two candidates, named by position only
    ROOT/reports/calibration.json             the report

Which candidate is shown as A is drawn per pair, so position says nothing about the judge's pick.
"""

from __future__ import annotations

import posixpath
import random
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field
from rich.console import Console
from rich.table import Table

from vipo_build.errors import VipoError
from vipo_build.judge.agreement import (
    InterRater,
    RaterAccuracy,
    cohen_kappa,
    inter_rater_agreement,
    leave_one_out_accuracy,
    majority_label,
    mean_accuracy,
)
from vipo_build.runtime.storage import Storage, parquet_bytes
from vipo_build.seeding import derive_seed
from vipo_build.shards.verify import tar_samples
from vipo_build.shards.writer import SHARDS_DIR, committed_shards

CALIBRATION_DIR = "calibration"
SAMPLE_TABLE = f"{CALIBRATION_DIR}/sample.parquet"
REPORT_JSON = "reports/calibration.json"
LABEL_COLUMNS = ("key", "rater", "choice")
CHOICES = ("A", "B", "skip")
SIDES = ("A", "B")

SAMPLE_SCHEMA = pa.schema(
    [
        ("key", pa.string()),
        ("category", pa.string()),
        ("modality", pa.string()),
        ("prompt", pa.string()),
        ("a_side", pa.string()),  # "chosen" or "rejected": the candidate shown as A
        ("a_file", pa.string()),  # paths relative to ROOT/calibration/
        ("b_file", pa.string()),
    ]
)
MANIFEST_COLUMNS = ["key", "shard", "category", "modality", "prompt", "format"]


# ---- export ------------------------------------------------------------------------------------


def export_sample(root: str, n: int, seed: int) -> str:
    """Write a sample of n kept pairs, stratified by category, for A/B labelling; returns the
    sample table's URL. Exporting the same sample again is a no-op; a different one is refused
    while the old one is there, since labels made for it refer to its A/B assignment."""
    if n < 1:
        raise VipoError(f"--sample {n}: the sample needs at least 1 pair")
    storage = Storage(root)
    kept = kept_pairs(storage)
    if not kept:
        raise VipoError(f"{root}: no committed shards: nothing to sample")
    picked = stratified_sample(kept, n, seed)
    rows = [sample_row(pair, seed) for pair in picked]
    data = parquet_bytes(pa.Table.from_pylist(rows, schema=SAMPLE_SCHEMA.with_metadata({"seed": str(seed), "n": str(n)})))
    url = posixpath.join(storage.url, SAMPLE_TABLE)
    if storage.exists(SAMPLE_TABLE):
        if storage.read_bytes(SAMPLE_TABLE) == data:
            return url
        raise VipoError(f"{url}: a different sample is already exported and labels may refer to it; "
                        f"move {posixpath.join(storage.url, CALIBRATION_DIR)} away to export a new one")
    write_media(storage, picked, rows)
    storage.write_bytes(SAMPLE_TABLE, data)  # last: a sample table means all its media are there
    return url


def kept_pairs(storage: Storage) -> list[dict]:
    """Manifest rows (MANIFEST_COLUMNS) of every committed shard."""
    rows = []
    for shard in sorted(committed_shards(storage)):
        rows += storage.read_table(f"{SHARDS_DIR}/{shard}.parquet").select(MANIFEST_COLUMNS).to_pylist()
    return rows


def allocate(sizes: Mapping[str, int], n: int) -> dict[str, int]:
    """Split n over categories (each of size >= 1) in proportion to their sizes, capped at each size.

    Every category gets one pair first when n allows, so each has a row in the report; the rest
    goes by Sainte-Lague rounding: each next pair to the open category with the highest
    size / (2 * taken + 1).
    """
    n = min(n, sum(sizes.values()))
    taken = dict.fromkeys(sorted(sizes), 1 if n >= len(sizes) else 0)
    for _ in range(n - sum(taken.values())):
        open_ = [c for c in taken if taken[c] < sizes[c]]
        taken[max(open_, key=lambda c: sizes[c] / (2 * taken[c] + 1))] += 1
    return taken


def stratified_sample(pairs: Sequence[dict], n: int, seed: int) -> list[dict]:
    """n pairs (or all, if fewer), allocated over categories by size, drawn at random within each.
    Draws depend on the seed and each category's keys, not on shard order."""
    by_category: defaultdict[str, list[dict]] = defaultdict(list)
    for pair in sorted(pairs, key=lambda p: p["key"]):
        by_category[pair["category"]].append(pair)
    quotas = allocate({c: len(found) for c, found in by_category.items()}, n)
    picked = []
    for category, quota in quotas.items():
        drawn = random.Random(derive_seed(seed, "calibration", category)).sample(by_category[category], quota)
        picked += sorted(drawn, key=lambda p: p["key"])
    return picked


def sample_row(pair: dict, seed: int) -> dict:
    shown_first = random.Random(derive_seed(seed, "calibration", "a_side", pair["key"])).random() < 0.5
    return {
        "key": pair["key"],
        "category": pair["category"],
        "modality": pair["modality"],
        "prompt": pair["prompt"],
        "a_side": "chosen" if shown_first else "rejected",
        "a_file": f"media/{pair['key']}.A.{pair['format']}",
        "b_file": f"media/{pair['key']}.B.{pair['format']}",
    }


def write_media(storage: Storage, picked: Sequence[dict], rows: Sequence[dict]) -> None:
    """Copy each picked pair's candidates out of its shard's tar (one read per shard) as its A and B files."""
    by_shard: defaultdict[str, list[tuple[dict, dict]]] = defaultdict(list)
    for pair, row in zip(picked, rows):
        by_shard[pair["shard"]].append((pair, row))
    for shard, wanted in sorted(by_shard.items()):
        samples = dict(tar_samples(storage.read_bytes(f"{SHARDS_DIR}/{shard}.tar")))
        for pair, row in wanted:
            members = samples.get(pair["key"], {})
            b_side = "rejected" if row["a_side"] == "chosen" else "chosen"
            for side, file in ((row["a_side"], row["a_file"]), (b_side, row["b_file"])):
                member = f"{side}.{pair['format']}"
                if member not in members:
                    raise VipoError(f"{storage.url}/{SHARDS_DIR}/{shard}.tar: sample {pair['key']} has no {member}")
                storage.write_bytes(f"{CALIBRATION_DIR}/{file}", members[member])


# ---- report ------------------------------------------------------------------------------------


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Excluded(_Doc):
    human_tie: int = Field(description="Raters split evenly between A and B.")
    all_skipped: int = Field(description="Every rater of the pair pressed skip.")
    unlabelled: int = Field(description="No label rows for the pair.")


class GroupReport(_Doc):
    pairs: int = Field(description="Sampled pairs in the group.")
    scored: int = Field(description="Pairs with a human majority: what judge accuracy and kappa are over.")
    excluded: Excluded
    judge_accuracy: float | None = Field(description="Share of scored pairs where the human majority picked the judge's chosen side.")
    judge_kappa: float | None = Field(description="Cohen's kappa of judge and human majority on the A/B labels shown.")
    mean_rater_accuracy: float | None = Field(description="Mean over raters of each rater's accuracy against the majority of the other raters.")
    raters: dict[str, RaterAccuracy]
    inter_rater: InterRater


class CalibrationReport(_Doc):
    sample: str
    labels: str
    label_rows: int
    skips: int
    raters: int
    overall: GroupReport
    categories: dict[str, GroupReport]


def calibrate(root: str, labels_path: str, console: Console) -> dict:
    """Score the judge and the raters on an exported sample; write ROOT/reports/calibration.json,
    print it as a table and return it."""
    storage = Storage(root)
    sample = read_sample(storage)
    labels = read_labels(labels_path, sample)
    ratings: defaultdict[str, dict[str, str]] = defaultdict(dict)  # key -> {rater: "A" or "B"}, skips left out
    for label in labels:
        if label["choice"] != "skip":
            ratings[label["key"]][label["rater"]] = label["choice"]
    labelled = {label["key"] for label in labels}
    categories = sorted({row["category"] for row in sample.values()})
    report = CalibrationReport(
        sample=posixpath.join(storage.url, SAMPLE_TABLE),
        labels=labels_path,
        label_rows=len(labels),
        skips=sum(label["choice"] == "skip" for label in labels),
        raters=len({label["rater"] for label in labels}),
        overall=group_report(list(sample.values()), ratings, labelled),
        categories={c: group_report([r for r in sample.values() if r["category"] == c], ratings, labelled) for c in categories},
    )
    storage.write_bytes(REPORT_JSON, report.model_dump_json(indent=1).encode())
    show(report, console)
    return report.model_dump(mode="json")


def read_sample(storage: Storage) -> dict[str, dict]:
    """The exported sample table's rows by pair key."""
    if not storage.exists(SAMPLE_TABLE):
        raise VipoError(f"{posixpath.join(storage.url, SAMPLE_TABLE)}: no calibration sample; "
                        "export one first with `vipo-build calibrate ROOT --sample N`")
    return {row["key"]: row for row in storage.read_table(SAMPLE_TABLE).to_pylist()}


def read_labels(labels_path: str, sample: Mapping[str, dict]) -> list[dict]:
    """Label rows {key, rater, choice}, checked: every key in the sample, every choice A, B or
    skip, at most one label per rater and pair. Rater ids are read as strings."""
    folder, name = posixpath.split(labels_path)
    try:
        table = Storage(folder or ".").read_table(name)
    except Exception as err:  # missing file, not Parquet, any backend error
        raise VipoError(f"{labels_path}: cannot read the labels as Parquet: {type(err).__name__}: {err}") from None
    for column in LABEL_COLUMNS:
        if column not in table.column_names:
            raise VipoError(f"{labels_path}: missing column {column!r} (labels need columns {', '.join(LABEL_COLUMNS)})")
    labels, seen = [], set()
    for i, row in enumerate(table.select(list(LABEL_COLUMNS)).to_pylist()):
        for column in LABEL_COLUMNS:
            if row[column] is None:
                raise VipoError(f"{labels_path}: row {i}: {column} is empty")
        key, rater, choice = str(row["key"]), str(row["rater"]), row["choice"]
        if choice not in CHOICES:
            raise VipoError(f"{labels_path}: row {i}: choice {choice!r} is not one of {', '.join(CHOICES)}")
        if key not in sample:
            raise VipoError(f"{labels_path}: row {i}: key {key!r} is not in the calibration sample")
        if (key, rater) in seen:
            raise VipoError(f"{labels_path}: row {i}: rater {rater!r} labelled key {key!r} more than once")
        seen.add((key, rater))
        labels.append({"key": key, "rater": rater, "choice": choice})
    return labels


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


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"
