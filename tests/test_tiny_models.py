"""Tiny models are built deterministically and reused once complete."""

from __future__ import annotations

import hashlib
from pathlib import Path

from vipo_build.models.tiny import make_tiny_models


def digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_same_code_builds_the_same_bytes(tmp_path: Path):
    first = make_tiny_models(tmp_path / "a", ["sana", "wan"])
    second = make_tiny_models(tmp_path / "b", ["sana", "wan"])
    for name in ("sana", "wan"):
        assert any(p.suffix == ".safetensors" for p in first[name].rglob("*"))
        assert digests(first[name]) == digests(second[name])


def test_complete_model_is_reused_and_incomplete_one_rebuilt(tmp_path: Path):
    path = make_tiny_models(tmp_path, ["wan"])["wan"]
    weights = next(path.rglob("*.safetensors"))
    mtime = weights.stat().st_mtime_ns
    make_tiny_models(tmp_path, ["wan"])
    assert weights.stat().st_mtime_ns == mtime
    (path / ".complete").unlink()  # as if the build had been killed before its marker
    make_tiny_models(tmp_path, ["wan"])
    assert (path / ".complete").is_file() and next(path.rglob("*.safetensors")).stat().st_mtime_ns != mtime
