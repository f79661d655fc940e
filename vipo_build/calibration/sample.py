"""The calibration sample: kept pairs, stratified by category, exported for people to label.

    ROOT/calibration/sample.parquet           one row per sampled pair: what the labelling tool shows
    ROOT/calibration/media/{key}.{A,B}.{ext}  the two candidates, named by position only

Which candidate is A is drawn per pair, so position says nothing about the judge's pick. A share
of the sample can be gold pairs (see gold.py), drawn from other kept pairs where there are any.
"""

from __future__ import annotations

import hashlib
import posixpath
import random
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq

from vipo_build.calibration.gold import degraded_copy, gold_key
from vipo_build.errors import VipoError
from vipo_build.layout import CALIBRATION_DIR, SAMPLE_TABLE, SHARDS_DIR
from vipo_build.prompts.categories import load_category
from vipo_build.runtime.storage import Storage, parquet_bytes
from vipo_build.seeding import derive_seed
from vipo_build.shards.verify import tar_samples
from vipo_build.shards.writer import committed_shards

SIDES = ("A", "B")

SAMPLE_SCHEMA = pa.schema(
    [
        ("key", pa.string()),
        ("category", pa.string()),
        ("modality", pa.string()),
        ("prompt", pa.string()),
        ("rubric", pa.string()),  # the category's one-line description, shown to raters
        ("gold", pa.bool_()),  # an attention check: A or B is a degraded copy of the other
        ("a_side", pa.string()),  # "chosen" or "rejected": the candidate shown as A (gold: chosen is the original)
        ("a_file", pa.string()),  # paths relative to ROOT/calibration/
        ("b_file", pa.string()),
    ]
)
MANIFEST_COLUMNS = ["key", "shard", "category", "modality", "prompt", "format"]


@dataclass(frozen=True)
class Sample:
    """An exported sample: its rows by key (in table order), the seed it was drawn with, and its
    identity (the table's bytes' digest) that label databases are tied to."""

    rows: dict[str, dict]
    seed: int
    digest: str

    def winner(self, key: str) -> str:
        """The A/B label of the judge's chosen candidate (of the original, for a gold pair)."""
        return "A" if self.rows[key]["a_side"] == "chosen" else "B"

    @property
    def gold_winners(self) -> dict[str, str]:
        return {key: self.winner(key) for key, row in self.rows.items() if row["gold"]}


def export_sample(root: str, n: int, seed: int, gold_share: float = 0.0) -> str:
    """Write a sample of n pairs, stratified by category, for A/B labelling (round(n * gold_share)
    of them gold pairs); returns the sample table's URL. Exporting the same sample again is a
    no-op; a different one is refused while the old one is there, since labels made for it refer
    to its A/B assignment."""
    if n < 1:
        raise VipoError(f"--sample {n}: the sample needs at least 1 pair")
    if not 0 <= gold_share < 1:
        raise VipoError(f"--gold {gold_share}: the share of gold pairs must be at least 0 and below 1")
    storage = Storage(root)
    kept = kept_pairs(storage)
    if not kept:
        raise VipoError(f"{root}: no committed shards: nothing to sample")
    n_gold = round(n * gold_share)
    picked = stratified_sample(kept, n - n_gold, seed)
    taken = {pair["key"] for pair in picked}
    gold_sources = stratified_sample([p for p in kept if p["key"] not in taken] or kept, n_gold, derive_seed(seed, "gold"))
    rows = [sample_row(pair, seed, gold=False) for pair in picked] + [sample_row(pair, seed, gold=True) for pair in gold_sources]
    metadata = {"seed": str(seed), "n": str(n), "gold_share": str(gold_share)}
    data = parquet_bytes(pa.Table.from_pylist(rows, schema=SAMPLE_SCHEMA.with_metadata(metadata)))
    url = posixpath.join(storage.url, SAMPLE_TABLE)
    if storage.exists(SAMPLE_TABLE):
        if same_sample(read_sample(storage), rows, seed):
            return url
        raise VipoError(f"{url}: a different sample is already exported and labels may refer to it; "
                        f"move {posixpath.join(storage.url, CALIBRATION_DIR)} away to export a new one")
    write_media(storage, [*picked, *gold_sources], rows, seed)
    storage.write_bytes(SAMPLE_TABLE, data)  # last: a sample table means all its media are there
    return url


def read_sample(storage: Storage, table: str = SAMPLE_TABLE) -> Sample:
    """The exported sample (a table from before gold pairs reads as one without them)."""
    if not storage.exists(table):
        raise VipoError(f"{posixpath.join(storage.url, table)}: no calibration sample; "
                        "export one first with `vipo-build calibrate ROOT --sample N`")
    data = storage.read_bytes(table)
    rows_table = pq.read_table(pa.BufferReader(data))
    rows = {row["key"]: {"gold": False, "rubric": "", **row} for row in rows_table.to_pylist()}
    seed = int((rows_table.schema.metadata or {}).get(b"seed", b"0"))
    return Sample(rows=rows, seed=seed, digest=hashlib.sha256(data).hexdigest())


def same_sample(existing: Sample, rows: Sequence[dict], seed: int) -> bool:
    """The same pairs with the same sides: labels made for one are labels of the other (a table
    written before gold pairs and rubrics were recorded counts as the sample it holds)."""
    return existing.seed == seed and [(r["key"], r["a_side"]) for r in existing.rows.values()] == [
        (r["key"], r["a_side"]) for r in rows]


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
    if n < 1:
        return []
    by_category: defaultdict[str, list[dict]] = defaultdict(list)
    for pair in sorted(pairs, key=lambda p: p["key"]):
        by_category[pair["category"]].append(pair)
    quotas = allocate({c: len(found) for c, found in by_category.items()}, n)
    picked = []
    for category, quota in quotas.items():
        drawn = random.Random(derive_seed(seed, "calibration", category)).sample(by_category[category], quota)
        picked += sorted(drawn, key=lambda p: p["key"])
    return picked


def rubric_line(category: str) -> str:
    try:
        return load_category(category).description
    except VipoError:  # a root written with a category folder this installation does not have
        return ""


def sample_row(pair: dict, seed: int, gold: bool) -> dict:
    key = gold_key(pair["key"]) if gold else pair["key"]
    shown_first = random.Random(derive_seed(seed, "calibration", "a_side", key)).random() < 0.5
    return {
        "key": key,
        "category": pair["category"],
        "modality": pair["modality"],
        "prompt": pair["prompt"],
        "rubric": rubric_line(pair["category"]),
        "gold": gold,
        "a_side": "chosen" if shown_first else "rejected",
        "a_file": f"media/{key}.A.{pair['format']}",
        "b_file": f"media/{key}.B.{pair['format']}",
    }


def write_media(storage: Storage, pairs: Sequence[dict], rows: Sequence[dict], seed: int) -> None:
    """Copy each pair's candidates out of its shard's tar (one read per shard) as its A and B
    files; a gold row's are its source's chosen candidate and a degraded copy of it."""
    by_shard: defaultdict[str, list[tuple[dict, dict]]] = defaultdict(list)
    for pair, row in zip(pairs, rows):
        by_shard[pair["shard"]].append((pair, row))
    for shard, wanted in sorted(by_shard.items()):
        samples = dict(tar_samples(storage.read_bytes(f"{SHARDS_DIR}/{shard}.tar")))
        for pair, row in wanted:
            members = samples.get(pair["key"], {})
            for member in (f"chosen.{pair['format']}", f"rejected.{pair['format']}"):
                if member not in members:
                    raise VipoError(f"{storage.url}/{SHARDS_DIR}/{shard}.tar: sample {pair['key']} has no {member}")
            chosen = members[f"chosen.{pair['format']}"]
            if row["gold"]:
                sides = {"chosen": chosen, "rejected": degraded_copy(chosen, pair["format"], derive_seed(seed, "gold", row["key"]))}
            else:
                sides = {"chosen": chosen, "rejected": members[f"rejected.{pair['format']}"]}
            b_side = "rejected" if row["a_side"] == "chosen" else "chosen"
            storage.write_bytes(f"{CALIBRATION_DIR}/{row['a_file']}", sides[row["a_side"]])
            storage.write_bytes(f"{CALIBRATION_DIR}/{row['b_file']}", sides[b_side])
