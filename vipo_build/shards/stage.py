"""The write-shard stage: assembles a shard's pairs from the unit caches and commits it."""

from __future__ import annotations

from dataclasses import dataclass

from vipo_build.config import PipelineConfig
from vipo_build.generate.pairs import specs_by_generator
from vipo_build.judge import panel
from vipo_build.records import Pair
from vipo_build.runtime import cache
from vipo_build.runtime.stage import Stage
from vipo_build.runtime.storage import Storage
from vipo_build.shards.writer import write_shard


@dataclass(frozen=True)
class ShardWork:
    shard: str
    members: list[tuple[str, int, str]]  # (category, unit, pair id) in shard order


class WriteShardStage(Stage):
    name = "shards"

    def __init__(self, config: PipelineConfig, storage: Storage):
        self.config, self.storage, self.resources = config, storage, config.shards.pool

    def process(self, batch: list[ShardWork]) -> list[dict]:
        """Each shard's commit record."""
        return [self.write(work) for work in batch]

    def write(self, work: ShardWork) -> dict:
        units: dict[tuple[str, int], tuple[dict, dict, dict]] = {}
        pairs = []
        for category, unit, pair_id in work.members:
            if (category, unit) not in units:
                prompts, verdicts = panel.read_unit(self.storage, self.config.judge, self.config.category(category), unit)
                generators = list(specs_by_generator(self.config, prompts))
                candidates = cache.read_candidates(self.storage, category, unit, generators)
                units[category, unit] = (
                    {p.id: p for p in prompts},
                    {v.pair_id: v for v in verdicts},
                    {(c.prompt_id, c.side): c for c in candidates},
                )
            prompts, verdicts, candidates = units[category, unit]
            verdict = verdicts[pair_id]
            pairs.append(Pair(key=pair_id, prompt=prompts[pair_id], chosen=candidates[pair_id, verdict.chosen_side],
                              rejected=candidates[pair_id, 1 - verdict.chosen_side], verdict=verdict))
        return write_shard(self.storage, work.shard, pairs)
