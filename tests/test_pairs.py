"""Pair strategies: each prompt's two candidates follow the configured mix, seeded by the prompt id."""

from __future__ import annotations

from collections import Counter

from tests.conftest import tiny_config
from vipo_build.config import PipelineConfig
from vipo_build.generate.pairs import candidate_specs, generation_text
from vipo_build.records import Prompt


def prompt(i: int, category: str = "text_rendering") -> Prompt:
    return Prompt(id=f"{category}-u{i // 16:06d}-p{i % 16:03d}", category=category, modality="image", unit=i // 16,
                  index=i % 16, round=0, seed_subject="a sign", text=f'A sign that reads "OPEN {i}"',
                  perturbed_text=f'A sign that reads "OPEM {i}"', perturbation="one letter", expansion_model="llm")


def strategy(pair) -> str:
    first, second = pair
    if second.perturbed:
        return "perturbed"
    return "cross_model" if first.generator != second.generator else "cross_seed"


def test_strategies_follow_the_configured_mix():
    config = PipelineConfig.model_validate(tiny_config())  # text_rendering: 0.4 / 0.3 / 0.3
    pairs = [candidate_specs(config, prompt(i)) for i in range(3000)]
    mix = Counter(strategy(p) for p in pairs)
    assert abs(mix["cross_model"] / 3000 - 0.4) < 0.03
    assert abs(mix["cross_seed"] / 3000 - 0.3) < 0.03
    assert abs(mix["perturbed"] / 3000 - 0.3) < 0.03
    assert [candidate_specs(config, prompt(i)) for i in range(50)] == pairs[:50]  # seeded by the prompt id


def test_a_perturbed_pair_differs_only_in_its_text():
    config = PipelineConfig.model_validate(tiny_config())
    first, second = next(p for p in (candidate_specs(config, prompt(i)) for i in range(100)) if strategy(p) == "perturbed")
    assert (first.generator, first.seed) == (second.generator, second.seed) and not first.perturbed
    p = prompt(int(first.prompt_id.rsplit("-p", 1)[1]) + 16 * int(first.prompt_id.split("-u")[1][:6]))
    assert generation_text(p, first) == p.text and generation_text(p, second) == p.perturbed_text


def test_cross_seed_pairs_use_two_seeds_and_cross_model_two_generators():
    config = PipelineConfig.model_validate(tiny_config())
    for pair in (candidate_specs(config, prompt(i, "aesthetics")) for i in range(200)):
        first, second = pair
        assert first.seed != second.seed
        assert (first.generator != second.generator) == (strategy(pair) == "cross_model")
