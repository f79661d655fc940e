"""Shared fixtures: the tiny models (built once, where `make tiny-models` puts them) and configs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from vipo_build.config import load_config
from vipo_build.models.tiny import make_tiny_models
from vipo_build.shards.plan import ShardPlan

REPO = Path(__file__).resolve().parents[1]
TINY_MODELS = REPO / "build" / "tiny-models"


@pytest.fixture(scope="session")
def tiny_models() -> dict[str, Path]:
    return make_tiny_models(TINY_MODELS)


def tiny_config(**overrides) -> dict:
    """pipelines/tiny.yaml as a dict with absolute model paths, top-level keys replaced by `overrides`."""
    config = yaml.safe_load((REPO / "pipelines" / "tiny.yaml").read_text())
    config["prompts"]["engine"]["model"] = str(TINY_MODELS / "llm")
    config["judge"]["engines"][0]["engine"]["model"] = str(TINY_MODELS / "vlm")
    for generator in config["generate"]["generators"]:
        generator["model"] = str(TINY_MODELS / Path(generator["model"]).name)
    config.update(overrides)
    return config


def write_config(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def vipo(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vipo_build.cli", *args], capture_output=True, text=True, timeout=1500)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, tiny_models) -> tuple[Path, Path, ShardPlan]:
    """The tiny config run once at one pair per category (config path, root, shard plan); tests copy it before changing it."""
    work = tmp_path_factory.mktemp("tiny")
    config = tiny_config(output=str(work / "out"))
    for name in config["categories"]:
        config["categories"][name]["pairs"] = 1
    config["shards"]["pairs_per_shard"] = 3
    path = write_config(work / "tiny1.yaml", config)
    result = vipo("run", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    plan = ShardPlan.of(load_config(path)[0])
    return path, work / "out", plan
