"""Pair strategies: which two candidates each prompt gets. Every choice is seeded by the prompt id."""

from __future__ import annotations

import random

from vipo_build.config import PipelineConfig
from vipo_build.records import CandidateSpec, Prompt
from vipo_build.seeding import derive_seed


def candidate_specs(config: PipelineConfig, prompt: Prompt) -> tuple[CandidateSpec, CandidateSpec]:
    """The two candidates of a prompt's pair.

    cross_model: two different generators, one seed each; cross_seed: one generator, two seeds;
    perturbed: one generator and seed, side 1 drawn from the prompt's perturbed text (a known loser).
    """
    rng = random.Random(derive_seed(config.seed, "pair", prompt.id))
    strategies = config.strategies_for(prompt.category)
    strategy = rng.choices(sorted(strategies), weights=[strategies[s] for s in sorted(strategies)])[0]
    generators = [g.name for g in config.generators_for(prompt.modality)]
    if strategy == "cross_model":
        names = rng.sample(generators, 2)
    else:
        names = [rng.choice(generators)] * 2
    if prompt.modality == "image":
        out = config.generate.image
        size = {"width": out.width, "height": out.height, "frames": 1, "fps": None}
    else:
        out = config.generate.video
        size = {"width": out.width, "height": out.height, "frames": out.frames, "fps": out.fps}
    perturbed = strategy == "perturbed"
    return tuple(
        CandidateSpec(prompt_id=prompt.id, side=side, generator=name, perturbed=perturbed and side == 1,
                      seed=derive_seed(config.seed, "candidate", prompt.id, 0 if perturbed else side), **size)
        for side, name in enumerate(names)
    )


def generation_text(prompt: Prompt, spec: CandidateSpec) -> str:
    """The text a candidate is generated from."""
    return prompt.perturbed_text if spec.perturbed else prompt.text


def specs_by_generator(config: PipelineConfig, prompts: list[Prompt]) -> dict[str, list[CandidateSpec]]:
    """A unit's candidate specs per generator (in config order), in prompt and side order."""
    found: dict[str, list[CandidateSpec]] = {}
    for prompt in prompts:
        for spec in candidate_specs(config, prompt):
            found.setdefault(spec.generator, []).append(spec)
    order = [g.name for g in config.generate.generators]
    return {name: found[name] for name in order if name in found}
