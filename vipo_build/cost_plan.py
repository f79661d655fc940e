"""`vipo-build plan`: what a config will cost before it runs, and pool sizes that balance it on N GPUs.

Work per stage follows from the config: quota x overgen prompts per category (the upper bound: a
category closes as soon as its judged units fill the quota); two candidates per prompt, spread
evenly over the generators of its modality (every pair strategy draws them uniformly); 2 orders x
votes judge requests per pair; one shard per pairs_per_shard. Seconds per item come from a
config override, else from what an earlier or pilot run measured (`--from-root`), else from the
registry's cost table, scaled by pixels, frames and steps. Pools get the whole actors that give the
shortest wall clock on the GPUs at hand.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field

from vipo_build.config import JudgeEngineConfig, PipelineConfig
from vipo_build.errors import VipoError
from vipo_build.judge.budget import candidate_tokens
from vipo_build.preflight import Cluster, problems
from vipo_build.runtime.cache import PART_UNITS

TARGET_BUSY = 0.9  # a pool modelled less busy than this is named, with the reason
OFFLOAD_FACTOR = 1.15  # estimate: model CPU offload moves every component to the GPU once per call
# Estimates of what a generator's switches leave of a candidate's time, until benchmarks/gpu_check.sh
# measures them: torch.compile of the denoiser; diffusers' first-block cache (skips most of the
# denoiser on about 40 % of the steps at thresholds near 0.1-0.2, by diffusers' reports).
COMPILE_FACTOR = 0.85
FIRST_BLOCK_CACHE_FACTOR = 0.6
FP8_WEIGHTS_FACTOR = 1.05  # float8 storage casts each layer's weights up as it runs
# GPU shares an actor of a small model may take. Powers of two pack whole GPUs, and the actors on one
# GPU take equal shares, so the time-slicing between them matches the share each is modelled with.
ACTOR_SHARES = (1.0, 0.5, 0.25)
WEIGHTS_SHARE = 0.75  # weights may fill this much of an actor's share of GPU memory; the rest is activations
SHORTER_BY = 0.001  # a pool keeps an actor only when dropping it would lengthen the run by more than this
# Bytes of an encoded candidate per pixel (per pixel and frame for video): typical photographic
# content at the default quality settings.
BYTES_PER_PIXEL = {"jpg": 0.35, "webp": 0.25, "png": 1.6, "mp4": 0.02}


@dataclass
class StagePlan:
    pool: str  # as the run's summary names it
    item: str  # what one item is
    items: float
    gpu_seconds_per_item: float
    source: str
    gpus_per_actor: float
    smallest_share: float = 0.0  # the least GPU share one actor fits in (its weights); 0: its pool's size only
    actors: int = 0
    busy: float = 0.0  # modelled busy fraction at the balanced size

    @property
    def gpu_hours(self) -> float:
        return self.items * self.gpu_seconds_per_item / 3600

    @property
    def hours(self) -> float:
        """Wall-clock hours at its size, busy all the time."""
        return self.gpu_hours / (self.actors * self.gpus_per_actor) if self.actors else math.inf

    @property
    def idle_gpu_hours(self) -> float:
        return self.actors * self.gpus_per_actor * self.hours / self.busy - self.gpu_hours if self.busy else 0.0

    def actors_within(self, hours: float, share: float | None = None) -> int:
        """Whole actors of `share` GPUs (default: its own) that do its work within `hours`."""
        share = share or self.gpus_per_actor
        return max(1, math.ceil(self.gpu_hours / (hours * share) - 1e-9))


@dataclass
class Plan:
    gpus: int
    gpu_memory_gb: float | None
    stages: list[StagePlan]
    spare_gpus: float  # left over: one more actor of any pool would not shorten the run
    prompts: int
    pairs: int
    shards: int
    cache_bytes: float
    shard_bytes: float
    put_requests: int
    get_requests: int
    problems: list[str] = field(default_factory=list)  # why the balanced layout cannot run as asked

    @property
    def gpu_hours(self) -> float:
        return sum(s.gpu_hours for s in self.stages)

    @property
    def hours(self) -> float:
        return max(s.hours for s in self.stages)

    def as_json(self) -> dict:
        return {"gpus": self.gpus, "spare_gpus": self.spare_gpus, "gpu_memory_gb": self.gpu_memory_gb, "prompts": self.prompts, "pairs": self.pairs,
                "shards": self.shards, "gpu_hours": round(self.gpu_hours, 1), "wall_hours": round(self.hours, 1),
                "cache_bytes": int(self.cache_bytes), "shard_bytes": int(self.shard_bytes),
                "put_requests": self.put_requests, "get_requests": self.get_requests, "problems": self.problems,
                "stages": [asdict(s) | {"gpu_hours": round(s.gpu_hours, 1), "hours": round(s.hours, 1)} for s in self.stages]}


def prompts_per_category(config: PipelineConfig) -> dict[str, int]:
    """Prompts each category is asked for at most: quota x overgen."""
    return {c: math.ceil(q * config.prompts.overgen) for c, q in config.quotas().items()}


def stage_work(config: PipelineConfig, gpu_memory_gb: float | None, measured: dict[str, float]) -> list[StagePlan]:
    """Each GPU stage's work and GPU-seconds per item. `measured`: pool -> GPU-seconds per item."""
    from vipo_build.generate.registry import resolve_family

    asked = prompts_per_category(config)
    prompts = sum(asked.values())
    stages = []
    engine = config.prompts.engine
    requests = prompts
    if config.prompts.subjects:  # a subject answer costs about its share of an expansion answer's tokens
        written = config.prompts.subjects
        requests += prompts * written.share * written.max_tokens / config.prompts.max_tokens
    stages.append(_engine_stage("prompts", "prompt", requests, engine, 0, config.prompts.pool.num_gpus, measured))
    for g in config.generate.generators:
        family = resolve_family(g.model, g.family)
        output = config.output_for(g.modality)
        modality_prompts = sum(n for c, n in asked.items() if config.category(c).modality == g.modality)
        candidates = 2 * modality_prompts / len(config.generators_for(g.modality))
        share = max(g.pool.num_gpus, 1.0)
        name = f"generate:{g.name}"
        if g.gpu_seconds_per_candidate:
            seconds, source = g.gpu_seconds_per_candidate, "config"
        elif name in measured:
            seconds, source = measured[name], "measured"
        elif family is not None and family.cost is not None:
            cost = family.cost
            factors = [(g.cpu_offload, OFFLOAD_FACTOR, "offload"), (g.compile, COMPILE_FACTOR, "compile"),
                       (g.first_block_cache, FIRST_BLOCK_CACHE_FACTOR, "first-block cache"),
                       (g.fp8_weights, FP8_WEIGHTS_FACTOR, "float8 weights")]
            seconds = (cost.seconds(g.steps, output.width, output.height, getattr(output, "frames", 1))
                       * math.prod(f for on, f, _ in factors if on))
            source = f"registry {family.name}: {cost.source}" + "".join(
                f"; x {f:g} for {what}" for on, f, what in factors if on)
        else:
            raise VipoError(f"generate.generators: {g.name}: no cost figure for {g.model}; set gpu_seconds_per_candidate")
        stages.append(StagePlan(name, "candidate", candidates, seconds, source, share,
                                _smallest_share(g, family, gpu_memory_gb, share)))
    votes = 2 * config.judge.votes
    for _, judge in config.judges_at_work():  # a judge judges every pair of its modalities, with its own view
        judged = {c: n for c, n in asked.items() if config.category(c).modality in judge.modalities}
        pairs = sum(judged.values())
        tokens = sum(request_tokens(config, judge, config.category(c).modality) * n for c, n in judged.items())
        stages.append(_engine_stage(f"judge:{judge.name}", "judge request", pairs * votes, judge.engine,
                                    tokens / pairs if pairs else 0, judge.pool.num_gpus, measured))
    return stages


def _engine_stage(pool: str, item: str, items: float, engine, visual_tokens: float, num_gpus: float,
                  measured: dict[str, float]) -> StagePlan:
    from vipo_build.generate.registry import engine_costs

    gpus = max(num_gpus, engine.tensor_parallel_size)
    if engine.gpu_seconds_per_request:
        return StagePlan(pool, item, items, engine.gpu_seconds_per_request, "config", gpus)
    if pool in measured:
        return StagePlan(pool, item, items, measured[pool], "measured", gpus)
    cost = engine_costs().get(engine.model)
    if cost is None:
        raise VipoError(f"{pool}.engine: no cost figure for {engine.model}; set gpu_seconds_per_request")
    scale = visual_tokens / cost.visual_tokens if cost.visual_tokens and visual_tokens else 1.0
    return StagePlan(pool, item, items, cost.gpu_seconds_per_request * scale,
                     f"registry {engine.model} ({cost.note}): {cost.source}", gpus)


def request_tokens(config: PipelineConfig, judge: JudgeEngineConfig, modality: str) -> int:
    """Visual tokens of one judge request of a modality: both candidates, as this judge sees them."""
    output = config.output_for(modality)
    frames, fps = getattr(output, "frames", 1), getattr(output, "fps", None)
    return 2 * candidate_tokens(judge, config.judge, output.width, output.height, frames, fps)


def _smallest_share(g, family, gpu_memory_gb: float | None, share: float) -> float:
    """The least GPU share of ACTOR_SHARES one actor's weights fit in, on a GPU of known memory."""
    if family is None or not gpu_memory_gb or g.cpu_offload or share > 1:
        return share
    return min(s for s in ACTOR_SHARES if family.weights_gb <= WEIGHTS_SHARE * s * gpu_memory_gb or s == 1.0)


def balance(stages: list[StagePlan], gpus: float) -> float:
    """Actors per pool for the shortest wall clock that fits `gpus`; a pool left under TARGET_BUSY by
    whole actors takes smaller GPU shares where its weights fit and that makes it busier. Returns
    the GPUs left over."""
    while True:
        spare = _balance_at_shares(stages, gpus)
        longest = max(s.hours for s in stages)
        changed = False
        for s in stages:
            if s.busy >= TARGET_BUSY or not s.smallest_share or s.smallest_share >= s.gpus_per_actor:
                continue
            shares = [share for share in ACTOR_SHARES if s.smallest_share <= share <= s.gpus_per_actor]
            best = max(shares, key=lambda share: (s.gpu_hours / (s.actors_within(longest, share) * share), share))
            if best != s.gpus_per_actor:
                s.gpus_per_actor, changed = best, True
        if not changed:
            return spare


def _balance_at_shares(stages: list[StagePlan], gpus: float) -> float:
    """The smallest time T at which every pool, with enough whole actors to do its work within T,
    fits the GPUs together; then each pool gives back the actors it does not need within
    SHORTER_BY of the longest pool."""
    def used(hours: float) -> float:
        return sum(s.actors_within(hours) * s.gpus_per_actor for s in stages)

    low, high = 0.0, max(s.gpu_hours / s.gpus_per_actor for s in stages)  # high: one actor each
    if used(high) > gpus:  # not even one actor per pool fits: keep one each, and say so
        low = high
    for _ in range(100):
        middle = (low + high) / 2
        low, high = (low, middle) if used(middle) <= gpus else (middle, high)
    for s in stages:
        s.actors = s.actors_within(high)
    longest = max(s.hours for s in stages)
    for s in stages:
        s.actors = s.actors_within(longest * (1 + SHORTER_BY))
    longest = max(s.hours for s in stages)
    for s in stages:
        s.busy = s.hours / longest if longest else 0.0
    return gpus - sum(s.actors * s.gpus_per_actor for s in stages)


def applied(config: PipelineConfig, stages: list[StagePlan]) -> PipelineConfig:
    """The config with the plan's pool sizes."""
    raw = config.model_dump(mode="json")
    by_pool = {s.pool: s for s in stages}
    raw["prompts"]["pool"] |= {"actors": by_pool["prompts"].actors, "num_gpus": by_pool["prompts"].gpus_per_actor}
    for i, _ in config.judges_at_work():  # an idle judge's pool is never started: left as it is
        judge = raw["judge"]["engines"][i]
        s = by_pool[f"judge:{judge['name']}"]
        judge["pool"] |= {"actors": s.actors, "num_gpus": s.gpus_per_actor}
    for g in raw["generate"]["generators"]:
        s = by_pool[f"generate:{g['name']}"]
        g["pool"] |= {"actors": s.actors, "num_gpus": s.gpus_per_actor}
    return PipelineConfig.model_validate(raw)


def measured_rates(summary: dict, config: PipelineConfig) -> dict[str, float]:
    """GPU-seconds per item of each GPU pool from a run's summary.json (its stages' busy seconds are per unit)."""
    rates = {}
    size = config.generate.unit_size
    per_unit = {"prompts": size, **{f"judge:{e.name}": size * 2 * config.judge.votes for _, e in config.judges_at_work()}}
    for g in config.generate.generators:
        per_unit[f"generate:{g.name}"] = 2 * size / len(config.generators_for(g.modality))
    pools = config.model_pools()
    for pool, stats in summary.get("stages", {}).items():
        if pool in per_unit and stats.get("items") and pools[pool].num_gpus:
            rates[pool] = stats["busy_seconds"] / stats["items"] / per_unit[pool] * pools[pool].num_gpus
    return rates


def make_plan(config: PipelineConfig, gpus: int, gpu_memory_gb: float | None, cpus: float | None = None,
              measured: dict[str, float] | None = None) -> Plan:
    stages = stage_work(config, gpu_memory_gb, measured or {})
    spare = balance(stages, gpus)
    quotas, asked = config.quotas(), prompts_per_category(config)
    prompts, pairs = sum(asked.values()), sum(quotas.values())
    shards = math.ceil(pairs / config.shards.pairs_per_shard)
    candidate_bytes = {c: _candidate_bytes(config, config.category(c).modality) for c in quotas}
    cache_bytes = sum(2 * n * candidate_bytes[c] for c, n in asked.items())
    shard_bytes = sum(2 * q * candidate_bytes[c] for c, q in quotas.items())
    units = math.ceil(prompts / config.generate.unit_size)
    generators = len(config.generate.generators)
    per_unit = min(generators, 2 * config.generate.unit_size)  # candidate files per unit
    puts = units * (per_unit + 1) + math.ceil(units / PART_UNITS) + 3 * shards
    gets = units * per_unit + units * (per_unit + 1)  # the judge's reads, the shard writer's
    balanced = applied(config, stages)
    found = problems(balanced, Cluster(gpus, cpus if cpus is not None else math.inf, gpu_memory_gb))
    return Plan(gpus, gpu_memory_gb, stages, spare, prompts, pairs, shards, cache_bytes, shard_bytes, puts, gets, found)


def _candidate_bytes(config: PipelineConfig, modality: str) -> float:
    out = config.output_for(modality)
    if modality == "image":
        return out.width * out.height * BYTES_PER_PIXEL[out.format]
    return out.width * out.height * out.frames * BYTES_PER_PIXEL["mp4"]


def show(plan: Plan, config: PipelineConfig, console) -> None:
    from rich.table import Table

    memory = f" x {plan.gpu_memory_gb:g} GB" if plan.gpu_memory_gb else ""
    table = Table(title=f"Plan on {plan.gpus} GPUs{memory}: {plan.pairs:,} pairs from up to {plan.prompts:,} prompts")
    for column in ("stage", "items", "GPU-s/item", "GPU-h", "actors x GPUs", "config", "busy", "hours"):
        table.add_column(column, justify="left" if column == "stage" else "right")
    pools = config.model_pools()
    for s in plan.stages:
        now = pools[s.pool]
        table.add_row(f"{s.pool} ({s.item}s)", f"{s.items:,.0f}", f"{s.gpu_seconds_per_item:.3g}", f"{s.gpu_hours:,.0f}",
                      f"{s.actors} x {s.gpus_per_actor:g}", f"{now.actors} x {now.num_gpus:g}", f"{s.busy:.2f}",
                      f"{s.hours:,.0f}")
    table.add_row("total", "", "", f"{plan.gpu_hours:,.0f}", f"{sum(s.actors * s.gpus_per_actor for s in plan.stages):g}",
                  "", "", f"{plan.hours:,.0f}")
    console.print(table)
    if plan.spare_gpus > 0:
        console.print(f"{plan.spare_gpus:g} GPUs spare: one more actor of any pool would not shorten the run "
                      f"by more than {SHORTER_BY:.1%}")
    elif plan.spare_gpus < 0:
        console.print(f"the smallest layout, one actor per pool, needs {plan.gpus - plan.spare_gpus:g} GPUs: "
                      "plan for at least that many, or run some generators in a separate run", markup=False)
    console.print(f"wall clock about {plan.hours:,.0f} h ({plan.hours / 24:.1f} days); {plan.shards:,} shards; "
                  f"cache {plan.cache_bytes / 1e12:.2f} TB, shards {plan.shard_bytes / 1e12:.2f} TB; "
                  f"object-store requests about {plan.put_requests:,} PUT and {plan.get_requests:,} GET")
    idle = [s for s in plan.stages if s.busy < TARGET_BUSY]
    held = sum(s.actors * s.gpus_per_actor for s in plan.stages) * plan.hours
    for s in idle:
        reason = "at its smallest size" if s.actors == 1 else "by whole actors"
        console.print(f"note: {s.pool} is modelled {s.busy:.2f} busy {reason} ({s.actors} x {s.gpus_per_actor:g} GPUs, "
                      f"{s.idle_gpu_hours:,.0f} GPU-h idle, {s.idle_gpu_hours / held:.1%} of the run's)")
    for line in plan.problems:
        console.print(f"does not fit: {line}", markup=False)
    for s in plan.stages:
        console.print(f"  {s.pool}: {s.gpu_seconds_per_item:.3g} GPU-s per {s.item}, from {s.source}", markup=False, highlight=False)


def to_json(plan: Plan) -> str:
    return json.dumps(plan.as_json(), indent=1)
