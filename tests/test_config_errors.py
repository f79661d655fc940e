"""Bad input gives one line naming the file and field, exit code 2, and writes nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.conftest import tiny_config, write_config
from vipo_build.cli import app

runner = CliRunner()


def run_cli(*args: str):
    return runner.invoke(app, list(args))


def assert_error(result, expected: str) -> None:
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0] == f"error: {expected}"
    assert "Traceback" not in result.output


def test_missing_config_file(tmp_path: Path):
    missing = tmp_path / "nope.yaml"
    assert_error(run_cli("run", str(missing)), f"{missing}: config file not found")


def test_bad_yaml(tmp_path: Path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\ncategories: [unclosed\n")
    result = run_cli("run", str(path))
    assert result.exit_code == 2
    assert result.output.startswith(f"error: {path}: line 3: bad YAML:")


def test_a_config_that_is_not_utf8_is_one_line(tmp_path: Path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: tiny\n# caf\u00e9 in Latin-1\n".encode("latin-1"))
    assert_error(run_cli("run", str(path)), f"{path}: line 2: not UTF-8 text (byte 16 is 0xe9); save the file as UTF-8")


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda c: c["judge"].update(votes=0), "judge.votes: must be >= 1"),
        (lambda c: c["judge"].update(voters=3), "judge.voters: unknown key"),
        (lambda c: c["categories"].update(cubism={"pairs": 3}), "categories: unknown category 'cubism' (known: aesthetics, composition, human_quality, motion_quality, text_image_alignment, text_rendering, video_text_alignment, visual_quality)"),
        (lambda c: c["categories"]["aesthetics"].update(pairs=-5), "categories.aesthetics.pairs: must be >= 1"),
        (lambda c: c["generate"]["generators"][0].update(steps="many"), "generate.generators[0].steps: Input should be a valid integer, unable to parse string as an integer"),
        (lambda c: c["generate"]["image"].update(format="gif"), "generate.image.format: must be one of 'jpg', 'png' or 'webp'"),
        (lambda c: c.pop("judge"), "judge: required field is missing"),
        (lambda c: c["judge"]["engines"].append(c["judge"]["engines"][0]), "judge.engines: judge names must be unique, repeated: tiny-vlm"),
        (lambda c: c["judge"].update(combine="vote"), "judge.combine: must be one of 'all_agree' or 'pooled'"),
        (lambda c: c.update(total_pairs=30), "total_pairs is 30 but the categories' fixed pairs add up to 40"),
    ],
)
def test_invalid_field_names_the_yaml_path(tmp_path: Path, change, expected: str):
    config = tiny_config(output=str(tmp_path / "out"))
    change(config)
    path = write_config(tmp_path / "x.yaml", config)
    assert_error(run_cli("run", str(path)), f"{path}: {expected}")
    assert not (tmp_path / "out").exists()


def test_missing_model_path(tmp_path: Path, tiny_models):
    config = tiny_config(output=str(tmp_path / "out"))
    config["judge"]["engines"][0]["engine"]["model"] = str(tmp_path / "no-such-vlm")
    path = write_config(tmp_path / "x.yaml", config)
    assert_error(run_cli("run", str(path)), f"{path}: judge.engines[0].engine.model: model directory not found: {tmp_path / 'no-such-vlm'}")
    assert not (tmp_path / "out").exists()


def test_cross_model_needs_two_generators(tmp_path: Path):
    config = tiny_config(output=str(tmp_path / "out"))
    config["categories"]["motion_quality"].pop("pair_strategies")
    path = write_config(tmp_path / "x.yaml", config)
    assert_error(run_cli("run", str(path)), f"{path}: category 'motion_quality' uses cross_model pairs but only 1 video generator is configured")


def test_dry_run_prints_plan_and_writes_nothing(tmp_path: Path, tiny_models):
    config = tiny_config(output=str(tmp_path / "out"))
    path = write_config(tmp_path / "x.yaml", config)
    result = run_cli("run", str(path), "--dry-run")
    assert result.exit_code == 0, result.output
    assert "40 pairs in 5 shards (tiny-image 3, tiny-video 2)" in result.output  # 25 image pairs and 15 video pairs, 10 per shard
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name", ["image_1m.yaml", "video_300k.yaml"])
def test_production_configs_validate(name: str):
    result = run_cli("run", f"pipelines/{name}", "--dry-run")
    assert result.exit_code == 0, result.output
    total = {"image_1m.yaml": "1,000,000 pairs in 1,000 shards", "video_300k.yaml": "300,000 pairs in 600 shards"}[name]
    assert total in " ".join(result.output.split())
