"""What one exported row holds in each format, and the split Parquet files rows go to.

pickapic: the Pick-a-Pic v2 columns the diffusers Diffusion-DPO example scripts read (`caption`,
`jpg_0`, `jpg_1`, `label_0`, `label_1`), never a tie; which side the chosen image is on is drawn
per pair from the seed, so neither position always wins. hf: `datasets` Image features, chosen and
rejected. video: mp4 bytes of both sides with fps and frames.
"""

from __future__ import annotations

import contextlib
import hashlib
import json

import pyarrow as pa
import pyarrow.parquet as pq

from vipo_build.runtime.storage import Storage

ROW_GROUP = 64  # rows written at once: the most media an export holds in memory
DATA_DIR = "data"

PICKAPIC_SCHEMA = pa.schema([
    ("caption", pa.string()), ("jpg_0", pa.binary()), ("jpg_1", pa.binary()),
    ("label_0", pa.float64()), ("label_1", pa.float64()), ("model_0", pa.string()), ("model_1", pa.string()),
    ("category", pa.string()), ("vote_share", pa.float64()), ("key", pa.string()),
])
VIDEO_SCHEMA = pa.schema([
    ("caption", pa.string()), ("chosen", pa.binary()), ("rejected", pa.binary()), ("fps", pa.int32()),
    ("frames", pa.int32()), ("width", pa.int32()), ("height", pa.int32()), ("category", pa.string()),
    ("chosen_model", pa.string()), ("rejected_model", pa.string()), ("vote_share", pa.float64()), ("key", pa.string()),
])


def hf_features():
    from datasets import Features, Image, Value

    return Features({"caption": Value("string"), "chosen": Image(), "rejected": Image(), "chosen_model": Value("string"),
                     "rejected_model": Value("string"), "category": Value("string"), "vote_share": Value("float64"),
                     "key": Value("string"), "prompt_id": Value("string"), "seed_subject": Value("string")})


def chosen_first(seed: int, key: str) -> bool:
    return hashlib.sha256(f"{seed}:{key}".encode()).digest()[0] % 2 == 0


def pickapic_row(row: dict, sample: dict, seed: int) -> dict:
    chosen, rejected = sample[f"chosen.{row['format']}"], sample[f"rejected.{row['format']}"]
    first = chosen_first(seed, row["key"])
    images, models = ((chosen, rejected), (row["chosen_generator"], row["rejected_generator"]))
    if not first:
        images, models = images[::-1], models[::-1]
    return {"caption": row["prompt"], "jpg_0": images[0], "jpg_1": images[1], "label_0": 1.0 if first else 0.0,
            "label_1": 0.0 if first else 1.0, "model_0": models[0], "model_1": models[1], "category": row["category"],
            "vote_share": row["vote_share"], "key": row["key"]}


def hf_row(row: dict, sample: dict, seed: int) -> dict:
    name = f"{row['key']}.{row['format']}"
    return {"caption": row["prompt"], "chosen": {"bytes": sample[f"chosen.{row['format']}"], "path": f"chosen-{name}"},
            "rejected": {"bytes": sample[f"rejected.{row['format']}"], "path": f"rejected-{name}"},
            "chosen_model": row["chosen_generator"], "rejected_model": row["rejected_generator"],
            "category": row["category"], "vote_share": row["vote_share"], "key": row["key"],
            "prompt_id": row["prompt_id"], "seed_subject": row["seed_subject"]}


def video_row(row: dict, sample: dict, seed: int) -> dict:
    fps = json.loads(sample["json"])["chosen"]["fps"]
    return {"caption": row["prompt"], "chosen": sample["chosen.mp4"], "rejected": sample["rejected.mp4"], "fps": fps,
            "frames": row["frames"], "width": row["width"], "height": row["height"], "category": row["category"],
            "chosen_model": row["chosen_generator"], "rejected_model": row["rejected_generator"],
            "vote_share": row["vote_share"], "key": row["key"]}


class SplitFiles:
    """`data/{split}-{NNNNN}.parquet` under an output root, each of at most `rows_per_file` rows,
    written ROW_GROUP rows at a time; each file appears whole when it is closed, or not at all."""

    def __init__(self, storage: Storage, schema: pa.Schema, rows_per_file: int):
        self.storage, self.schema, self.rows_per_file = storage, schema, rows_per_file
        self.buffers: dict[str, list[dict]] = {}
        self.open: dict[str, tuple[contextlib.ExitStack, pq.ParquetWriter, int]] = {}
        self.files: dict[str, list[str]] = {}

    def __enter__(self) -> SplitFiles:
        return self

    def __exit__(self, *failure) -> None:
        """On failure, every open file is dropped unfinished (none appears); otherwise nothing to do."""
        if failure[0] is not None:
            for stack, _, _ in self.open.values():
                stack.__exit__(*failure)
            self.open.clear()

    def add(self, split: str, row: dict) -> None:
        buffer = self.buffers.setdefault(split, [])
        buffer.append(row)
        if len(buffer) == ROW_GROUP:
            self._flush(split)

    def _flush(self, split: str) -> None:
        rows, self.buffers[split] = self.buffers.get(split, []), []
        if not rows:
            return
        if split not in self.open:
            name = f"{DATA_DIR}/{split}-{len(self.files.setdefault(split, [])):05d}.parquet"
            stack = contextlib.ExitStack()
            writer = pq.ParquetWriter(stack.enter_context(self.storage.open_write(name)), self.schema)
            self.open[split] = (stack, writer, 0)
            self.files[split].append(name)
        stack, writer, written = self.open[split]
        writer.write_table(pa.Table.from_pylist(rows, schema=self.schema), row_group_size=ROW_GROUP)
        self.open[split] = (stack, writer, written + len(rows))
        if written + len(rows) >= self.rows_per_file:
            self._close(split)

    def _close(self, split: str) -> None:
        stack, writer, _ = self.open.pop(split)
        writer.close()
        stack.close()

    def close(self) -> dict[str, list[str]]:
        """Writes what is buffered and closes every file; returns the files of each split."""
        for split in list(self.buffers):
            self._flush(split)
        for split in list(self.open):
            self._close(split)
        return self.files
