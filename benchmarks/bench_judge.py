"""Judge stage verdicts/s against what a user's own script would do: one bare `LLM.chat` of every request.

The baseline sends all requests (both presentation orders, alternating, k votes each) in one call;
the stage gets the same pairs as the run's pool sends them, `--units-per-call` units of `--unit`
pairs per call (the default puts them all in one call, as `judge.engines[].pool.units_per_call` can). Both use
the same loaded engine (the stage's), conversations, seeds and schema, and the prefix cache is
reset before each timed pass, so neither reuses the other's prefixes. The stage also builds the
conversations, parses the answers and aggregates votes. Prints verdicts/s of both and the ratio
(goal >= 0.95), and the engine's busy fraction in the stage: the share of the stage's wall time
spent inside `LLM.chat` (the rest is the stage's own work around the engine). On CPU with the tiny VLM:

    .venv/bin/python benchmarks/bench_judge.py [--pairs 64] [--unit 16] [--units-per-call 4]

On a GPU machine, a 7B-class VLM architecture with random weights (no download needed when the
config is local; `load_format: dummy`), 1024 px views:

    python benchmarks/bench_judge.py --model Qwen/Qwen2.5-VL-7B-Instruct --dummy --image-size 1024 --pairs 512 --unit 16 --units-per-call 8
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from engine_timing import best_seconds  # noqa: E402

from vipo_build.config import EngineConfig, JudgeEngineConfig, JudgeStageConfig  # noqa: E402
from vipo_build.generate.encode import encode_image  # noqa: E402
from vipo_build.judge.actor import ORDERS, JudgeItem, JudgeStage  # noqa: E402
from vipo_build.judge.rubric import judge_conversation, verdict_schema  # noqa: E402
from vipo_build.judge.views import media_view  # noqa: E402
from vipo_build.prompts.categories import load_category  # noqa: E402
from vipo_build.seeding import derive_seed  # noqa: E402


def items(n: int, size: int) -> list[JudgeItem]:
    rng = np.random.default_rng(0)
    media = [encode_image(rng.integers(0, 255, (size, size, 3), dtype=np.uint8), "png", 95) for _ in range(2 * n)]
    return [JudgeItem(f"aesthetics-u{i // 16:06d}-p{i % 16:03d}", f"a lighthouse at dusk, view {i}", (media[2 * i], media[2 * i + 1]))
            for i in range(n)]


def bare_chat(judge: JudgeStage, category, batch: list[JudgeItem]) -> int:
    """Every request, straight to LLM.chat in one call: no parsing, no aggregation."""
    from vllm import SamplingParams
    from vllm.sampling_params import StructuredOutputsParams

    schema = verdict_schema(category, judge.config.reason_chars)
    conversations, params = [], []
    for item in batch:
        views = tuple(media_view(m, "image", judge.config) for m in item.media)
        for order in ORDERS:
            first, second = views if order == "AB" else views[::-1]
            for sample in range(judge.config.votes):
                conversations.append(judge_conversation(category, item.prompt, first, second, "image"))
                params.append(SamplingParams(temperature=judge.config.temperature, max_tokens=judge.config.max_tokens,
                                             seed=derive_seed(judge.seed, "judge", item.pair_id, order, sample),
                                             structured_outputs=StructuredOutputsParams(json=schema)))
    return len(judge.engine.llm.chat(conversations, params, use_tqdm=False))


class EngineClock:
    """Wraps an engine's LLM.chat and adds up the seconds spent inside it."""

    def __init__(self, llm):
        self.chat, self.seconds = llm.chat, 0.0
        llm.chat = self

    def __call__(self, *args, **kwargs):
        start = time.perf_counter()
        try:
            return self.chat(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(REPO / "build" / "tiny-models" / "vlm"))
    parser.add_argument("--dummy", action="store_true", help="random weights (vLLM load_format=dummy)")
    parser.add_argument("--pairs", type=int, default=64)
    parser.add_argument("--unit", type=int, default=16, help="pairs per unit (the run's unit_size)")
    parser.add_argument("--units-per-call", type=int, default=0, help="the judge pool's units_per_call (0: all in one call)")
    parser.add_argument("--votes", type=int, default=1)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--json-out", help="also write the figures to this JSON file")
    args = parser.parse_args()

    on_cpu = "tiny-models" in args.model
    engine = EngineConfig(model=args.model, load_format="dummy" if args.dummy else "auto", max_model_len=4096 if not on_cpu else 2048,
                          enforce_eager=on_cpu, options={"kv_cache_memory_bytes": 2**28} if on_cpu else {})
    config = JudgeStageConfig(engines=[JudgeEngineConfig(name="judge", engine=engine)], votes=args.votes, threshold=0.51,
                              max_tokens=256, reason_chars=0, image_size=args.image_size)
    judge = JudgeStage(config, config.engines[0], seed=1234, storage=None)
    judge.setup()
    category = load_category("aesthetics")
    work = items(args.pairs, args.image_size)
    units = [(category, work[i : i + args.unit]) for i in range(0, len(work), args.unit)]
    per_call = args.units_per_call or len(units)
    calls = [units[i : i + per_call] for i in range(0, len(units), per_call)]
    judge.judge(units[:1])  # warm-up: compile, caches

    clock = EngineClock(judge.engine.llm)
    stage_passes = []  # (wall seconds, seconds inside LLM.chat) of each stage pass

    def stage_pass() -> None:
        start, inside = time.perf_counter(), clock.seconds
        for call in calls:
            judge.judge(call)
        stage_passes.append((time.perf_counter() - start, clock.seconds - inside))

    best = best_seconds(judge.engine.llm, {"bare": lambda: bare_chat(judge, category, work), "stage": stage_pass}, args.repeats)
    wall, inside = min(stage_passes)
    engine_busy = inside / wall
    print(f"{args.pairs} pairs x 2 orders x {args.votes} votes; stage: {per_call} units of {args.unit} pairs per call; "
          f"bare: one call; {args.model}")
    for name, seconds in best.items():
        print(f"{name:>6}: {seconds:7.2f} s  {args.pairs / seconds:7.2f} verdicts/s")
    print(f"ratio stage/bare: {best['bare'] / best['stage']:.3f}")
    print(f"engine busy fraction in the stage: {engine_busy:.3f}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({
            "model": args.model, "dummy_weights": args.dummy, "image_size": args.image_size, "pairs": args.pairs,
            "votes": args.votes, "units_per_call": per_call, "unit": args.unit,
            **{f"{name}_verdicts_per_s": round(args.pairs / seconds, 3) for name, seconds in best.items()},
            "ratio_stage_to_bare": round(best["bare"] / best["stage"], 4), "engine_busy_fraction": round(engine_busy, 4)}, indent=1))


if __name__ == "__main__":
    main()
