"""What a run keeps under OUT/ so a resume never expands, generates or judges the same thing twice.

    prompts/part-{category}-r{round}.parquet     prompts of one expansion round
    cache/{category}/u{unit}.candidates.parquet  encoded candidates of one work unit
    cache/{category}/u{unit}.judged.json         the unit's prompts and verdicts
"""

from __future__ import annotations

import json

import pyarrow as pa

from vipo_build.records import Candidate, Prompt, Verdict
from vipo_build.runtime.storage import Storage

PROMPTS_DIR = "prompts"


def prompt_part(category: str, round_: int) -> str:
    return f"{PROMPTS_DIR}/part-{category}-r{round_:03d}.parquet"


def category_dir(category: str) -> str:
    return f"cache/{category}"


def unit_name(category: str, unit: int) -> str:
    """How messages name a work unit: its cache files are cache/{unit_name}.*"""
    return f"{category}/u{unit:06d}"


def candidates_path(category: str, unit: int) -> str:
    return f"{category_dir(category)}/u{unit:06d}.candidates.parquet"


def judged_path(category: str, unit: int) -> str:
    return f"{category_dir(category)}/u{unit:06d}.judged.json"


def write_prompts(
    storage: Storage, category: str, round_: int, prompts: list[Prompt], units: list[int], drops: dict[str, int]
) -> None:
    """One round's prompts; its units (a unit may lose all its prompts) and drop counts go in the file's metadata."""
    schema = pa.schema([(name, _arrow_type(name)) for name in Prompt.model_fields]).with_metadata(
        {"units": json.dumps(units), "drops": json.dumps(dict(sorted(drops.items())))}
    )
    storage.write_table(prompt_part(category, round_), pa.Table.from_pylist([p.model_dump() for p in prompts], schema=schema))


def _arrow_type(field: str) -> pa.DataType:
    return {"unit": pa.int32(), "index": pa.int32(), "round": pa.int32(), "constraints": pa.list_(pa.string())}.get(field, pa.string())


def read_prompts(storage: Storage, category: str, round_: int) -> tuple[list[Prompt], list[int], dict[str, int]] | None:
    if not storage.exists(prompt_part(category, round_)):
        return None
    table = storage.read_table(prompt_part(category, round_))
    meta = table.schema.metadata
    return [Prompt(**row) for row in table.to_pylist()], json.loads(meta[b"units"]), json.loads(meta[b"drops"])


def write_candidates(storage: Storage, category: str, unit: int, candidates: list[Candidate]) -> None:
    storage.write_table(candidates_path(category, unit), pa.Table.from_pylist([c.model_dump() for c in candidates]))


def read_candidates(storage: Storage, category: str, unit: int) -> list[Candidate] | None:
    if not storage.exists(candidates_path(category, unit)):
        return None
    return [Candidate(**row) for row in storage.read_table(candidates_path(category, unit)).to_pylist()]


def write_judged(storage: Storage, category: str, unit: int, prompts: list[Prompt], verdicts: list[Verdict]) -> None:
    data = {"prompts": [p.model_dump() for p in prompts], "verdicts": [v.model_dump() for v in verdicts]}
    storage.write_bytes(judged_path(category, unit), json.dumps(data, sort_keys=True).encode())


def read_judged(storage: Storage, category: str, unit: int) -> tuple[list[Prompt], list[Verdict]] | None:
    if not storage.exists(judged_path(category, unit)):
        return None
    data = json.loads(storage.read_bytes(judged_path(category, unit)))
    return [Prompt(**p) for p in data["prompts"]], [Verdict(**v) for v in data["verdicts"]]
