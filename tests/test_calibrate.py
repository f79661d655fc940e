"""Calibration end to end on a root written by the real shard writer, with synthetic raters."""

from __future__ import annotations

import io
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from rich.console import Console
from sklearn.metrics import cohen_kappa_score

from tests.calibration_roots import make_root

from vipo_build.calibration.report import calibrate
from vipo_build.calibration.sample import allocate, export_sample
from vipo_build.errors import VipoError

SIZES = {"aesthetics": 60, "alignment": 30, "counting": 10}


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> str:
    return make_root(tmp_path_factory.mktemp("root"), SIZES)


def read_sample(root: str) -> list[dict]:
    return pq.read_table(f"{root}/calibration/sample.parquet").to_pylist()


def write_labels(path: Path, rows: list[dict]) -> str:
    pq.write_table(pa.Table.from_pylist(rows), path)
    return str(path)


def as_choice(row: dict, side: str) -> str:
    """The A/B choice of a rater preferring `side` (chosen or rejected) of this sample row."""
    return "A" if (row["a_side"] == side) else "B"


def run_calibrate(root: str, labels: str) -> tuple[dict, str]:
    out = io.StringIO()
    report = calibrate(root, labels, Console(file=out, width=160))
    return report, out.getvalue()


def test_allocation_is_proportional_and_capped():
    assert allocate(SIZES, 20) == {"aesthetics": 12, "alignment": 6, "counting": 2}
    assert allocate({"big": 1000, "small": 3}, 10) == {"big": 9, "small": 1}  # not rounded away
    assert allocate({"a": 10, "b": 3, "c": 1}, 2) == {"a": 2, "b": 0, "c": 0}  # too few for one each: by size
    assert allocate({"a": 5, "b": 1}, 4) == {"a": 3, "b": 1}
    assert allocate({"a": 5, "b": 1}, 50) == {"a": 5, "b": 1}


def test_export_sample(root):
    path = export_sample(root, 20, seed=3)
    assert path == f"{root}/calibration/sample.parquet"
    rows = read_sample(root)
    assert Counter(r["category"] for r in rows) == {"aesthetics": 12, "alignment": 6, "counting": 2}
    assert len({r["key"] for r in rows}) == 20
    assert {r["a_side"] for r in rows} == {"chosen", "rejected"}
    for row in rows:
        b_side = "rejected" if row["a_side"] == "chosen" else "chosen"
        assert (Path(root) / "calibration" / row["a_file"]).read_bytes() == f"{row['key']}/{row['a_side']}".encode()
        assert (Path(root) / "calibration" / row["b_file"]).read_bytes() == f"{row['key']}/{b_side}".encode()
        assert "chosen" not in row["a_file"] + row["b_file"]  # file names do not give the judge's pick away
        assert row["prompt"].startswith(row["category"])
    assert export_sample(root, 20, seed=3) == path  # the same sample again: nothing changes
    with pytest.raises(VipoError, match="a different sample is already exported"):
        export_sample(root, 20, seed=4)


def test_calibrate_with_18_raters(root, tmp_path):
    export_sample(root, 20, seed=3)
    rows = read_sample(root)
    rng = np.random.default_rng(11)
    raters = [f"rater{r:02d}" for r in range(18)]
    skill = dict(zip(raters, rng.uniform(0.65, 0.95, size=18)))
    planted = {"unlabelled": rows[0]["key"], "all_skipped": rows[1]["key"], "human_tie": rows[2]["key"]}
    labels = []
    for row in rows[3:]:
        better = "chosen" if rng.random() < 0.8 else "rejected"
        worse = "rejected" if better == "chosen" else "chosen"
        for rater in rng.choice(raters, size=int(rng.integers(4, 10)), replace=False):
            if rng.random() < 0.1:
                choice = "skip"
            else:
                choice = as_choice(row, better if rng.random() < skill[rater] else worse)
            labels.append({"key": row["key"], "rater": str(rater), "choice": choice})
    labels += [{"key": planted["all_skipped"], "rater": r, "choice": "skip"} for r in raters[:3]]
    labels += [{"key": planted["human_tie"], "rater": r, "choice": c} for r, c in zip(raters, "AABB")]
    report, printed = run_calibrate(root, write_labels(tmp_path / "labels.parquet", labels))

    # The judge against the human majority, recomputed here from the label rows.
    by_key = {r["key"]: r for r in rows}
    votes: dict[str, Counter] = {}
    for label in labels:
        if label["choice"] != "skip":
            votes.setdefault(label["key"], Counter())[label["choice"]] += 1
    majority = {k: "A" if c["A"] > c["B"] else "B" for k, c in votes.items() if c["A"] != c["B"]}
    judge = {k: "A" if by_key[k]["a_side"] == "chosen" else "B" for k in majority}
    keys = sorted(majority)
    overall = report["overall"]
    assert overall["pairs"] == 20 and overall["scored"] == len(keys)
    assert overall["judge_accuracy"] == pytest.approx(np.mean([judge[k] == majority[k] for k in keys]))
    assert overall["judge_kappa"] == pytest.approx(cohen_kappa_score([judge[k] for k in keys], [majority[k] for k in keys]))
    random_ties = sum(c["A"] == c["B"] for k, c in votes.items() if k != planted["human_tie"])
    assert overall["excluded"] == {"human_tie": 1 + random_ties, "all_skipped": 1, "unlabelled": 1}

    assert (report["raters"], report["label_rows"]) == (18, len(labels))
    assert report["skips"] == sum(label["choice"] == "skip" for label in labels)
    assert len(overall["raters"]) == 18
    accuracies = [r["accuracy"] for r in overall["raters"].values() if r["accuracy"] is not None]
    assert overall["mean_rater_accuracy"] == pytest.approx(np.mean(accuracies))
    assert 0 < overall["inter_rater"]["pairwise_agreement"] < 1 and overall["inter_rater"]["fleiss_kappa"] > 0
    assert {c: g["pairs"] for c, g in report["categories"].items()} == {"aesthetics": 12, "alignment": 6, "counting": 2}
    assert sum(g["scored"] for g in report["categories"].values()) == overall["scored"]

    assert json.loads((Path(root) / "reports" / "calibration.json").read_text()) == report
    assert "Judge vs human majority (18 raters" in printed and "overall" in printed


def test_calibrate_by_hand(tmp_path):
    root = make_root(tmp_path / "root", {"aesthetics": 3})
    export_sample(root, 10, seed=0)
    rows = read_sample(root)
    assert len(rows) == 3  # fewer kept pairs than asked: all of them
    # pair 0: chosen, chosen, rejected -> majority agrees with the judge
    # pair 1: rejected, rejected, skip -> disagrees
    # pair 2: chosen, skip, skip -> agrees (one rating is a majority)
    picks = [("chosen", "chosen", "rejected"), ("rejected", "rejected", "skip"), ("chosen", "skip", "skip")]
    labels = [
        {"key": row["key"], "rater": rater, "choice": "skip" if side == "skip" else as_choice(row, side)}
        for row, sides in zip(rows, picks) for rater, side in zip(("r1", "r2", "r3"), sides)
    ]
    report, _ = run_calibrate(root, write_labels(tmp_path / "labels.parquet", labels))
    overall = report["overall"]
    assert (overall["scored"], overall["judge_accuracy"]) == (3, pytest.approx(2 / 3))
    # r3 against (chosen, chosen) on pair 0: wrong; r1 and r2 against each other on pair 1: right; the rest tie or stand alone
    assert {r: (a["scored"], a["agreed"]) for r, a in overall["raters"].items()} == {"r1": (1, 1), "r2": (1, 1), "r3": (1, 0)}
    assert overall["mean_rater_accuracy"] == pytest.approx(2 / 3)
    # (r1, r2) agree on pairs 0 and 1; (r1, r3) and (r2, r3) disagree on pair 0, the only one they share
    assert overall["inter_rater"]["items"] == 2
    assert overall["inter_rater"]["pairwise_agreement"] == pytest.approx(1 / 3)


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([{"key": "KEY", "choice": "A"}], "missing column 'rater' (labels need columns key, rater, choice)"),
        ([{"key": "KEY", "rater": "r1", "choice": "C"}], "row 0: choice 'C' is not one of A, B, skip"),
        ([{"key": "nope", "rater": "r1", "choice": "A"}], "row 0: key 'nope' is not in the calibration sample"),
        ([{"key": "KEY", "rater": "r1", "choice": None}], "row 0: choice is empty"),
        ([{"key": "KEY", "rater": "r1", "choice": "A"}, {"key": "KEY", "rater": "r1", "choice": "B"}],
         "row 1: rater 'r1' labelled key 'KEY' more than once"),
    ],
)
def test_bad_labels_name_file_and_field(root, tmp_path, rows, message):
    export_sample(root, 20, seed=3)
    key = read_sample(root)[0]["key"]
    labels = write_labels(tmp_path / "labels.parquet", [{k: key if v == "KEY" else v for k, v in r.items()} for r in rows])
    with pytest.raises(VipoError) as err:
        calibrate(root, labels, Console(file=io.StringIO()))
    assert str(err.value) == f"{labels}: {message.replace('KEY', key)}"


def test_missing_inputs(tmp_path):
    with pytest.raises(VipoError, match="no committed shards"):
        export_sample(str(tmp_path), 5, seed=0)
    with pytest.raises(VipoError, match="no calibration sample"):
        calibrate(str(tmp_path), str(tmp_path / "labels.parquet"), Console(file=io.StringIO()))
    root = make_root(tmp_path / "root", {"aesthetics": 2})
    export_sample(root, 2, seed=0)
    with pytest.raises(VipoError, match=f"^{tmp_path}/missing.parquet: cannot read the labels as Parquet"):
        calibrate(root, str(tmp_path / "missing.parquet"), Console(file=io.StringIO()))
