"""JSON Schemas of the public formats, exported to schemas/ by `vipo-build schema`."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa

from vipo_build.audit.model import AuditReport
from vipo_build.config import PipelineConfig
from vipo_build.shards.sample import SampleJson
from vipo_build.shards.writer import MANIFEST_SCHEMA
from vipo_build.status import RootStatus


def _arrow_to_json(t: pa.DataType) -> dict:
    if pa.types.is_string(t):
        return {"type": "string"}
    if pa.types.is_integer(t):
        return {"type": "integer"}
    if pa.types.is_floating(t):
        return {"type": "number"}
    if pa.types.is_boolean(t):
        return {"type": "boolean"}
    if pa.types.is_list(t):
        return {"type": "array", "items": _arrow_to_json(t.value_type)}
    if pa.types.is_struct(t):
        return {"type": "object", "properties": {f.name: _arrow_to_json(f.type) for f in t},
                "required": [f.name for f in t], "additionalProperties": False}
    raise TypeError(f"no JSON Schema mapping for {t}")


def manifest_row_schema() -> dict:
    return {
        "title": "ManifestRow",
        "description": "One row of shards/NAME.parquet: one kept pair.",
        "type": "object",
        "properties": {f.name: _arrow_to_json(f.type) for f in MANIFEST_SCHEMA},
        "required": MANIFEST_SCHEMA.names,
    }


def all_schemas() -> dict[str, dict]:
    return {
        "pipeline.schema.json": PipelineConfig.model_json_schema(),
        "manifest-row.schema.json": manifest_row_schema(),
        "sample.schema.json": SampleJson.model_json_schema(),
        "audit.schema.json": AuditReport.model_json_schema(),
        "status.schema.json": RootStatus.model_json_schema(),
    }


def render(schema: dict) -> str:
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def write_schemas(out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, schema in all_schemas().items():
        (out / name).write_text(render(schema))
        paths.append(out / name)
    return paths
