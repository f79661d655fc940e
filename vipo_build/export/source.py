"""The kept pairs an export takes: an index from the committed manifests, then the samples
streamed shard by shard out of the tars (one sample in memory at a time)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from webdataset.tariterators import group_by_keys, tar_file_expander

from vipo_build.audit.collect import read_manifests
from vipo_build.errors import VipoError
from vipo_build.layout import SHARDS_DIR
from vipo_build.runtime.storage import Storage
from vipo_build.shards.writer import committed_shards

INDEX_COLUMNS = ["key", "shard", "category", "modality", "prompt_id", "seed_subject", "prompt", "chosen_generator",
                 "rejected_generator", "format", "width", "height", "frames", "vote_share"]


def read_index(storage: Storage, modality: str, categories: list[str], min_vote_share: float | None) -> pa.Table:
    """Manifest rows of the committed shards of `modality` in shard order, those kept by the filters."""
    manifests = read_manifests(storage, committed_shards(storage), INDEX_COLUMNS)
    keep = pc.and_(pc.equal(manifests["modality"], modality), pc.is_in(manifests["category"], pa.array(categories)))
    if min_vote_share is not None:
        keep = pc.and_(keep, pc.greater_equal(manifests["vote_share"], min_vote_share))
    return manifests.filter(keep)


def samples(storage: Storage, index: pa.Table) -> Iterator[tuple[int, dict, dict]]:
    """(position in `index`, index row, webdataset sample) of every pair in `index` (which is in
    shard order), reading each shard once; only one shard's rows are Python objects at a time."""
    shard_codes = pc.dictionary_encode(index["shard"].combine_chunks()).indices.to_numpy(zero_copy_only=False)
    starts = [0, *(np.flatnonzero(np.diff(shard_codes)) + 1).tolist(), len(shard_codes)]
    for start, end in zip(starts, starts[1:]):
        if start == end:
            continue
        rows = index.slice(start, end - start).to_pylist()
        by_key = {row["key"]: (start + i, row) for i, row in enumerate(rows)}
        path = f"{SHARDS_DIR}/{rows[0]['shard']}.tar"
        with storage.fs.open(storage.path(path), "rb") as stream:
            found = 0
            for sample in group_by_keys(tar_file_expander([{"url": f"{storage.url}/{path}", "stream": stream}])):
                hit = by_key.get(sample["__key__"])
                if hit is not None:
                    found += 1
                    yield hit[0], hit[1], sample
        if found != len(by_key):
            raise VipoError(f"{storage.url}/{path}: {len(by_key) - found} pairs of its manifest are not in the tar; "
                            "run `vipo-build verify` on the root")
