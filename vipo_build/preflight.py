"""Preflight: before any model loads, check that every pool of a config can run at once on the cluster.

Every pool stays up for the whole run, so the cluster must hold all of them together: the sum of
GPUs and CPUs the pools ask for, each engine's tensor-parallel span within its actor's GPUs, and
each generator's weights (per the registry) within its actor's GPU memory. A config that fails is
refused in one line naming the pools and the shortfall, instead of actors that never get scheduled.
"""

from __future__ import annotations

from dataclasses import dataclass

from vipo_build.config import PipelineConfig, PoolConfig, RayConfig
from vipo_build.errors import VipoError


@dataclass(frozen=True)
class PoolAsk:
    name: str  # the config path of the pool's stage, as errors name it
    pool: PoolConfig
    tensor_parallel: int | None = None  # GPUs a vLLM engine spans; None: no engine
    weights_gb: float | None = None  # what one actor's GPUs must hold (None: unknown, or offloaded)

    @property
    def gpus(self) -> float:
        return self.pool.actors * self.pool.num_gpus

    @property
    def cpus(self) -> float:
        return self.pool.actors * self.pool.num_cpus


@dataclass(frozen=True)
class Cluster:
    gpus: float
    cpus: float
    gpu_memory_gb: float | None = None


def pool_asks(config: PipelineConfig) -> list[PoolAsk]:
    """What each pool of a config asks for, in pipeline order."""
    from vipo_build.generate.registry import resolve_family  # the registry imports the config module

    asks = [PoolAsk("prompts", config.prompts.pool, config.prompts.engine.tensor_parallel_size)]
    for i, generator in enumerate(config.generate.generators):
        family = resolve_family(generator.model, generator.family)
        weights = None if generator.cpu_offload or family is None else family.weights_gb
        asks.append(PoolAsk(f"generate.generators[{i}] ({generator.name})", generator.pool, weights_gb=weights))
    for i, judge in config.judges_at_work():
        asks.append(PoolAsk(f"judge.engines[{i}] ({judge.name})", judge.pool, judge.engine.tensor_parallel_size))
    asks.append(PoolAsk("shards", config.shards.pool))
    return asks


def problems(config: PipelineConfig, cluster: Cluster) -> list[str]:
    """Why the config's pools cannot all run at once on this cluster; [] when they can."""
    asks = pool_asks(config)
    found = []
    for ask in asks:
        if ask.tensor_parallel and ask.pool.num_gpus and ask.tensor_parallel > ask.pool.num_gpus:
            found.append(f"{ask.name}: engine.tensor_parallel_size {ask.tensor_parallel} spans more GPUs than "
                         f"pool.num_gpus {ask.pool.num_gpus:g}")
        if ask.weights_gb and ask.pool.num_gpus and cluster.gpu_memory_gb:
            memory = ask.pool.num_gpus * cluster.gpu_memory_gb
            if ask.weights_gb > memory:
                found.append(f"{ask.name}: about {ask.weights_gb:g} GB of weights, more than {ask.pool.num_gpus:g} x "
                             f"{cluster.gpu_memory_gb:g} GB of GPU memory per actor (set cpu_offload, or use GPUs with more memory)")
    for kind, have in (("GPUs", cluster.gpus), ("CPUs", cluster.cpus)):
        asked = [(a.name, a.gpus if kind == "GPUs" else a.cpus) for a in asks]
        total = sum(n for _, n in asked)
        if total > have + 1e-9:
            by_pool = ", ".join(f"{name} {n:g}" for name, n in asked if n)
            found.append(f"the pools ask for {total:g} {kind} at once ({by_pool}) but the cluster has {have:g}: "
                         f"{total - have:g} short")
    return found


def check(config: PipelineConfig, cluster: Cluster) -> None:
    found = problems(config, cluster)
    if found:
        raise VipoError(f"this config cannot run on this cluster: {'; '.join(found)}")


def check_root(storage_url: str, is_local: bool) -> None:
    """A local root on a multi-node cluster would scatter the cache over the nodes' own disks."""
    import ray

    nodes = [n for n in ray.nodes() if n.get("Alive")]
    if is_local and len(nodes) > 1:
        raise VipoError(f"{storage_url}: a local output root on a {len(nodes)}-node cluster: each node's actors would "
                        "write to their own disk; use a URL every node reaches (s3://, gs://, ...)")


def cluster_now(ray_config: RayConfig) -> Cluster:
    """The cluster the driver is connected to (after ray.init)."""
    import ray

    resources = ray.cluster_resources()
    return Cluster(resources.get("GPU", 0.0), resources.get("CPU", 0.0), ray_config.gpu_memory_gb or _local_gpu_memory_gb())


def _local_gpu_memory_gb() -> float | None:
    try:
        import torch

        if torch.cuda.is_available():
            return torch.cuda.get_device_properties(0).total_memory / 1e9
    except Exception:  # no usable CUDA here: the memory check is skipped
        pass
    return None
