"""Read what an audit needs from a dataset root: run.json, plan.parquet, the committed shards'
commit records and manifests, and the cache counts `vipo-build status` reports.

Every read goes through Storage, so local paths and object-store URLs (s3://...) both work.
Shards without a valid commit record are never read: a run in progress is audited on what it
has committed.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq

from vipo_build.audit.diversity import PROMPT_COLUMNS, CategoryPrompts, collect_prompts
from vipo_build.config import PipelineConfig
from vipo_build.errors import VipoError
from vipo_build.layout import CALIBRATION_REPORT, PLAN_PARQUET, RUN_JSON, SHARDS_DIR
from vipo_build.root import open_root, read_run_json
from vipo_build.runtime.storage import Storage
from vipo_build.shards.writer import MANIFEST_SCHEMA, committed_shards
from vipo_build.calibration.report import CalibrationReport
from vipo_build.status import RootStatus, root_status

MANIFEST_BATCH = 64  # manifests held in memory as bytes at once
MANIFEST_COLUMNS = [
    "shard", "category", "chosen_generator", "rejected_generator", "width", "height", "frames",
    "vote_share", "order_consistent", "dimensions", "chosen_motion", "rejected_motion", "chosen_flicker", "rejected_flicker",
]


@dataclass(frozen=True)
class RootContents:
    storage: Storage
    config: PipelineConfig
    plan: pa.Table  # shard, category, pairs: the whole planned dataset
    records: dict[str, dict]  # commit records of the committed shards, by shard name
    manifests: pa.Table  # MANIFEST_COLUMNS of every committed shard's manifest
    status: RootStatus  # root_status(judge=True): stage progress, per-category kept/dropped and the judge's figures from the caches
    calibration: CalibrationReport | None  # reports/calibration.json, where `calibrate --labels` has written it
    prompts: dict[str, CategoryPrompts]  # per category: pairs, subjects and the diversity sample of prompts


def read_root(root: str) -> RootContents:
    storage = open_root(root)
    if not storage.exists(RUN_JSON):
        raise VipoError(f"{root}: no run.json: not a vipo-build dataset root (or not started yet)")
    config, _ = read_run_json(storage)
    if not storage.exists(PLAN_PARQUET):
        raise VipoError(f"{root}: no {PLAN_PARQUET}: the root's shard plan is missing")
    records = committed_shards(storage)
    manifests, prompts = read_manifests_and_prompts(storage, records, config.audit.diversity_sample)
    return RootContents(
        storage=storage,
        config=config,
        plan=read_plan(storage),
        records=records,
        manifests=manifests,
        status=root_status(storage, judge=True),
        calibration=(CalibrationReport.model_validate_json(storage.read_bytes(CALIBRATION_REPORT))
                     if storage.exists(CALIBRATION_REPORT) else None),
        prompts=prompts,
    )


def read_plan(storage: Storage) -> pa.Table:
    try:
        return storage.read_table(PLAN_PARQUET).select(["shard", "category", "pairs"])
    except (pa.ArrowException, KeyError) as err:
        raise VipoError(f"{storage.url}/{PLAN_PARQUET}: unreadable ({type(err).__name__}: {err})") from None


def read_manifests_and_prompts(storage: Storage, records: dict[str, dict], sample_size: int) -> tuple[pa.Table, dict[str, CategoryPrompts]]:
    """MANIFEST_COLUMNS of every committed manifest, and the prompts the diversity figures need, in one read of each."""
    kept = [MANIFEST_SCHEMA.empty_table().select(MANIFEST_COLUMNS)]

    def tables() -> Iterator[pa.Table]:
        for table in stream_manifests(storage, records, list(dict.fromkeys(MANIFEST_COLUMNS + PROMPT_COLUMNS))):
            kept.append(table.select(MANIFEST_COLUMNS))
            yield table

    prompts = collect_prompts(tables(), sample_size)
    return pa.concat_tables(kept), prompts


def read_manifests(storage: Storage, records: dict[str, dict], columns: list[str] = MANIFEST_COLUMNS) -> pa.Table:
    """`columns` of the given shards' manifests, fetched in batches (each batch concurrently on object stores)."""
    return pa.concat_tables([MANIFEST_SCHEMA.empty_table().select(columns), *stream_manifests(storage, records, columns)])


def stream_manifests(storage: Storage, records: dict[str, dict], columns: list[str]) -> Iterator[pa.Table]:
    """`columns` of each given shard's manifest in shard order, MANIFEST_BATCH shards in memory at a time."""
    paths = {shard: f"{SHARDS_DIR}/{record['files']['parquet']['name']}" for shard, record in sorted(records.items())}
    shards = list(paths)
    for start in range(0, len(shards), MANIFEST_BATCH):
        batch = shards[start : start + MANIFEST_BATCH]
        contents = storage.read_many([paths[shard] for shard in batch])
        for shard in batch:
            try:
                table = pq.read_table(io.BytesIO(contents[paths[shard]]), columns=columns)
            except pa.ArrowException as err:
                raise VipoError(
                    f"{storage.url}/{paths[shard]}: unreadable manifest ({type(err).__name__}); run `vipo-build verify` on the root"
                ) from None
            yield table
