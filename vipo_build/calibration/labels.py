"""Human labels of a calibration sample, from the labelling app's SQLite database or a Parquet
file with columns key, rater, choice (A, B or skip)."""

from __future__ import annotations

import posixpath
from vipo_build.calibration.sample import Sample
from vipo_build.calibration.store import is_sqlite, read_answers
from vipo_build.errors import VipoError
from vipo_build.runtime.storage import Storage

LABEL_COLUMNS = ("key", "rater", "choice")
CHOICES = ("A", "B", "skip")


def read_labels(labels_path: str, sample: Sample) -> list[dict]:
    """Label rows {key, rater, choice}, checked: every key in the sample, every choice A, B or
    skip, at most one label per rater and pair. Rater ids are read as strings."""
    if is_sqlite(labels_path):
        rows = [{column: answer[column] for column in LABEL_COLUMNS} for answer in read_answers(labels_path, sample.digest)]
    else:
        rows = _parquet_rows(labels_path)
    labels, seen = [], set()
    for i, row in enumerate(rows):
        for column in LABEL_COLUMNS:
            if row[column] is None:
                raise VipoError(f"{labels_path}: row {i}: {column} is empty")
        key, rater, choice = str(row["key"]), str(row["rater"]), row["choice"]
        if choice not in CHOICES:
            raise VipoError(f"{labels_path}: row {i}: choice {choice!r} is not one of {', '.join(CHOICES)}")
        if key not in sample.rows:
            raise VipoError(f"{labels_path}: row {i}: key {key!r} is not in the calibration sample")
        if (key, rater) in seen:
            raise VipoError(f"{labels_path}: row {i}: rater {rater!r} labelled key {key!r} more than once")
        seen.add((key, rater))
        labels.append({"key": key, "rater": rater, "choice": choice})
    return labels


def _parquet_rows(labels_path: str) -> list[dict]:
    folder, name = posixpath.split(labels_path)
    try:
        table = Storage(folder or ".").read_table(name)
    except Exception as err:  # missing file, not Parquet, any backend error
        raise VipoError(f"{labels_path}: cannot read the labels as Parquet or SQLite: {type(err).__name__}: {err}") from None
    for column in LABEL_COLUMNS:
        if column not in table.column_names:
            raise VipoError(f"{labels_path}: missing column {column!r} (labels need columns {', '.join(LABEL_COLUMNS)})")
    return table.select(list(LABEL_COLUMNS)).to_pylist()
