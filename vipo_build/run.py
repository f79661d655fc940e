"""`vipo-build run`: prompts -> candidates -> judged pairs -> committed shards, resumable.

Work is cut into fixed units per category (unit u of category c: fixed prompts, generators and
seeds, judged as one batch). Kept pairs are ordered by (unit, index) within their category;
shard s is written as soon as every category has enough kept pairs in that order. Expansion
rounds add units until every category reaches its quota: the first round is sized by
`prompts.overgen`, later ones by the keep rate observed so far.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import ray
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from vipo_build import __version__
from vipo_build.config import PipelineConfig, is_local_model, load_config, output_fields, resolve_model
from vipo_build.errors import VipoError
from vipo_build.generate.actor import Generator
from vipo_build.generate.pairs import candidate_specs, generation_text
from vipo_build.generate.registry import check_pipeline
from vipo_build.judge.actor import Judge
from vipo_build.prompts import expand
from vipo_build.prompts.categories import CATEGORIES_DIR, Category
from vipo_build.prompts.filters import PromptFilters
from vipo_build.records import Prompt, Verdict
from vipo_build.runtime import cache, failpoints
from vipo_build.runtime.lock import writer_lock
from vipo_build.runtime.pools import ActorPool, EventLoop, describe_failure, start_ray
from vipo_build.runtime.storage import Storage
from vipo_build.shards.plan import ShardPlan
from vipo_build.shards.writer import committed_shards
from vipo_build import summary, tasks

RUN_JSON = "run.json"
PROGRESS_JSON = "progress.json"  # this run's own rate, for `status` (ETA); not part of the dataset
MIN_KEEP_RATE = 0.02  # floor of the keep rate used to size later rounds


def prepare(config_path: str | Path, out: str | None) -> tuple[PipelineConfig, ShardPlan, str]:
    """Validate the config and its model paths; nothing is written. Returns config (model paths
    resolved), plan and the output root URL."""
    config, base = load_config(config_path)
    models = [("prompts.engine.model", config.prompts.engine), ("judge.engine.model", config.judge.engine)]
    models += [(f"generate.generators[{i}].model", g) for i, g in enumerate(config.generate.generators)]
    for where, holder in models:
        holder.model = resolve_model(holder.model, base)
        if is_local_model(holder.model) and not Path(holder.model).is_dir():
            raise VipoError(f"{config_path}: {where}: model directory not found: {holder.model}")
    root = out or config.output
    if "://" not in root:
        root = str((base / root).resolve()) if out is None else str(Path(root).resolve())
    plan = ShardPlan(config.shards.name, config.quotas(), config.shards.pairs_per_shard)
    return config, plan, root


def open_root(root: str) -> Storage:
    try:
        storage = Storage(root)
        bucket = storage.root.split("/", 1)[0]
        found = storage.is_local or storage.fs.exists(bucket)
        storage.exists(RUN_JSON)
    except Exception as err:  # any backend's connection or permission error
        raise VipoError(f"{root}: cannot open the output root: {type(err).__name__}: {err}") from None
    if not found:
        raise VipoError(f"{root}: bucket {bucket!r} does not exist (or these credentials cannot see it)")
    return storage


def category_files(config: PipelineConfig) -> dict[str, str]:
    """sha256 of each data file used: seeds, instructions, rubric and blocklists change the output too."""
    files = [f"{name}.yaml" for name in config.categories]
    files += [f"blocklists/{language}.txt" for language in config.prompts.filters.safety.blocklists]
    return {f"prompts/{name}": hashlib.sha256((CATEGORIES_DIR / name).read_bytes()).hexdigest() for name in files}


def read_run_json(storage: Storage) -> tuple[PipelineConfig, dict]:
    """The config a root was built with, and the whole run.json record."""
    try:
        recorded = json.loads(storage.read_bytes(RUN_JSON))
        return PipelineConfig.model_validate(recorded["config"]), recorded
    except (ValueError, KeyError) as err:
        raise VipoError(f"{storage.url}/{RUN_JSON}: unreadable ({type(err).__name__}); was it written by another version?") from None


def check_drift(storage: Storage, config: PipelineConfig) -> bool:
    """True when the root was already started with this config; refuses a config that would change its output."""
    if not storage.exists(RUN_JSON):
        return False
    previous, recorded = read_run_json(storage)
    before = {**output_fields(previous), **recorded.get("category_files", {})}
    now = {**output_fields(config), **category_files(config)}
    changed = sorted(k for k in before.keys() | now.keys() if before.get(k) != now.get(k))
    if changed:
        raise VipoError(
            f"{storage.url}: this root was built with a different config; changed fields: {', '.join(changed)} "
            "(restore them or use another --out)"
        )
    return True


def run(config_path: str | Path, out: str | None, console: Console) -> dict | None:
    """Run or resume; returns the run summary, or None when every shard was already committed."""
    config, plan, root = prepare(config_path, out)
    storage = open_root(root)
    if check_drift(storage, config) and set(map(plan.shard_name, range(plan.num_shards))) <= committed_shards(storage).keys():
        console.print(f"All {plan.num_shards} shards in {root} are already committed; nothing to do.")
        return None
    with writer_lock(storage):
        started = check_drift(storage, config)  # again, now that no other run can change the root
        committed = committed_shards(storage)
        if not started:
            # run.json last: it marks the root as started, so everything else a start writes is there.
            storage.write_table("plan.parquet", plan.table())
            failpoints.reached("root.plan_written")
            record = {"config": config.model_dump(mode="json"), "config_hash": config.output_hash(),
                      "category_files": category_files(config), "version": __version__}
            storage.write_bytes(RUN_JSON, json.dumps(record, indent=1, sort_keys=True).encode())
        if committed:
            console.print(f"Resuming {root}: {len(committed)} of {plan.num_shards} shards already committed.")
        for warning in check_pipeline(config):
            console.print(f"warning: {warning}", markup=False)
        start_ray(config.ray)
        return Run(config, plan, storage, committed, console).execute()


@dataclass
class CategoryState:
    category: Category
    quota: int
    filters: PromptFilters  # this category's lint, safety and dedup state, fed in unit order
    units: dict[int, list[Prompt]] = field(default_factory=dict)
    judged: dict[int, list[Verdict]] = field(default_factory=dict)
    prefix: int = 0  # units [0, prefix) are judged and their kept pairs are in `kept`
    kept: list[tuple[int, str]] = field(default_factory=list)  # (unit, pair id) in dataset order
    requested: int = 0
    drops: Counter = field(default_factory=Counter)

    @property
    def short(self) -> bool:
        return len(self.kept) < self.quota


class Run:
    def __init__(self, config: PipelineConfig, plan: ShardPlan, storage: Storage, committed: dict, console: Console):
        self.config, self.plan, self.storage, self.console = config, plan, storage, console
        self.states = {name: CategoryState(config.category(name), quota, PromptFilters(config.prompts.filters))
                       for name, quota in plan.quotas.items()}
        self.committed = dict(committed)
        self.started_at = time.time()
        self.done_this_run: Counter = Counter()  # shards, pairs and judged pairs since this run started
        self.reused: Counter = Counter()  # cache hits: work an earlier run did and this one did not redo
        self.pending = [s for s in range(plan.num_shards) if plan.shard_name(s) not in committed]
        self.needed = {s: plan.needed(s) for s in self.pending}
        self.loop = EventLoop()
        self.pools: dict[str, ActorPool] = {}
        self.stage_stats: dict[str, dict] = {}
        self.encode = ray.remote(num_cpus=1)(tasks.encode_candidates)
        self.store = ray.remote(num_cpus=1)(tasks.store_candidates)
        self.load_items = ray.remote(num_cpus=1)(tasks.load_judge_items)
        self.write_shard = ray.remote(num_cpus=1)(tasks.write_shard_from_cache)
        self.progress = Progress(
            TextColumn("{task.description:<12}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            console=console, transient=False,
        )
        self.bars = {name: self.progress.add_task(name, total=0) for name in ("prompts", "candidates", "judged", "shards")}
        self.progress.update(self.bars["shards"], total=plan.num_shards, completed=len(committed))

    # Driver ------------------------------------------------------------------------------

    def execute(self) -> dict:
        started = time.perf_counter()
        try:
            with self.progress:
                for round_ in range(self.config.prompts.max_rounds):
                    short = [s for s in self.states.values() if s.short]
                    if not short:
                        break
                    self.expansion_round(round_, short)
                    self.process_units()
                    # Free the generators' and judge's accelerators for the next round's prompt LLM.
                    for name in list(self.pools):
                        self.close_pool(name)
        except ray.exceptions.RayError as err:  # a CPU task's; pool calls name their stage and unit themselves
            raise VipoError(f"a pipeline task failed: {describe_failure(err)}") from None
        finally:
            for name in list(self.pools):
                self.close_pool(name)
        missing = [s for s in self.states.values() if s.short]
        if missing:
            worst = missing[0]
            raise VipoError(
                f"category {worst.category.name}: {len(worst.kept)} of {worst.quota} pairs kept after "
                f"{self.config.prompts.max_rounds} rounds ({worst.requested} prompts); raise prompts.max_rounds "
                "or prompts.overgen, or lower judge.threshold"
            )
        result = summary.build(self, time.perf_counter() - started)
        self.storage.write_bytes("summary.json", json.dumps(result, indent=1, sort_keys=True).encode())
        summary.show(result, self.console)
        return result

    def pool(self, name: str, cls: type, args: tuple, pool_config) -> ActorPool:
        if name not in self.pools:
            self.pools[name] = ActorPool(name, cls, args, pool_config, self.loop)
        return self.pools[name]

    def close_pool(self, name: str) -> None:
        """Stop a pool's actors (freeing their accelerators); its figures add to the stage's."""
        if name in self.pools:
            pool = self.pools.pop(name)
            self.stage_stats[name] = pool.stats(self.stage_stats.get(name))
            pool.shutdown()

    def grow(self, bar: str, n: int, done: bool = False) -> None:
        """Add n items to a progress bar's total (and to its completed count when they are already done)."""
        task = self.bars[bar]
        self.progress.update(task, total=self.progress.tasks[task].total + n)
        if done:
            self.progress.advance(task, n)

    # Prompts -----------------------------------------------------------------------------

    def units_for_round(self, state: CategoryState, round_: int) -> int:
        size = self.config.generate.unit_size
        if round_ == 0:
            return math.ceil(state.quota * self.config.prompts.overgen / size)
        rate = max(len(state.kept) / max(state.requested, 1), MIN_KEEP_RATE)
        return math.ceil((state.quota - len(state.kept)) / rate * 1.2 / size)

    def expansion_round(self, round_: int, short: list[CategoryState]) -> None:
        size = self.config.generate.unit_size
        answers: dict[tuple[str, int], list] = {}
        plans = {}
        for state in short:
            loaded = cache.read_prompts(self.storage, state.category.name, round_)
            if loaded is not None:
                prompts, units, drops = loaded
                self.reused["prompt_parts"] += 1
                self.add_prompts(state, units, prompts, drops)
                self.grow("prompts", len(units) * size, done=True)
                continue
            first = max(state.units, default=-1) + 1
            units = list(range(first, first + self.units_for_round(state, round_)))
            plans[state.category.name] = units
            self.grow("prompts", len(units) * size)
            for unit in units:
                requests = expand.unit_requests(state.category, self.config.seed, unit, size)
                pool = self.pool("prompts", expand.PromptExpander, (self.config.prompts, self.config.seed), self.config.prompts.pool)

                def done(ref, key=(state.category.name, unit), n=len(requests)):
                    answers[key] = ray.get(ref)
                    self.progress.advance(self.bars["prompts"], n)

                pool.submit("expand", (state.category, requests), done, items=len(requests),
                            unit=cache.unit_name(state.category.name, unit))
        self.loop.run()
        self.close_pool("prompts")
        for name, units in plans.items():
            state = self.states[name]
            drops: Counter = Counter()
            prompts = []
            for unit in units:  # unit order: which duplicate survives never depends on timing
                requests = expand.unit_requests(state.category, self.config.seed, unit, size)
                prompts += expand.accept(state.category, requests, answers[name, unit], state.filters, round_,
                                         self.config.prompts.engine.model, drops)
            cache.write_prompts(self.storage, name, round_, prompts, units, drops)
            failpoints.reached("prompts.part_written", f"{name}/r{round_}")
            self.add_prompts(state, units, prompts, drops, filtered=True)

    def add_prompts(self, state: CategoryState, units: list[int], prompts: list[Prompt], drops: dict, filtered: bool = False) -> None:
        for unit in units:
            state.units[unit] = [p for p in prompts if p.unit == unit]
        state.requested += len(units) * self.config.generate.unit_size
        state.drops.update(drops)
        if not filtered:  # read back from the cache: later rounds still dedup against them
            state.filters.remember([p.text for p in prompts])

    # Candidates and verdicts -------------------------------------------------------------

    def process_units(self) -> None:
        for name, state in self.states.items():
            for unit, prompts in sorted(state.units.items()):
                if unit in state.judged:
                    continue
                self.grow("judged", len(prompts))
                judged = cache.read_judged(self.storage, name, unit) if prompts else (prompts, [])
                if judged is not None:
                    self.reused["judged_units"] += bool(prompts)  # a unit whose prompts were all dropped has no cache
                    self.grow("candidates", 2 * len(prompts), done=True)
                    self.finish_unit(state, unit, judged[1])
                elif self.storage.exists(cache.candidates_path(name, unit)):
                    self.reused["candidate_units"] += 1
                    self.grow("candidates", 2 * len(prompts), done=True)
                    items = self.load_items.remote(self.config, self.storage, name, unit, prompts)
                    self.judge_unit(state, unit, prompts, items)
                else:
                    self.grow("candidates", 2 * len(prompts))
                    self.generate_unit(state, unit, prompts)
        self.loop.run()

    def generate_unit(self, state: CategoryState, unit: int, prompts: list[Prompt]) -> None:
        by_id = {p.id: p for p in prompts}
        by_generator: dict[str, list] = {}
        for prompt in prompts:
            for spec in candidate_specs(self.config, prompt):
                by_generator.setdefault(spec.generator, []).append(spec)
        encoded: list = []

        for generator in self.config.generate.generators:
            specs = by_generator.get(generator.name)
            if not specs:
                continue
            pool = self.pool(f"generate:{generator.name}", Generator, (generator,), generator.pool)

            def done(pixels, specs=specs):
                encoded.append(self.encode.remote(self.config, specs, pixels))
                self.progress.advance(self.bars["candidates"], len(specs))
                if len(encoded) == len(by_generator):
                    items = self.store.remote(self.config, self.storage, state.category.name, unit, prompts, *encoded)
                    self.judge_unit(state, unit, prompts, items)

            pool.submit("generate", (specs, [generation_text(by_id[s.prompt_id], s) for s in specs]), done, items=len(specs),
                        unit=cache.unit_name(state.category.name, unit))

    def judge_unit(self, state: CategoryState, unit: int, prompts: list[Prompt], items: ray.ObjectRef) -> None:
        pool = self.pool("judge", Judge, (self.config.judge, self.config.seed), self.config.judge.pool)

        def done(ref):
            verdicts = ray.get(ref)
            cache.write_judged(self.storage, state.category.name, unit, prompts, verdicts)
            failpoints.reached("judged.written", f"{state.category.name}/u{unit}")
            self.done_this_run["judged"] += len(verdicts)
            self.finish_unit(state, unit, verdicts)

        pool.submit("judge", (state.category, items), done, items=len(prompts), unit=cache.unit_name(state.category.name, unit))

    def finish_unit(self, state: CategoryState, unit: int, verdicts: list[Verdict]) -> None:
        state.judged[unit] = verdicts
        self.progress.advance(self.bars["judged"], len(verdicts))
        state.drops.update(v.reason for v in verdicts if not v.kept)
        while state.prefix in state.judged:
            state.kept += [(state.prefix, v.pair_id) for v in state.judged[state.prefix] if v.kept]
            state.prefix += 1
        self.write_ready_shards()

    # Shards ------------------------------------------------------------------------------

    def write_progress(self) -> None:
        now = time.time()
        record = {"started": self.started_at, "updated": now, "seconds": round(now - self.started_at, 3),
                  "this_run": dict(sorted(self.done_this_run.items())),
                  "shards": {"committed": len(self.committed), "planned": self.plan.num_shards}}
        self.storage.write_bytes(PROGRESS_JSON, json.dumps(record, indent=1).encode())

    def write_ready_shards(self) -> None:
        for shard in list(self.pending):
            if any(len(self.states[c].kept) < n for c, n in self.needed[shard].items()):
                continue
            self.pending.remove(shard)
            members = [(c, *self.states[c].kept[o]) for c, o in self.plan.slots(shard)]
            ref = self.write_shard.remote(self.storage, self.plan.shard_name(shard), members)

            def done(ref):
                record = ray.get(ref)
                self.committed[record["shard"]] = record
                self.progress.advance(self.bars["shards"])
                self.done_this_run.update(shards=1, pairs=record["pairs"])
                self.write_progress()

            self.loop.watch(ref, done)
