"""Shared fixtures: the tiny models (built once, where `make tiny-models` puts them) and configs."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from vipo_build.models.tiny import make_tiny_models

REPO = Path(__file__).resolve().parents[1]
TINY_MODELS = REPO / "build" / "tiny-models"


@pytest.fixture(scope="session")
def tiny_models() -> dict[str, Path]:
    return make_tiny_models(TINY_MODELS)


def tiny_config(**overrides) -> dict:
    """pipelines/tiny.yaml as a dict with absolute model paths, top-level keys replaced by `overrides`."""
    config = yaml.safe_load((REPO / "pipelines" / "tiny.yaml").read_text())
    config["prompts"]["engine"]["model"] = str(TINY_MODELS / "llm")
    config["judge"]["engine"]["model"] = str(TINY_MODELS / "vlm")
    for generator in config["generate"]["generators"]:
        generator["model"] = str(TINY_MODELS / Path(generator["model"]).name)
    config.update(overrides)
    return config


def write_config(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path
