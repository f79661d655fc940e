"""Prompt-expansion stage answers/s against what a user's own script would do: one bare `LLM.chat` of every request.

The stage gets `--units` units of `--unit` requests as the prompts pool sends them,
`--units-per-call` per call (default: all in one call); the baseline sends the same conversations,
seeds and schema in one call. Same engine (the stage's); the prefix cache is reset before each
timed pass. Prints answers/s of both and the ratio (goal >= 0.95). On CPU with the tiny LLM:

    .venv/bin/python benchmarks/bench_expand.py [--units 16] [--unit 16] [--units-per-call 4]

On a GPU machine, a full-size architecture with random weights:

    python benchmarks/bench_expand.py --model Qwen/Qwen2.5-7B-Instruct --dummy --units 64 --units-per-call 16
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from engine_timing import best_seconds  # noqa: E402

from vipo_build.config import EngineConfig, PromptStageConfig  # noqa: E402
from vipo_build.prompts import expand  # noqa: E402
from vipo_build.prompts.categories import load_category  # noqa: E402


def bare_chat(stage: expand.ExpandStage, work: list[expand.ExpansionWork]) -> int:
    """Every request, straight to LLM.chat in one call: no JSON parsing."""
    from vllm import SamplingParams
    from vllm.sampling_params import StructuredOutputsParams

    conversations, params = [], []
    for unit in work:
        schema = expand.expansion_schema(stage.config.max_chars, unit.category.expansion.perturbation is not None)
        for r in unit.requests:
            conversations.append(expand.conversation(unit.category, r.seed_subject, r.facets))
            params.append(SamplingParams(temperature=stage.config.temperature, max_tokens=stage.config.max_tokens, seed=r.seed,
                                         structured_outputs=StructuredOutputsParams(json=schema)))
    return len(stage.engine.llm.chat(conversations, params, use_tqdm=False))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(REPO / "build" / "tiny-models" / "llm"))
    parser.add_argument("--dummy", action="store_true", help="random weights (vLLM load_format=dummy)")
    parser.add_argument("--units", type=int, default=16)
    parser.add_argument("--unit", type=int, default=16, help="requests per unit (the run's unit_size)")
    parser.add_argument("--units-per-call", type=int, default=0, help="the prompts pool's units_per_call (0: all in one call)")
    parser.add_argument("--category", default="aesthetics")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    on_cpu = "tiny-models" in args.model
    engine = EngineConfig(model=args.model, load_format="dummy" if args.dummy else "auto", max_model_len=1024 if on_cpu else 4096,
                          enforce_eager=on_cpu, options={"kv_cache_memory_bytes": 2**28} if on_cpu else {})
    config = PromptStageConfig(engine=engine, max_tokens=320 if on_cpu else 400, max_chars=120 if on_cpu else 600)
    stage = expand.ExpandStage(config, seed=1234)
    stage.setup()
    category = load_category(args.category)
    work = [expand.ExpansionWork(category, expand.unit_requests(category, 1234, unit, args.unit)) for unit in range(args.units)]
    per_call = args.units_per_call or len(work)
    calls = [work[i : i + per_call] for i in range(0, len(work), per_call)]
    stage.process(work[:1])  # warm-up: compile, caches

    best = best_seconds(stage.engine.llm, {"bare": lambda: bare_chat(stage, work),
                                          "stage": lambda: [stage.process(call) for call in calls]}, args.repeats)
    answers = args.units * args.unit
    print(f"{answers} requests ({args.category}); stage: {per_call} units of {args.unit} per call; bare: one call; {args.model}")
    for name, seconds in best.items():
        print(f"{name:>6}: {seconds:7.2f} s  {answers / seconds:7.2f} answers/s")
    print(f"ratio stage/bare: {best['bare'] / best['stage']:.3f}")


if __name__ == "__main__":
    main()
