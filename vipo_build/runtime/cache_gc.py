"""`vipo-build gc`: delete the candidate caches that no run will read again.

A unit's candidates are read by the judge, then by the writer of each shard its kept pairs go to.
Once every kept pair of a unit is in a committed shard (or every planned shard is committed), no
run reads them again, and they are most of a root's bytes. (On a root still being built, a unit
with kept pairs past its category's quota keeps its candidates until every shard is committed.) Judged files stay (a few KB per unit):
a resume rebuilds each category's kept pairs from them, and without them it would generate and
judge the unit again. Leftovers of writes a kill cut short (`*.tmp-*`) go too.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow.parquet as pq

from vipo_build.judge import panel
from vipo_build.layout import SHARDS_DIR
from vipo_build.runtime import cache
from vipo_build.runtime.storage import TMP_MARK, Storage
from vipo_build.shards.plan import ShardPlan
from vipo_build.shards.writer import committed_shards


@dataclass
class Garbage:
    paths: list[str]  # relative to the root
    bytes: int
    units: int  # whose candidates they are


def find(storage: Storage) -> Garbage:
    """What gc would delete in a root."""
    from vipo_build.root import read_run_json

    config, _ = read_run_json(storage)
    plan = ShardPlan.of(config)
    committed = committed_shards(storage)
    finished = {plan.shard_name(s) for s in range(plan.num_shards)} <= committed.keys()
    written = set() if finished else committed_keys(storage, committed)
    paths, size, units = [], 0, 0
    for name in plan.quotas:
        folder = cache.category_dir(name)
        sizes = storage.sizes(folder, unfinished=True)
        by_unit: dict[str, list[str]] = {}
        for file in sizes:
            if TMP_MARK in file:
                paths.append(f"{folder}/{file}")
                size += sizes[file]
            elif file.endswith(".candidates.parquet"):
                by_unit.setdefault(file.split(".", 1)[0], []).append(file)
        judged = {} if finished else panel.judged_units(storage, config.judge, config.category(name), sizes)
        for unit, files in by_unit.items():
            if not finished:
                if unit not in judged:  # not judged by every judge yet: they still need them
                    continue
                if not {v.pair_id for v in judged[unit] if v.kept} <= written:
                    continue
            paths += [f"{folder}/{file}" for file in files]
            size += sum(sizes[file] for file in files)
            units += 1
    return Garbage(paths, size, units)


def committed_keys(storage: Storage, committed: dict[str, dict]) -> set[str]:
    """Pair keys of the committed shards, from their manifests' key column."""
    keys: set[str] = set()
    for shard in committed:
        with storage.fs.open(storage.path(f"{SHARDS_DIR}/{shard}.parquet")) as f:
            keys.update(pq.read_table(f, columns=["key"]).column("key").to_pylist())
    return keys


def collect(storage: Storage, dry_run: bool = False) -> Garbage:
    """Delete (unless dry_run) what `find` finds; returns it."""
    garbage = find(storage)
    if not dry_run:
        storage.remove_many(garbage.paths)
    return garbage


def describe(garbage: Garbage, dry_run: bool) -> str:
    verb = "would free" if dry_run else "freed"
    return (f"gc {verb} {garbage.bytes / 1e9:.3f} GB: {len(garbage.paths)} files, the candidates of {garbage.units} "
            "units whose pairs are all in committed shards (or dropped)")
