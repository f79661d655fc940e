"""`vipo-build verify`: every committed shard is what its commit record says, and nothing is half there."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from dataclasses import dataclass, field

import pyarrow.parquet as pq

from vipo_build.generate.encode import decode_image, decode_video
from vipo_build.layout import PLAN_PARQUET, SHARDS_DIR
from vipo_build.runtime.storage import Storage
from vipo_build.shards.sample import SampleJson

QUARANTINE_DIR = "quarantine"
DATA_SUFFIXES = (".tar", ".parquet")


@dataclass
class Report:
    good: list[str] = field(default_factory=list)
    bad: dict[str, list[str]] = field(default_factory=dict)  # shard -> what is wrong
    unwritten: list[str] = field(default_factory=list)  # planned, nothing written yet


def tar_samples(data: bytes) -> list[tuple[str, dict[str, bytes]]]:
    """(key, {extension: bytes}) per sample, in tar order, grouped the way webdataset groups them."""
    samples: list[tuple[str, dict[str, bytes]]] = []
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for member in tar:
            key, _, ext = member.name.partition(".")
            if not samples or samples[-1][0] != key:
                samples.append((key, {}))
            samples[-1][1][ext] = tar.extractfile(member).read()
    return samples


def check_shard(storage: Storage, shard: str, deep: bool) -> list[str]:
    """What is wrong with one shard that has a commit record ([] when nothing)."""
    record = json.loads(storage.read_bytes(f"{SHARDS_DIR}/{shard}.json"))
    contents = {}
    problems = []
    for kind, meta in record["files"].items():
        rel = f"{SHARDS_DIR}/{meta['name']}"
        if not storage.exists(rel):
            problems.append(f"{kind} file missing")
            continue
        data = storage.read_bytes(rel)
        if len(data) != meta["bytes"]:
            problems.append(f"{kind} has {len(data)} bytes, record says {meta['bytes']}")
        elif hashlib.sha256(data).hexdigest() != meta["sha256"]:
            problems.append(f"{kind} sha256 differs from the record")
        contents[kind] = data
    if problems:
        return problems
    try:
        samples = tar_samples(contents["tar"])
    except tarfile.TarError as err:
        return [f"tar unreadable: {err}"]
    keys = pq.read_table(io.BytesIO(contents["parquet"]), columns=["key"]).column("key").to_pylist()
    tar_keys = [key for key, _ in samples]
    if len(keys) != record["pairs"]:
        problems.append(f"manifest has {len(keys)} rows, record says {record['pairs']}")
    if len(tar_keys) != record["pairs"]:
        problems.append(f"tar has {len(tar_keys)} samples, record says {record['pairs']}")
    if keys != tar_keys:
        missing = sorted(set(tar_keys) - set(keys))[:3]
        extra = sorted(set(keys) - set(tar_keys))[:3]
        problems.append(f"manifest and tar keys differ (only in tar: {missing}, only in manifest: {extra})")
    if deep:
        problems += [f"sample {key}: {p}" for key, members in samples for p in check_sample(members)]
    return problems


def check_sample(members: dict[str, bytes]) -> list[str]:
    """Decode every member of a sample; [] when all decode."""
    problems = []
    try:
        SampleJson.model_validate_json(members.get("json", b""))
    except ValueError as err:
        problems.append(f"json invalid: {str(err).splitlines()[0]}")
    for side in ("chosen", "rejected"):
        ext = next((e.split(".", 1)[1] for e in members if e.startswith(f"{side}.")), None)
        if ext is None:
            problems.append(f"no {side} media")
            continue
        try:
            decode_video(members[f"{side}.{ext}"]) if ext == "mp4" else decode_image(members[f"{side}.{ext}"])
        except Exception as err:  # any decoder error means the file is unusable
            problems.append(f"{side}.{ext} does not decode: {type(err).__name__}")
    return problems


def verify(storage: Storage, deep: bool = False) -> Report:
    report = Report()
    names = storage.list(SHARDS_DIR)
    shards = sorted({n.rsplit(".", 1)[0] for n in names})
    for shard in shards:
        if f"{shard}.json" not in names:
            report.bad[shard] = ["data files without a commit record (incomplete shard)"]
            continue
        problems = check_shard(storage, shard, deep)
        if problems:
            report.bad[shard] = problems
        else:
            report.good.append(shard)
    if storage.exists("plan.parquet"):
        planned = sorted(set(storage.read_table(PLAN_PARQUET).column("shard").to_pylist()))
        report.unwritten = [s for s in planned if s not in shards]
    return report


def quarantine(storage: Storage, shard: str) -> list[str]:
    """Move a bad shard's files aside (commit record first), so the next run rebuilds the shard."""
    moved = []
    for suffix in (".json", *DATA_SUFFIXES):
        rel = f"{SHARDS_DIR}/{shard}{suffix}"
        if storage.exists(rel):
            storage.move(rel, f"{QUARANTINE_DIR}/{shard}{suffix}")
            moved.append(rel)
    return moved
