"""CPU work between the GPU stages, run as Ray tasks so no GPU actor waits on it."""

from __future__ import annotations

import numpy as np

from vipo_build.config import PipelineConfig
from vipo_build.generate.encode import encode_image, encode_video
from vipo_build.judge.actor import JudgeItem
from vipo_build.judge.views import judge_view
from vipo_build.records import Candidate, CandidateSpec, Pair, Prompt
from vipo_build.runtime import cache, failpoints
from vipo_build.runtime.storage import Storage
from vipo_build.shards.writer import write_shard


def encode_candidates(config: PipelineConfig, specs: list[CandidateSpec], pixels: list[np.ndarray]) -> list[Candidate]:
    out = []
    for spec, array in zip(specs, pixels):
        if spec.frames == 1:
            fmt = config.generate.image.format
            media = encode_image(array, fmt, config.generate.image.quality)
        else:
            fmt, media = "mp4", encode_video(array, spec.fps)
        out.append(Candidate(**spec.model_dump(), format=fmt, media=media, defect=size_defect(spec, array)))
    return out


def size_defect(spec: CandidateSpec, pixels: np.ndarray) -> str | None:
    """below_resolution or too_few_frames when the generator returned less than was asked for."""
    frames, height, width = (1, *pixels.shape[:2]) if spec.frames == 1 else pixels.shape[:3]
    if height < spec.height or width < spec.width:
        return "below_resolution"
    if frames < spec.frames:
        return "too_few_frames"
    return None


def judge_items(config: PipelineConfig, prompts: list[Prompt], candidates: list[Candidate]) -> list[JudgeItem]:
    by_side = {(c.prompt_id, c.side): c for c in candidates}
    size, frames = config.judge.image_size, config.judge.video_frames
    return [
        JudgeItem(p.id, p.text, (judge_view(by_side[p.id, 0], size, frames), judge_view(by_side[p.id, 1], size, frames)),
                  by_side[p.id, 0].defect or by_side[p.id, 1].defect)
        for p in prompts
    ]


def store_candidates(
    config: PipelineConfig, storage: Storage, category: str, unit: int, prompts: list[Prompt], *batches: list[Candidate]
) -> list[JudgeItem]:
    """Cache a unit's candidates (in prompt, side order) and make the judge's views of them."""
    order = {p.id: i for i, p in enumerate(prompts)}
    candidates = sorted((c for batch in batches for c in batch), key=lambda c: (order[c.prompt_id], c.side))
    cache.write_candidates(storage, category, unit, candidates)
    failpoints.reached("candidates.written", f"{category}/u{unit}")
    return judge_items(config, prompts, candidates)


def load_judge_items(config: PipelineConfig, storage: Storage, category: str, unit: int, prompts: list[Prompt]) -> list[JudgeItem]:
    """A resumed unit whose candidates were cached but not yet judged."""
    return judge_items(config, prompts, cache.read_candidates(storage, category, unit))


def write_shard_from_cache(storage: Storage, shard: str, members: list[tuple[str, int, str]]) -> dict:
    """Assemble a shard's pairs, given as (category, unit, pair id) in shard order, from the unit caches."""
    units: dict[tuple[str, int], tuple[dict, dict, dict]] = {}
    pairs = []
    for category, unit, pair_id in members:
        if (category, unit) not in units:
            prompts, verdicts = cache.read_judged(storage, category, unit)
            candidates = cache.read_candidates(storage, category, unit)
            units[category, unit] = (
                {p.id: p for p in prompts},
                {v.pair_id: v for v in verdicts},
                {(c.prompt_id, c.side): c for c in candidates},
            )
        prompts, verdicts, candidates = units[category, unit]
        verdict = verdicts[pair_id]
        pairs.append(
            Pair(
                key=pair_id,
                prompt=prompts[pair_id],
                chosen=candidates[pair_id, verdict.chosen_side],
                rejected=candidates[pair_id, 1 - verdict.chosen_side],
                verdict=verdict,
            )
        )
    return write_shard(storage, shard, pairs)
