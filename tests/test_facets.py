"""Facets: deterministic draws that follow their weights, requests and prompts that carry them,
and the dry run's count of distinct first-round draws."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from collections import Counter

import pytest
import yaml
from pydantic import ValidationError

from tests.conftest import REPO, tiny_config, write_config
from vipo_build.prompts.categories import Category, known_categories, load_category
from vipo_build.prompts.expand import conversation, first_round_draws, unit_requests
from vipo_build.prompts.facets import draw_facets


def test_every_category_has_facets_and_draws_are_deterministic():
    for name in known_categories():
        category = load_category(name)
        assert len(category.facets) >= 3, name
        first = [draw_facets(category, 7, unit, i) for unit in range(3) for i in range(16)]
        assert first == [draw_facets(category, 7, unit, i) for unit in range(3) for i in range(16)]
        assert first != [draw_facets(category, 8, unit, i) for unit in range(3) for i in range(16)]
        assert [r.facets for r in unit_requests(category, 7, 2, 16)] == first[32:]


def test_draws_follow_the_weights():
    category = load_category("human_quality")
    draws = [dict(draw_facets(category, 0, unit, i)) for unit in range(625) for i in range(16)]  # 10,000
    for name, facet in category.facets.items():
        counts = Counter(d[name] for d in draws)
        total = sum(facet.values.values())
        for value, weight in facet.values.items():
            p = weight / total
            # within 4 standard deviations of the binomial count: fails by chance about once in 16,000 values
            assert abs(counts[value] - p * len(draws)) <= 4 * math.sqrt(len(draws) * p * (1 - p)), (name, value)


def test_subjects_do_not_move_when_facets_are_added():
    category = load_category("aesthetics")
    bare = Category.model_validate(category.model_dump() | {"facets": {}})
    assert [r.seed_subject for r in unit_requests(bare, 3, 5, 16)] == [r.seed_subject for r in unit_requests(category, 3, 5, 16)]
    assert all(r.facets == () for r in unit_requests(bare, 3, 5, 16))


def test_the_request_carries_its_facets_to_the_llm():
    category = load_category("text_rendering")
    request = unit_requests(category, 0, 0, 1)[0]
    user = conversation(category, request.seed_subject, request.facets)[1]["content"]
    for name, value in request.facets:
        assert f"{name.replace('_', ' ')}: {value}" in user
    assert "Facets:" not in conversation(category, request.seed_subject)[1]["content"]


def test_a_facet_weight_must_be_positive():
    data = yaml.safe_load((REPO / "vipo_build" / "categories" / "aesthetics.yaml").read_text())
    for weight in (0, float("inf")):
        data["facets"]["palette"]["values"]["warm"] = weight
        with pytest.raises(ValidationError, match=r"facet values \['warm'\] need a finite weight above 0"):
            Category.model_validate(data)


def test_the_dry_run_counts_distinct_first_round_draws(tmp_path, tiny_models):
    config = tiny_config(output=str(tmp_path / "out"))
    config["categories"] = {"aesthetics": {"pairs": 20}, "text_image_alignment": {"pairs": 20000}}
    result = subprocess.run([sys.executable, "-m", "vipo_build.cli", "run", str(write_config(tmp_path / "c.yaml", config)), "--dry-run"],
                            capture_output=True, text=True, timeout=600, env={**os.environ, "COLUMNS": "200"})  # a wide table
    assert result.returncode == 0, result.stderr
    unit = config["generate"]["unit_size"]
    rows = {line.split("│")[1].strip(): [cell.strip() for cell in line.split("│")[2:-1]]
            for line in result.stdout.splitlines() if line.count("│") > 7}
    share = config["prompts"]["subjects"]["share"]  # requests the subject pass asks count as distinct
    for name, pairs in config["categories"].items():
        units = math.ceil(pairs["pairs"] * config["prompts"].get("overgen", 1.5) / unit)
        distinct = first_round_draws(load_category(name), config.get("seed", 0), units, unit, share)
        assert rows[name][-2:] == [f"{units * unit:,}", f"{distinct:,}"], rows
    repeated = units * unit - first_round_draws(load_category("text_image_alignment"), config.get("seed", 0), units, unit, share)
    assert repeated > 0 and f"(repeated requests: text_image_alignment {repeated:,})" in result.stdout
    library_only = first_round_draws(load_category("text_image_alignment"), config.get("seed", 0), units, unit)
    assert units * unit - library_only > 2 * repeated  # without the subject pass, far more requests repeat
