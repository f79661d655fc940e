"""How long `status` and the resume decision take over 10,000 committed shards, on local disk
and on S3 (moto's server on loopback).

The resume decision is what `run` does before any work: read run.json, check config drift and
find the committed shards. The shards are small synthetic ones (the scan reads commit records
and sizes, never the data), with records and sizes that match.

    .venv/bin/python benchmarks/bench_resume_scan.py [--shards 10000]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.s3 import s3_server  # noqa: E402
from vipo_build.config import PipelineConfig  # noqa: E402
from vipo_build.layout import RUN_JSON, SHARDS_DIR  # noqa: E402
from vipo_build.run import category_files, check_drift  # noqa: E402
from vipo_build.runtime.storage import Storage  # noqa: E402
from vipo_build.shards.plan import ShardPlan  # noqa: E402
from vipo_build.shards.writer import committed_shards  # noqa: E402
from vipo_build.status import root_status  # noqa: E402

PAIRS_PER_SHARD = 8


def make_root(directory: Path, shards: int) -> PipelineConfig:
    raw = yaml.safe_load((REPO / "pipelines" / "tiny.yaml").read_text())
    per_category = shards * PAIRS_PER_SHARD // len(raw["categories"])
    for category in raw["categories"].values():
        category["pairs"] = per_category
    raw["shards"]["pairs_per_shard"] = PAIRS_PER_SHARD
    config = PipelineConfig.model_validate(raw)
    plan = ShardPlan.of(config)
    (directory / SHARDS_DIR).mkdir(parents=True)
    (directory / RUN_JSON).write_text(json.dumps({"config": config.model_dump(mode="json"), "config_hash": config.output_hash(),
                                                  "category_files": category_files(config), "version": "bench"}))
    for s in range(plan.num_shards):
        name = plan.shard_name(s)
        files = {}
        for kind in ("tar", "parquet"):
            data = os.urandom(512)
            (directory / SHARDS_DIR / f"{name}.{kind}").write_bytes(data)
            files[kind] = {"name": f"{name}.{kind}", "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        record = {"shard": name, "pairs": PAIRS_PER_SHARD, "categories": {c: n for c, n in plan.counts(s).items() if n}, "files": files}
        (directory / SHARDS_DIR / f"{name}.json").write_text(json.dumps(record))
    return config


def timed(label: str, fn) -> None:
    start = time.perf_counter()
    result = fn()
    print(f"  {label:<16} {time.perf_counter() - start:8.2f} s  ({result})")


def scan(url: str, config: PipelineConfig) -> None:
    def resume_decision() -> str:
        storage = Storage(url)
        check_drift(storage, config)
        return f"{len(committed_shards(storage))} committed"

    def status() -> str:
        report = root_status(Storage(url))
        return f"{report.shards.complete} complete"

    timed("resume decision", resume_decision)
    timed("status", status)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shards", type=int, default=10_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / "root"
        start = time.perf_counter()
        config = make_root(local, args.shards)
        print(f"{args.shards} committed shards made in {time.perf_counter() - start:.1f} s")
        print("local disk:")
        scan(str(local), config)
        with s3_server("vipo-bench") as (env, _, fs):
            os.environ.update(env)
            start = time.perf_counter()
            fs.put(str(local) + "/", "vipo-bench/root/", recursive=True)
            print(f"S3 (moto on loopback; upload {time.perf_counter() - start:.1f} s):")
            import fsspec.config

            fsspec.config.set_conf_env(fsspec.config.conf)  # the endpoint from the environment just set
            scan("s3://vipo-bench/root", config)


if __name__ == "__main__":
    main()
