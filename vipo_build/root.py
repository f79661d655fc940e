"""A dataset root's own top-level files, and how every command opens a root: no Ray, no models, so
`status`, `verify`, `audit`, `gc` and `export` stay light."""

from __future__ import annotations

import json

from vipo_build.config import PipelineConfig
from vipo_build.errors import VipoError
from vipo_build.layout import RUN_JSON
from vipo_build.runtime.storage import Storage



def open_root(root: str) -> Storage:
    try:
        storage = Storage(root)
        bucket = storage.root.split("/", 1)[0]
        found = storage.is_local or storage.fs.exists(bucket)
        storage.exists(RUN_JSON)
    except Exception as err:  # any backend's connection or permission error
        raise VipoError(f"{root}: cannot open the output root: {type(err).__name__}: {err}") from None
    if not found:
        raise VipoError(f"{root}: bucket {bucket!r} does not exist (or these credentials cannot see it)")
    return storage


def read_run_json(storage: Storage) -> tuple[PipelineConfig, dict]:
    """The config a root was built with, and the whole run.json record."""
    try:
        recorded = json.loads(storage.read_bytes(RUN_JSON))
        return PipelineConfig.model_validate(recorded["config"]), recorded
    except (ValueError, KeyError) as err:
        raise VipoError(f"{storage.url}/{RUN_JSON}: unreadable ({type(err).__name__}); was it written by another version?") from None
