"""What a run keeps under OUT/ so a resume never expands, generates or judges the same thing twice.

    prompts/part-{category}-u{first}.parquet             prompts of up to PART_UNITS units of one round
    cache/{category}/u{unit}.{generator}.candidates.parquet  one generator's encoded candidates of a unit
    cache/{category}/u{unit}.{judge}.judged.json         the unit's prompts and one judge's verdicts
    failed/{category}/u{unit}.json                       why a stage gave up on a unit (until it is retried)

A resume lists each folder once and knows from the names what is done. None of it is dataset
content: a category's work stops when its judged prefix fills its quota, so which later units got
done depends on timing.
"""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq

from vipo_build.layout import CACHE_DIR, FAILED_DIR, PROMPTS_DIR
from vipo_build.records import Candidate, Prompt, Verdict
from vipo_build.runtime.storage import Storage

PART_UNITS = 256  # units per prompt part: a round of 100,000 units is never held in memory whole


def prompt_part(category: str, first_unit: int) -> str:
    return f"{PROMPTS_DIR}/part-{category}-u{first_unit:06d}.parquet"


def category_dir(category: str) -> str:
    return f"{CACHE_DIR}/{category}"


def unit_name(category: str, unit: int) -> str:
    """How messages name a work unit: its cache files are cache/{unit_name}.*"""
    return f"{category}/u{unit:06d}"


def candidates_path(category: str, unit: int, generator: str) -> str:
    return f"{category_dir(category)}/u{unit:06d}.{generator}.candidates.parquet"


def judged_path(category: str, unit: int, judge: str) -> str:
    return f"{category_dir(category)}/u{unit:06d}.{judge}.judged.json"


def write_prompts(
    storage: Storage, category: str, round_: int, prompts: list[Prompt], units: list[int],
    drops: dict[int, dict[str, int]],
) -> None:
    """One part's prompts; its round, its units (a unit may lose all its prompts) and each unit's filter
    drops go in the file's metadata."""
    schema = pa.schema([(name, _arrow_type(name)) for name in Prompt.model_fields]).with_metadata(
        {"round": str(round_), "units": json.dumps(units), "drops": json.dumps(drops, sort_keys=True)}
    )
    storage.write_table(prompt_part(category, units[0]), pa.Table.from_pylist([p.model_dump() for p in prompts], schema=schema))


def _arrow_type(field: str) -> pa.DataType:
    return {"unit": pa.int32(), "index": pa.int32(), "round": pa.int32(), "constraints": pa.list_(pa.string()),
            "facets": pa.list_(pa.struct([("facet", pa.string()), ("value", pa.string())]))}.get(field, pa.string())


def read_prompts(storage: Storage, category: str, first_unit: int) -> tuple[list[Prompt], list[int], dict[int, dict[str, int]]]:
    """A part's prompts, its units, and each unit's filter drops."""
    table = storage.read_table(prompt_part(category, first_unit))
    meta = table.schema.metadata
    drops = {int(unit): counts for unit, counts in json.loads(meta[b"drops"]).items()}
    return [Prompt(**row) for row in table.to_pylist()], json.loads(meta[b"units"]), drops


def write_candidates(storage: Storage, category: str, unit: int, generator: str, candidates: list[Candidate]) -> None:
    storage.write_table(candidates_path(category, unit, generator), pa.Table.from_pylist([c.model_dump() for c in candidates]))


def read_candidates(storage: Storage, category: str, unit: int, generators: list[str]) -> list[Candidate]:
    """A unit's candidates from the parts of these generators."""
    parts = storage.read_many([candidates_path(category, unit, g) for g in generators])
    return [Candidate(**row) for g in generators for row in pq.read_table(pa.BufferReader(parts[candidates_path(category, unit, g)])).to_pylist()]


def listing(storage: Storage, category: str) -> set[str]:
    """Names of the files in a category's cache folder, listed once."""
    return set(storage.list(category_dir(category)))


def failure_path(category: str, unit: int) -> str:
    return f"{FAILED_DIR}/{category}/u{unit:06d}.json"


def write_failure(storage: Storage, category: str, unit: int, record: dict) -> None:
    storage.write_bytes(failure_path(category, unit), json.dumps(record, sort_keys=True).encode())


def read_failures(storage: Storage, category: str) -> dict[int, dict]:
    """The units of a category recorded as failed, with their records."""
    names = storage.list(f"{FAILED_DIR}/{category}", ".json")
    found = storage.read_many([f"{FAILED_DIR}/{category}/{n}" for n in names])
    return {int(rel.rsplit("/u", 1)[1].removesuffix(".json")): json.loads(data) for rel, data in found.items()}


def write_judged(storage: Storage, category: str, unit: int, judge: str, prompts: list[Prompt], verdicts: list[Verdict]) -> None:
    data = {"prompts": [p.model_dump() for p in prompts], "verdicts": [v.model_dump() for v in verdicts]}
    storage.write_bytes(judged_path(category, unit, judge), json.dumps(data, sort_keys=True).encode())


def parse_judged(data: bytes) -> tuple[list[Prompt], list[Verdict]]:
    found = json.loads(data)
    return [Prompt(**p) for p in found["prompts"]], [Verdict(**v) for v in found["verdicts"]]
