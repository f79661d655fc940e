"""Human-labelled image pair sets in the layouts they are published in, read into one form.

    pickapic     Parquet: caption, jpg_0, jpg_1 (bytes), label_0 (1: jpg_0 preferred, 0: jpg_1, 0.5: tie)
    hpd          JSON list of {prompt, image_path: [preferred, other]} (paths relative to the file)
    genai-bench  Parquet: prompt, left_image, right_image (bytes), vote_type (leftvote, rightvote,
                 tievote, bothbad_vote; both bad counts as a tie)
    vipo         vipo-build's calibration labels: the labelling app's ROOT/calibration/labels.sqlite, or
                 a labels.parquet (key, rater, choice), beside the sample.parquet and media that
                 `vipo-build calibrate --sample` wrote; the label is the majority of the raters that
                 pass the gold checks, and gold pairs are left out

An optional `category` column (pickapic, genai-bench) or field (hpd) names each pair's rubric;
otherwise every pair takes the default category.
"""

from __future__ import annotations

import json
import posixpath
from dataclasses import dataclass

import pyarrow.parquet as pq

from vipo_build.calibration import DEFAULT_GOLD_FLOOR
from vipo_build.calibration.gold import gold_checks
from vipo_build.calibration.labels import read_labels
from vipo_build.calibration.sample import read_sample
from vipo_build.errors import VipoError
from vipo_build.judge.agreement import majority_label
from vipo_build.runtime.storage import Storage

FORMATS = ("pickapic", "hpd", "genai-bench", "vipo")
LABELS = ("A", "B", "tie")
GENAI_BENCH_VOTES = {"leftvote": "A", "rightvote": "B", "tievote": "tie", "bothbad_vote": "tie"}


@dataclass(frozen=True)
class LabelledPair:
    pair_id: str
    prompt: str
    category: str
    images: tuple[bytes, bytes]  # A, then B: images, or clips for a video category
    human: str  # A, B or tie


def read_pairs(path: str, layout: str, default_category: str) -> list[LabelledPair]:
    if layout not in FORMATS:
        raise VipoError(f"--format: {layout!r} is not a layout; choose one of {', '.join(FORMATS)}")
    try:
        pairs = {"pickapic": _pickapic, "hpd": _hpd, "genai-bench": _genai_bench, "vipo": _vipo}[layout](path, default_category)
    except (OSError, KeyError, ValueError, TypeError) as err:
        raise VipoError(f"{path}: not a {layout} pair set ({type(err).__name__}: {err})") from None
    if not pairs:
        raise VipoError(f"{path}: no labelled pairs")
    return pairs


def _bytes(value) -> bytes:
    return value["bytes"] if isinstance(value, dict) else value  # `datasets` Image columns store {bytes, path}


def _pickapic(path: str, default: str) -> list[LabelledPair]:
    rows = pq.read_table(path).to_pylist()
    labels = {1.0: "A", 0.0: "B", 0.5: "tie"}
    return [LabelledPair(str(r.get("key") or i), r["caption"], r.get("category") or default,
                         (_bytes(r["jpg_0"]), _bytes(r["jpg_1"])), labels[float(r["label_0"])]) for i, r in enumerate(rows)]


def _hpd(path: str, default: str) -> list[LabelledPair]:
    storage = Storage(posixpath.dirname(path) or ".")
    entries = json.loads(storage.read_bytes(posixpath.basename(path)))
    return [LabelledPair(str(e.get("id", i)), e["prompt"], e.get("category") or default,
                         (storage.read_bytes(e["image_path"][0]), storage.read_bytes(e["image_path"][1])), "A")
            for i, e in enumerate(entries)]


def _genai_bench(path: str, default: str) -> list[LabelledPair]:
    rows = pq.read_table(path).to_pylist()
    return [LabelledPair(str(r.get("id") or i), r["prompt"], r.get("category") or default,
                         (_bytes(r["left_image"]), _bytes(r["right_image"])), GENAI_BENCH_VOTES[r["vote_type"]])
            for i, r in enumerate(rows)]


def _vipo(path: str, default: str) -> list[LabelledPair]:
    """The human majority of each labelled pair of the sample beside the labels, with the raters
    that fail the gold checks left out and the gold pairs themselves skipped."""
    folder = Storage(posixpath.dirname(path))
    sample = read_sample(folder, "sample.parquet")
    labels = read_labels(path, sample)
    left_out = {r for r, check in gold_checks(labels, sample.gold_winners, DEFAULT_GOLD_FLOOR).items() if check.left_out}
    by_key: dict[str, list[str]] = {}
    for row in labels:
        if row["choice"] in ("A", "B") and row["rater"] not in left_out:
            by_key.setdefault(row["key"], []).append(row["choice"])
    pairs = []
    for row in sample.rows.values():
        if row["key"] in by_key and not row["gold"]:
            human = majority_label(by_key[row["key"]]) or "tie"
            pairs.append(LabelledPair(row["key"], row["prompt"], row["category"],
                                      (folder.read_bytes(row["a_file"]), folder.read_bytes(row["b_file"])), human))
    return pairs
