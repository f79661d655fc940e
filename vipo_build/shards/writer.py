"""Write one shard: WebDataset tar, Parquet manifest, then the commit record that makes it complete.

A shard is complete iff `shards/NAME.json` exists and the tar and Parquet it names have the
recorded sizes and sha256. Data files go first, each atomically; the record goes last. Nothing
in any of the three files depends on time or scheduling, so a rebuilt shard has the same bytes.
"""

from __future__ import annotations

import hashlib
import json
from concurrent.futures import Future, ThreadPoolExecutor
from typing import BinaryIO

import pyarrow as pa

from vipo_build.judge.agreement import score_margins
from vipo_build.layout import SHARDS_DIR
from vipo_build.records import Candidate, Pair
from vipo_build.runtime import failpoints
from vipo_build.runtime.storage import Storage, parquet_bytes
from vipo_build.shards.sample import DimensionScore, PanelJudge, SampleJson, SampleJudge, SampleSide, SampleVote, VoteScore


MANIFEST_SCHEMA = pa.schema(
    [
        ("key", pa.string()),
        ("shard", pa.string()),
        ("category", pa.string()),
        ("modality", pa.string()),
        ("prompt_id", pa.string()),
        ("seed_subject", pa.string()),
        ("facets", pa.list_(pa.struct([("facet", pa.string()), ("value", pa.string())]))),
        ("prompt", pa.string()),
        ("rendered_text", pa.string()),
        ("chosen_generator", pa.string()),
        ("chosen_seed", pa.int64()),
        ("chosen_sha256", pa.string()),
        ("chosen_perturbed", pa.bool_()),
        ("rejected_generator", pa.string()),
        ("rejected_seed", pa.int64()),
        ("rejected_sha256", pa.string()),
        ("rejected_perturbed", pa.bool_()),
        ("format", pa.string()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("frames", pa.int32()),
        # a clip's temporal figures (vipo_build/generate/motion.py); null for images
        ("chosen_motion", pa.float64()),
        ("rejected_motion", pa.float64()),
        ("chosen_flicker", pa.float64()),
        ("rejected_flicker", pa.float64()),
        ("votes", pa.int32()),
        ("vote_share", pa.float64()),
        ("order_consistent", pa.bool_()),
        # a list of records, not a map: `datasets` has no map type, and names differ between categories
        ("dimensions", pa.list_(pa.struct([("dimension", pa.string()), ("chosen_mean", pa.float64()),
                                           ("rejected_mean", pa.float64()), ("margin", pa.float64())]))),
    ]
)


def _side(candidate: Candidate) -> SampleSide:
    return SampleSide(
        **candidate.model_dump(include={"generator", "seed", "width", "height", "frames", "fps", "perturbed"}),
        sha256=candidate.sha256,
        motion=candidate.motion.motion if candidate.motion else None,
        flicker=candidate.motion.flicker if candidate.motion else None,
    )


def dimension_scores(verdict) -> list[DimensionScore]:
    """Both sides' mean scores and the chosen side's margin, per dimension of the rubric."""
    chosen, rejected = verdict.mean_scores[verdict.chosen_side], verdict.mean_scores[1 - verdict.chosen_side]
    margins = score_margins(verdict)
    return [DimensionScore(dimension=d, chosen_mean=mean, rejected_mean=rejected[d], margin=margins[d])
            for d, mean in chosen.items()]


def sample_json(pair: Pair) -> SampleJson:
    """The sample's `json` member: what a trainer or an auditor needs to know about the pair."""
    verdict = pair.verdict
    chosen, rejected = verdict.chosen_side, 1 - verdict.chosen_side
    return SampleJson(
        key=pair.key,
        category=pair.prompt.category,
        modality=pair.prompt.modality,
        prompt_id=pair.prompt.id,
        seed_subject=pair.prompt.seed_subject,
        facets=pair.prompt.facets,
        chosen=_side(pair.chosen),
        rejected=_side(pair.rejected),
        judge=SampleJudge(
            votes=[
                SampleVote(judge=v.judge, order=v.order, view=v.view, sample=v.sample, winner=_relabel(v.winner_side, chosen),
                           scores=[VoteScore(dimension=d, chosen=score, rejected=v.scores[rejected][d])
                                   for d, score in v.scores[chosen].items()] if v.valid else [])
                for v in verdict.votes
            ],
            vote_share=verdict.vote_share,
            order_consistent=verdict.order_consistent,
            dimensions=dimension_scores(verdict),
            panel=[PanelJudge(judge=p.judge, winner=_relabel(p.chosen_side, chosen), reason=p.reason,
                              vote_share=p.vote_share, order_consistent=p.order_consistent) for p in verdict.panel],
        ),
    )


def _relabel(winner_side: int | None, chosen_side: int) -> str:
    if winner_side is None:
        return "tie"
    return "chosen" if winner_side == chosen_side else "rejected"


def manifest_row(pair: Pair, shard: str) -> dict:
    verdict = pair.verdict
    return {
        "key": pair.key,
        "shard": shard,
        "category": pair.prompt.category,
        "modality": pair.prompt.modality,
        "prompt_id": pair.prompt.id,
        "seed_subject": pair.prompt.seed_subject,
        "facets": [f.model_dump() for f in pair.prompt.facets],
        "prompt": pair.prompt.text,
        "rendered_text": pair.prompt.rendered_text,
        "chosen_generator": pair.chosen.generator,
        "chosen_seed": pair.chosen.seed,
        "chosen_sha256": pair.chosen.sha256,
        "chosen_perturbed": pair.chosen.perturbed,
        "rejected_generator": pair.rejected.generator,
        "rejected_seed": pair.rejected.seed,
        "rejected_sha256": pair.rejected.sha256,
        "rejected_perturbed": pair.rejected.perturbed,
        "format": pair.chosen.format,
        "width": pair.chosen.width,
        "height": pair.chosen.height,
        "frames": pair.chosen.frames,
        "chosen_motion": pair.chosen.motion.motion if pair.chosen.motion else None,
        "rejected_motion": pair.rejected.motion.motion if pair.rejected.motion else None,
        "chosen_flicker": pair.chosen.motion.flicker if pair.chosen.motion else None,
        "rejected_flicker": pair.rejected.motion.flicker if pair.rejected.motion else None,
        "votes": len(verdict.votes),
        "vote_share": verdict.vote_share,
        "order_consistent": verdict.order_consistent,
        "dimensions": [d.model_dump() for d in dimension_scores(verdict)],
    }


class HashingWriter:
    """Passes writes on to a file and hashes them on a helper thread (hashlib releases the GIL on
    large buffers), so the checksum needs no second pass and little extra time."""

    CHUNK = 8 * 2**20

    def __init__(self, sink: BinaryIO):
        self.sink, self.bytes, self.pending, self.pending_bytes = sink, 0, [], 0
        self.sha256 = hashlib.sha256()
        self.hasher = ThreadPoolExecutor(max_workers=1)  # one worker: chunks are hashed in order
        self.hashing: list[Future] = []

    def write(self, data: bytes) -> int:
        self.sink.write(data)
        self.bytes += len(data)
        self.pending.append(bytes(data))
        self.pending_bytes += len(data)
        if self.pending_bytes >= self.CHUNK:
            self._flush_pending()
        return len(data)

    def _flush_pending(self) -> None:
        chunk, self.pending, self.pending_bytes = b"".join(self.pending), [], 0
        self.hashing.append(self.hasher.submit(self.sha256.update, chunk))

    def hexdigest(self) -> str:
        self._flush_pending()
        for job in self.hashing:
            job.result()
        self.hasher.shutdown()
        return self.sha256.hexdigest()


def write_tar(sink: BinaryIO, pairs: list[Pair]) -> None:
    import webdataset as wds  # here: it imports torch, which `status`, `verify` and `audit` never need

    # Fixed owner and mtime: the tar's bytes depend only on its samples.
    with wds.TarWriter(sink, encoder=False, mtime=0) as tar:
        tar.tarstream.copybufsize = 2**22  # a member in one write, not twenty of 16 KiB
        for pair in pairs:
            tar.write(
                {
                    "__key__": pair.key,
                    "prompt.txt": pair.prompt.text.encode(),
                    f"chosen.{pair.chosen.format}": pair.chosen.media,
                    f"rejected.{pair.rejected.format}": pair.rejected.media,
                    "json": json.dumps(sample_json(pair).model_dump(mode="json"), sort_keys=True).encode(),
                }
            )


def write_shard(storage: Storage, shard: str, pairs: list[Pair]) -> dict:
    """Write tar, manifest and (last) commit record of one shard; returns the commit record.

    The tar streams to its file (a shard need not fit in memory) and is hashed on the way.
    """
    with storage.open_write(f"{SHARDS_DIR}/{shard}.tar") as f:
        tar = HashingWriter(f)
        write_tar(tar, pairs)
        tar_sha256 = tar.hexdigest()
    failpoints.reached("shard.tar_written", shard)
    manifest = parquet_bytes(pa.Table.from_pylist([manifest_row(p, shard) for p in pairs], schema=MANIFEST_SCHEMA))
    storage.write_bytes(f"{SHARDS_DIR}/{shard}.parquet", manifest)
    failpoints.reached("shard.data_written", shard)
    categories: dict[str, int] = {}
    for pair in pairs:
        categories[pair.prompt.category] = categories.get(pair.prompt.category, 0) + 1
    record = {
        "shard": shard,
        "pairs": len(pairs),
        "categories": dict(sorted(categories.items())),
        "files": {
            "tar": {"name": f"{shard}.tar", "bytes": tar.bytes, "sha256": tar_sha256},
            "parquet": {"name": f"{shard}.parquet", "bytes": len(manifest), "sha256": hashlib.sha256(manifest).hexdigest()},
        },
        "stats": {
            "mean_vote_share": round(sum(p.verdict.vote_share for p in pairs) / len(pairs), 6),
            "order_consistent_rate": round(sum(p.verdict.order_consistent for p in pairs) / len(pairs), 6),
        },
    }
    storage.write_bytes(f"{SHARDS_DIR}/{shard}.json", json.dumps(record, indent=1, sort_keys=True).encode())
    failpoints.reached("shard.committed", shard)
    return record


def committed_shards(storage: Storage) -> dict[str, dict]:
    """Commit records whose data files exist with the recorded sizes (a cheap check; `verify` hashes).

    One listing gives every size, and the records are fetched together (concurrently on object
    stores): the scan costs one request per shard, not five.
    """
    sizes = storage.sizes(SHARDS_DIR)
    names = [f"{SHARDS_DIR}/{n}" for n in sizes if n.endswith(".json")]
    records = {}
    for data in storage.read_many(names).values():
        try:
            record = json.loads(data)
            files = record["files"].values()
        except (ValueError, KeyError, AttributeError):
            continue  # not a commit record of ours: the shard counts as not committed
        if all(sizes.get(f["name"]) == f["bytes"] for f in files):
            records[record["shard"]] = record
    return records


def pairs_written(committed: dict[str, dict]) -> dict[str, int]:
    """Pairs per category over the given commit records."""
    written: dict[str, int] = {}
    for record in committed.values():
        for category, n in record["categories"].items():
            written[category] = written.get(category, 0) + n
    return written
