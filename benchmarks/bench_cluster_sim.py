"""The real driver on a SIMULATED 64-GPU cluster: does it keep the GPUs busy at scale?

Local Ray with 64 logical GPUs runs the stages, generators and judge protocol of
pipelines/image_1m.yaml, its pools balanced on the simulated GPUs by `vipo-build plan` and its quota
scaled down (20,000 pairs by default). The prompt LLM, generators and judge are timed stand-ins
(benchmarks/sim_stages.py) whose service times come from the plan's H100 cost table, compressed by
--scale real seconds per simulated second; the driver, scheduler, filters, storage and shard writer are the product's.

Printed (targets in brackets, never asserted): busy fraction per pool [bottleneck >= 0.95],
makespan / ideal [<= 1.1] where ideal is the largest (work / capacity) over the pools, time to the
first committed shard [< 10 % of the makespan], driver peak RSS, object-store peak and events
handled per second.

    python benchmarks/bench_cluster_sim.py [--pairs 20000] [--gpus 64] [--scale 0.005]
"""

from __future__ import annotations

import argparse
import re
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path

import ray
from ray import cloudpickle
from rich.console import Console

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import sim_stages  # noqa: E402
from vipo_build.config import PipelineConfig, load_config  # noqa: E402
from vipo_build.cost_plan import applied, make_plan  # noqa: E402
from vipo_build.run import Run  # noqa: E402
from vipo_build.runtime.storage import Storage  # noqa: E402
from vipo_build.shards.plan import ShardPlan  # noqa: E402

cloudpickle.register_pickle_by_value(sim_stages)  # Ray's workers cannot import the benchmarks folder

GPU_MEMORY_GB = 80


def scaled_config(path: str, pairs: int, gpus: int, out: str) -> tuple[PipelineConfig, dict[str, float]]:
    """The config at `pairs` pairs with the pools `vipo-build plan` balances on `gpus`, and each pool's
    simulated seconds per item on one actor (from the plan's cost table)."""
    config, _ = load_config(path)
    raw = config.model_dump(mode="json")
    raw |= {"total_pairs": pairs, "output": out}
    raw["shards"]["pairs_per_shard"] = max(100, pairs // 40)
    config = PipelineConfig.model_validate(raw)
    plan = make_plan(config, gpus, GPU_MEMORY_GB)
    return applied(config, plan.stages), {s.pool: s.gpu_seconds_per_item / s.gpus_per_actor for s in plan.stages}


class ObjectStorePeak(threading.Thread):
    """Samples the object store's use once a second."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak_mib, self.stop = 0.0, threading.Event()

    def run(self) -> None:
        from ray._private.internal_api import memory_summary

        while not self.stop.wait(1.0):
            try:
                text = memory_summary(stats_only=True)
            except Exception:
                continue
            found = re.search(r"Plasma memory usage (\d+) MiB", text)
            if found:
                self.peak_mib = max(self.peak_mib, float(found.group(1)))


def warm_up(run: Run) -> None:
    """Start every pool's actors before the clock starts: 60 worker processes take minutes to start
    on a small machine, which a real cluster spends loading models in parallel."""
    for pool in run.scheduler.pools.values():
        while pool.stage.resources is not None and len(pool.actors) < pool.stage.resources.actors:
            pool.new_actor()
    actors = [a for pool in run.scheduler.pools.values() for a in pool.actors]
    ray.get([a.__ray_ready__.remote() for a in actors])
    now = time.perf_counter()
    for pool in run.scheduler.pools.values():
        pool.started = {a: now for a in pool.actors}
        pool.opened = now if pool.actors else None


class TimedRun(Run):
    """The product's Run, noting when each shard commits."""

    def shard_written(self, task, record) -> None:
        self.commit_times = getattr(self, "commit_times", []) + [time.perf_counter()]
        super().shard_written(task, record)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="pipelines/image_1m.yaml")
    parser.add_argument("--pairs", type=int, default=20000)
    parser.add_argument("--gpus", type=int, default=64)
    # 5 ms per simulated second: on a small machine the real CPU work of dozens of actors (encoding,
    # cache reads) stays a small share of the simulated service times
    parser.add_argument("--scale", type=float, default=0.005, help="real seconds per simulated second")
    args = parser.parse_args()

    work_dir = tempfile.mkdtemp(prefix="vipo-sim-")
    config, seconds = scaled_config(args.config, args.pairs, args.gpus, f"{work_dir}/out")
    storage = Storage(config.output)
    plan = ShardPlan.of(config)
    cpus = sum(p.actors * p.num_cpus for p in [config.shards.pool, *config.model_pools().values()])
    ray.init(address="local", num_cpus=int(cpus) + 1, num_gpus=args.gpus, include_dashboard=False, log_to_driver=False,
             object_store_memory=2 * 2**30)
    pools = config.model_pools()
    print(f"simulated cluster: {args.gpus} GPUs; pools (actors x GPUs): "
          f"{', '.join(f'{n} {p.actors} x {p.num_gpus:g}' for n, p in pools.items())}")
    print(f"{plan.total_pairs:,} pairs in {plan.num_shards} shards; 1 simulated s = {args.scale * 1000:g} ms")
    stages = sim_stages.simulated_stages(config, storage, args.scale, seconds)
    run = TimedRun(config, plan, storage, {}, Console(quiet=True), stages=stages)
    warm_up(run)
    sampler = ObjectStorePeak()
    sampler.start()
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    cpu_before = time.process_time()
    started = time.perf_counter()
    result = run.execute()
    makespan = time.perf_counter() - started
    sampler.stop.set()

    stats = result["stages"]
    # ideal: the pool with the most work per actor, run back to back (simulated busy seconds)
    per_actor = {name: stats[name]["busy_seconds"] / pool.actors for name, pool in pools.items() if name in stats}
    bottleneck = max(per_actor, key=per_actor.get)
    ideal = per_actor[bottleneck]
    first = (run.commit_times[0] - started) if getattr(run, "commit_times", None) else float("nan")
    print(f"\n{'pool':<22}{'actors':>7}{'items':>8}{'busy':>7}")
    for name, s in stats.items():
        actors = pools[name].actors if name in pools else config.shards.pool.actors
        print(f"{name:<22}{actors:>7}{s['items']:>8}{s['busy_fraction']:>7.2f}")
    print(f"\nbottleneck pool          {bottleneck}: busy {stats[bottleneck]['busy_fraction']:.2f} [>= 0.95]")
    print(f"makespan / ideal         {makespan:.1f} s / {ideal:.1f} s = {makespan / ideal:.2f} [<= 1.1]")
    print(f"first committed shard    {first:.1f} s = {first / makespan:.1%} of the makespan [< 10 %]")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"driver peak RSS          {rss:.0f} MiB ({rss - rss_before:+.0f} MiB during the run)")
    print(f"driver CPU               {time.process_time() - cpu_before:.1f} s "
          f"({(time.process_time() - cpu_before) / makespan:.0%} of the makespan)")
    print(f"object-store peak        {sampler.peak_mib:.0f} MiB (sampled each second)")
    print(f"events handled           {run.scheduler.events} = {run.scheduler.events / makespan:.0f} per s")
    print(f"kept pairs               {sum(c['kept'] for c in result['categories'].values()):,} "
          f"of {sum(c['prompts_requested'] for c in result['categories'].values()):,} prompts; "
          f"{result['shards']['committed']} shards")
    ray.shutdown()


if __name__ == "__main__":
    main()
