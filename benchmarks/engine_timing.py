"""The timing both engine benchmarks use: the best of a few passes each, prefix cache reset before each."""

from __future__ import annotations

import time
from collections.abc import Callable


def best_seconds(llm, runs: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Fastest wall seconds of each run over `repeats` passes; vLLM's prefix cache is emptied before
    every timed run, so none reuses another's prefixes."""
    best = {name: float("inf") for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            llm.reset_prefix_cache()
            start = time.perf_counter()
            run()
            best[name] = min(best[name], time.perf_counter() - start)
    return best
