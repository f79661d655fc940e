"""The GPU check's CPU side: its full-size architectures have the published sizes, and the script
runs every step end to end on the tiny models."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
import full_size  # noqa: E402


def parameters(module: torch.nn.Module) -> float:
    return sum(p.numel() for p in module.parameters()) / 1e9


def test_full_size_architectures_have_the_published_sizes(tmp_path):
    from transformers import AutoConfig, AutoProcessor, LlavaForConditionalGeneration

    flux = full_size.full_size_flux("meta")  # no memory: shapes only
    assert parameters(flux.transformer) == pytest.approx(11.9, abs=0.05)
    assert parameters(flux.text_encoder_2) == pytest.approx(4.76, abs=0.05)  # T5-XXL encoder
    wan = full_size.full_size_wan_1_3b("meta")
    assert parameters(wan.transformer) == pytest.approx(1.42, abs=0.01)
    assert parameters(wan.text_encoder) == pytest.approx(5.68, abs=0.01)  # UMT5-XXL encoder
    folder = full_size.llava_7b_folder(tmp_path / "llava")
    with torch.device("meta"):
        llava = LlavaForConditionalGeneration(AutoConfig.from_pretrained(folder))
    assert parameters(llava) == pytest.approx(7.06, abs=0.02)
    assert AutoProcessor.from_pretrained(folder).image_processor.crop_size == {"height": 336, "width": 336}


@pytest.mark.timeout(600)
def test_gpu_check_runs_every_step_on_the_tiny_models(tiny_models, tmp_path):
    out = tmp_path / "gpu_check.json"
    result = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_check.sh"), "--tiny", str(out)],
                            capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHON": sys.executable})
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    figures = json.loads(out.read_text())
    assert sorted(figures) == ["date", "flux", "flux_compile", "flux_first_block_cache", "flux_fp8_weights", "judge", "wan"]
    assert not [name for name, f in figures.items() if isinstance(f, dict) and "failed" in f], figures
    assert figures["flux"]["ratio_stage_to_bare"] > 0 and figures["judge"]["ratio_stage_to_bare"] > 0
    assert 0 < figures["judge"]["engine_busy_fraction"] <= 1
    assert figures["flux_first_block_cache"]["first_block_cache"] == 0.12 and figures["flux_fp8_weights"]["fp8_weights"]
    assert figures["flux_compile"]["compile"] and figures["flux_compile"]["ratio_stage_to_plain_bare"] > 0
    assert figures["wan"]["seconds_per_clip_at_50_steps"] > 0
