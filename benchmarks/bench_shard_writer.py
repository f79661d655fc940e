"""Shard writer throughput against a bare webdataset.TarWriter + pyarrow.parquet loop.

Both write the same pre-encoded media (random bytes of the size of a 1024 px JPEG per side) to
local disk, shard by shard. vipo-build's writer also builds each sample's json and manifest row
from the typed records, hashes tar and Parquet and writes the commit record. Two baselines:
`bare` is handed its tar members and manifest rows ready-made; `bare+meta` builds the same json
and rows itself inside the timing. Prints pairs/s and the ratios (goal: >= 0.9).

    .venv/bin/python benchmarks/bench_shard_writer.py [--pairs 2000] [--per-shard 200] [--kib 350] [--dir /dev/shm]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import webdataset as wds

from vipo_build.records import Candidate, Pair, Prompt, Verdict, Vote
from vipo_build.runtime.storage import Storage
from vipo_build.shards.writer import MANIFEST_SCHEMA, manifest_row, sample_json, write_shard

DIMENSIONS = ("composition", "color", "detail")


def make_pairs(n: int, kib: int) -> list[Pair]:
    pairs = []
    for i in range(n):
        prompt = Prompt(id=f"aesthetics-u{i // 16:06d}-p{i % 16:03d}", category="aesthetics", modality="image",
                        unit=i // 16, index=i % 16, round=0, seed_subject="a lighthouse at dusk",
                        text=f"A lighthouse on a basalt cliff at dusk, long exposure, number {i}",
                        expansion_model="llm")
        sides = [Candidate(prompt_id=prompt.id, side=s, generator="flux", seed=1000 * i + s, width=1024, height=1024,
                           format="jpg", media=os.urandom(kib * 1024)) for s in (0, 1)]
        scores = [{d: 4 for d in DIMENSIONS}, {d: 2 for d in DIMENSIONS}]
        votes = [Vote(judge="bench", order=o, view="image", sample=k, seed=k, winner_side=0, scores=scores) for o in ("AB", "BA") for k in range(2)]
        verdict = Verdict(pair_id=prompt.id, kept=True, reason="kept", chosen_side=0, vote_share=1.0, order_consistent=True,
                          votes_for=[4, 0, 0], mean_scores=[{d: 4.0 for d in DIMENSIONS}, {d: 2.0 for d in DIMENSIONS}],
                          votes=votes)
        pairs.append(Pair(key=prompt.id, prompt=prompt, chosen=sides[0], rejected=sides[1], verdict=verdict))
    return pairs


def bare_loop(out: Path, shards: list[list[Pair]], samples: list[list[dict]], rows: list[list[dict]]) -> None:
    """The plain way: a TarWriter per shard and a Parquet file of the rows, nothing else."""
    for s, pairs in enumerate(shards):
        with wds.TarWriter(str(out / f"bare-{s:06d}.tar"), encoder=False) as tar:
            for sample in samples[s]:
                tar.write(sample)
        pq.write_table(pa.Table.from_pylist(rows[s], schema=MANIFEST_SCHEMA), out / f"bare-{s:06d}.parquet", compression="zstd")


def bare_with_metadata(out: Path, shards: list[list[Pair]]) -> None:
    samples = [[{"__key__": p.key, "prompt.txt": p.prompt.text.encode(), "chosen.jpg": p.chosen.media,
                 "rejected.jpg": p.rejected.media, "json": json.dumps(sample_json(p).model_dump(mode="json")).encode()}
                for p in shard] for shard in shards]
    rows = [[manifest_row(p, f"bare-{s:06d}") for p in shard] for s, shard in enumerate(shards)]
    bare_loop(out, shards, samples, rows)


def vipo_writer(out: Path, shards: list[list[Pair]]) -> None:
    storage = Storage(str(out))
    for s, pairs in enumerate(shards):
        write_shard(storage, f"vipo-{s:06d}", pairs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=2000)
    parser.add_argument("--per-shard", type=int, default=200)
    parser.add_argument("--kib", type=int, default=350, help="bytes per encoded image, KiB")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dir", default=None, help="where to write (default: the temp dir); /dev/shm leaves the disk out")
    args = parser.parse_args()

    pairs = make_pairs(args.pairs, args.kib)
    shards = [pairs[i : i + args.per_shard] for i in range(0, len(pairs), args.per_shard)]
    # The baseline's samples and rows are made before the clock starts: it gets them for free.
    samples = [[{"__key__": p.key, "prompt.txt": p.prompt.text.encode(), "chosen.jpg": p.chosen.media,
                 "rejected.jpg": p.rejected.media, "json": json.dumps(sample_json(p).model_dump(mode="json")).encode()}
                for p in shard] for shard in shards]
    rows = [[manifest_row(p, f"bare-{s:06d}") for p in shard] for s, shard in enumerate(shards)]
    gib = args.pairs * 2 * args.kib / 2**20
    print(f"{args.pairs} pairs, {len(shards)} shards, {gib:.2f} GiB of media; best of {args.repeats}")

    writers = {"bare": lambda d: bare_loop(d, shards, samples, rows), "bare+meta": lambda d: bare_with_metadata(d, shards),
               "vipo": lambda d: vipo_writer(d, shards)}
    best = dict.fromkeys(writers, float("inf"))
    names = list(writers)
    for repeat in range(args.repeats):
        for name in names[repeat % len(names):] + names[: repeat % len(names)]:  # each goes first once
            write = writers[name]
            out = Path(tempfile.mkdtemp(prefix=f"bench-{name}-", dir=args.dir))
            os.sync()  # the previous writer's dirty pages are not this one's to flush
            start = time.perf_counter()
            write(out)
            best[name] = min(best[name], time.perf_counter() - start)
            shutil.rmtree(out)
    for name, seconds in best.items():
        print(f"{name:>9}: {seconds:7.2f} s  {args.pairs / seconds:8.0f} pairs/s  {gib / seconds:6.2f} GiB/s")
    print(f"ratio vipo/bare: {best['bare'] / best['vipo']:.2f}   vipo/bare+meta: {best['bare+meta'] / best['vipo']:.2f}")


if __name__ == "__main__":
    main()
