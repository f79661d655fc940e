"""SIMULATION ONLY: timed stand-ins for the prompt LLM, the generators and the judge, for
bench_cluster_sim.py. Never part of the product, never used by a test of a library.

Each simulated stage sleeps what its model would take on an H100 (seconds per item from the
caller, e.g. `vipo-build plan`'s cost table; compressed by `scale` real seconds per simulated second) and returns small real data: seeded prompt texts that
pass the real filters, 8x8 JPEG candidates written to the real cache, verdicts aggregated by the
real judge code from seeded votes. Everything around them is the product: driver, scheduler,
filters, storage, shard writer.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from vipo_build.config import GeneratorConfig, ImageOutputConfig, JudgeEngineConfig, JudgeStageConfig, PromptStageConfig
from vipo_build.generate.actor import GenerationWork, encode_candidate
from vipo_build.judge.actor import ORDERS, JudgeWork
from vipo_build.judge.aggregate import aggregate, to_vote
from vipo_build.prompts.expand import ExpansionWork
from vipo_build.records import CandidateSpec, Verdict
from vipo_build.runtime import cache
from vipo_build.runtime.stage import Stage
from vipo_build.runtime.storage import Storage
from vipo_build.seeding import derive_seed

if TYPE_CHECKING:
    from vipo_build.config import PipelineConfig
    from vipo_build.run import Stages


@dataclass(frozen=True)
class EngineCost:
    """A vLLM engine: a call of n requests takes latency + n x seconds_per_request simulated seconds,
    so a starved engine (small calls) serves far fewer requests per second than a full one."""

    latency_s: float
    seconds_per_request: float

    def seconds(self, requests: int) -> float:
        return self.latency_s + requests * self.seconds_per_request if requests else 0.0


# Simulated seconds an engine call takes before its first answer (prefill of a full batch).
ENGINE_LATENCY_S = {"prompts": 15.0, "judge": 12.0}
KEEP_SIDE_P = 0.85  # chance a simulated vote picks the pair's seeded better side

WORDS = [f"{a}{b}" for a in ("red", "blue", "old", "tall", "soft", "bright", "quiet", "wild", "tiny", "vast")
         for b in ("fox", "lake", "tower", "garden", "street", "violin", "harbor", "forest", "market", "bridge",
                   "lantern", "meadow", "castle", "river", "canyon", "orchard", "glacier", "studio", "temple", "desert")]


def sleep(scale: float, seconds: float) -> None:
    time.sleep(scale * seconds)


class SimulatedExpand(Stage):
    name = "prompts"

    def __init__(self, config: PromptStageConfig, seed: int, scale: float, engine: EngineCost):
        self.config, self.seed, self.scale, self.engine, self.resources = config, seed, scale, engine, config.pool

    def process(self, batch: list[ExpansionWork]) -> list[list[dict]]:
        sleep(self.scale, self.engine.seconds(sum(len(w.requests) for w in batch)))
        out = []
        for work in batch:
            answers = []
            for r in work.requests:
                rng = random.Random(r.seed)
                text = r.seed_subject
                while len(text) < 0.6 * self.config.max_chars:  # long enough for the lint, short enough for max_chars
                    text += " " + rng.choice(WORDS)
                answer = {"prompt": text, "constraints": [rng.choice(WORDS)], "subject": r.seed_subject}
                if work.category.expansion.perturbation:
                    answer |= {"perturbed": text + " " + rng.choice(WORDS), "perturbation": "one more word"}
                answers.append(answer)
            out.append(answers)
        return out


class SimulatedGenerate(Stage):
    def __init__(self, generator: GeneratorConfig, image: ImageOutputConfig, storage: Storage, scale: float,
                 seconds: float):
        self.config, self.image, self.storage, self.scale, self.seconds = generator, image, storage, scale, seconds
        self.name, self.resources = f"generate:{generator.name}", generator.pool

    def setup(self) -> None:
        """Stands in for loading the model: warms what the first batch would otherwise load (image
        encoders, the Parquet writer), which dozens of actors sharing a few cores take seconds to do."""
        import io

        import pyarrow as pa
        import pyarrow.parquet as pq

        spec = CandidateSpec(prompt_id="warm-up", side=0, generator=self.config.name, seed=0, width=8, height=8)
        candidate = encode_candidate(spec, np.zeros((8, 8, 3), dtype=np.uint8), self.image, min_motion=0.0)
        pq.write_table(pa.Table.from_pylist([candidate.model_dump()]), io.BytesIO())

    def process(self, batch: list[GenerationWork]) -> list[int]:
        out = []
        for work in batch:
            sleep(self.scale, self.seconds * len(work.specs))
            # small real media, at the asked size in the spec so no size defect is found
            candidates = []
            for spec in work.specs:
                shade = spec.seed % 256
                candidates.append(encode_candidate(spec.model_copy(update={"width": 8, "height": 8}),
                                                   np.full((8, 8, 3), shade, dtype=np.uint8), self.image, min_motion=0.0))
            cache.write_candidates(self.storage, work.category, work.unit, self.config.name, candidates)
            out.append(len(candidates))
        return out


class SimulatedJudge(Stage):
    def __init__(self, config: JudgeStageConfig, judge: JudgeEngineConfig, seed: int, storage: Storage, scale: float,
                 engine: EngineCost):
        self.config, self.judge, self.seed, self.storage, self.scale, self.engine = config, judge, seed, storage, scale, engine
        self.name, self.resources = f"judge:{judge.name}", judge.pool

    def process(self, batch: list[JudgeWork]) -> list[list[Verdict]]:
        for work in batch:  # read what the real judge reads
            cache.read_candidates(self.storage, work.category.name, work.unit, work.generators)
        requests = sum(len(w.prompts) for w in batch) * 2 * self.config.votes
        sleep(self.scale, self.engine.seconds(requests))
        out = []
        for work in batch:
            dims = work.category.rubric.dimension_names
            verdicts = []
            for prompt in work.prompts:
                better = random.Random(derive_seed(self.seed, "better", prompt.id)).randrange(2)
                votes = []
                for order in ORDERS:
                    for sample in range(self.config.votes):
                        seed = derive_seed(self.seed, "judge", self.judge.name, prompt.id, order, sample)  # simulated judges differ
                        side = better if random.Random(seed).random() < KEEP_SIDE_P else 1 - better
                        shown_first = side == (0 if order == "AB" else 1)
                        answer = {"winner": "A" if shown_first else "B",
                                  "scores_a": {d: 4 if shown_first else 2 for d in dims},
                                  "scores_b": {d: 2 if shown_first else 4 for d in dims}}
                        votes.append(to_vote(answer, order, sample, seed, dims, self.judge.name, "image"))
                verdicts.append(aggregate(prompt.id, votes, self.config.threshold, work.category.rubric.critical))
            cache.write_judged(self.storage, work.category.name, work.unit, self.judge.name, work.prompts, verdicts)
            out.append(verdicts)
        return out


def simulated_stages(config: PipelineConfig, storage: Storage, scale: float, seconds: dict[str, float]) -> Stages:
    """The product's filter and shard writer with simulated engines and generators; `seconds`: pool ->
    simulated seconds per item on one actor (prompt, candidate, judge request)."""
    from vipo_build.prompts.accept import FilterStage
    from vipo_build.run import Stages
    from vipo_build.shards.stage import WriteShardStage

    return Stages(
        prompts=SimulatedExpand(config.prompts, config.seed, scale, EngineCost(ENGINE_LATENCY_S["prompts"], seconds["prompts"])),
        filter=FilterStage(config.prompts, list(config.categories)),
        generators={g.name: SimulatedGenerate(g, config.generate.image, storage, scale, seconds[f"generate:{g.name}"])
                    for g in config.generate.generators},
        judges={e.name: SimulatedJudge(config.judge, e, config.seed, storage, scale,
                                       EngineCost(ENGINE_LATENCY_S["judge"], seconds[f"judge:{e.name}"]))
                for _, e in config.judges_at_work()},
        shards=WriteShardStage(config, storage),
    )
