"""The committed JSON Schemas match the code (run `vipo-build schema` after changing a model)."""

from __future__ import annotations

from pathlib import Path

import pytest

from vipo_build.schemas import all_schemas, render

SCHEMAS = Path(__file__).resolve().parents[1] / "schemas"


@pytest.mark.parametrize("name", sorted(all_schemas()))
def test_schema_is_current(name: str):
    path = SCHEMAS / name
    assert path.is_file(), f"{path} missing: run `vipo-build schema`"
    assert path.read_text() == render(all_schemas()[name]), f"{path} is stale: run `vipo-build schema`"
