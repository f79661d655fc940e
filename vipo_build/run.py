"""`vipo-build run`: prompts -> candidates -> judged pairs -> committed shards, resumable.

Work is cut into fixed units per category (unit u of category c: fixed prompts, generators and
seeds). Units stream through the stages (expand, filter, generate, judge, write shard) with every
pool up at once; kept pairs are ordered by (unit, index) within their category, and shard s is
written as soon as every category has enough kept pairs in that order. Expansion rounds add units
until every category reaches its quota: the first is sized by `prompts.overgen`, later ones by
the keep rate of the judged units so far, decided while the earlier units are still in flight.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import logging
import math
import time
from array import array
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from vipo_build import __version__, logs
from vipo_build.config import PipelineConfig, is_local_model, load_config, output_fields, resolve_model
from vipo_build.errors import VipoError
from vipo_build.generate.actor import GenerateStage, GenerationWork
from vipo_build.generate.pairs import generation_text, specs_by_generator
from vipo_build.generate.registry import check_pipeline
from vipo_build.judge.actor import JudgeStage, JudgeWork
from vipo_build.judge import panel
from vipo_build.judge.agreement import AgreementTally
from vipo_build.prompts import expand
from vipo_build.prompts.accept import FilterStage, FilterWork, prompt_id
from vipo_build.prompts.categories import Category, category_folder, read_category_files
from vipo_build.prompts.expand import ExpandStage, ExpansionWork
from vipo_build.prompts.safety import PACKAGED_BLOCKLISTS
from vipo_build.records import Prompt, Verdict
from vipo_build.runtime import cache, failpoints
from vipo_build.runtime.lock import writer_lock
from vipo_build.runtime.scheduler import Scheduler, Task, start_ray
from vipo_build.runtime.stage import Failure, Stage
from vipo_build.runtime.storage import Storage
from vipo_build.shards.facet_balance import FACET_SHARE, FacetBalance
from vipo_build.shards.plan import ShardPlan
from vipo_build.shards.stage import ShardWork, WriteShardStage
from vipo_build.shards.writer import committed_shards
from vipo_build import preflight, summary
from vipo_build.layout import PLAN_PARQUET, PROGRESS_JSON, RUN_JSON, SUMMARY_JSON
from vipo_build.root import open_root, read_run_json

MIN_KEEP_RATE = 0.02  # floor of the keep rate used to size later rounds

log = logging.getLogger(__name__)


def prepare(config_path: str | Path, out: str | None) -> tuple[PipelineConfig, ShardPlan, str]:
    """Validate the config and its model paths; nothing is written. Returns config (model paths
    resolved), plan and the output root URL."""
    config, base = load_config(config_path)
    models = [("prompts.engine.model", config.prompts.engine)]
    models += [(f"judge.engines[{i}].engine.model", e.engine) for i, e in enumerate(config.judge.engines)]
    models += [(f"generate.generators[{i}].model", g) for i, g in enumerate(config.generate.generators)]
    for where, holder in models:
        holder.model = resolve_model(holder.model, base)
        if is_local_model(holder.model) and not Path(holder.model).is_dir():
            raise VipoError(f"{config_path}: {where}: model directory not found: {holder.model}")
    root = out or config.output
    if "://" not in root:
        root = str((base / root).resolve()) if out is None else str(Path(root).resolve())
    plan = ShardPlan.of(config)
    return config, plan, root


def category_files(config: PipelineConfig) -> dict[str, str]:
    """sha256 of each data file used: seeds, instructions, rubric, vocabularies and blocklists change the output too."""
    folder = category_folder(config.category_dir)
    used = {f"categories/{name}": folder / name
            for category in config.categories for name in read_category_files(category, folder)[1]}
    used |= {f"blocklists/{language}.txt": PACKAGED_BLOCKLISTS / f"{language}.txt"
             for language in config.prompts.filters.safety.blocklists}
    return {key: hashlib.sha256(file.read_bytes()).hexdigest() for key, file in sorted(used.items())}


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


def run(config_path: str | Path, out: str | None, console: Console, retry_failed: bool = False) -> dict | None:
    """Run or resume; returns the run summary, or None when every shard was already committed.
    Units an earlier run gave up on stay failed unless `retry_failed`."""
    config, plan, root = prepare(config_path, out)
    storage = open_root(root)
    if check_drift(storage, config) and set(map(plan.shard_name, range(plan.num_shards))) <= committed_shards(storage).keys():
        log.info("All %d shards in %s are already committed; nothing to do.", plan.num_shards, root)
        return None
    start_ray(config.ray)
    preflight.check_root(storage.url, storage.is_local)
    preflight.check(config, preflight.cluster_now(config.ray))  # before anything is written or loaded
    with writer_lock(storage), logs.run_log(storage, config.name) as run_log:
        log.debug("vipo-build %s, config %s, root %s, run log %s", __version__, config_path, root, run_log)
        started = check_drift(storage, config)  # again, now that no other run can change the root
        committed = committed_shards(storage)
        if not started:
            # run.json last: it marks the root as started, so everything else a start writes is there.
            storage.write_table(PLAN_PARQUET, plan.table())
            failpoints.reached("root.plan_written")
            record = {"config": config.model_dump(mode="json"), "config_hash": config.output_hash(),
                      "category_files": category_files(config), "version": __version__}
            storage.write_bytes(RUN_JSON, json.dumps(record, indent=1, sort_keys=True).encode())
        if committed:
            log.info("Resuming %s: %d of %d shards already committed.", root, len(committed), plan.num_shards)
        for warning in check_pipeline(config):
            log.warning(warning)
        return Run(config, plan, storage, committed, console, retry_failed=retry_failed).execute()


@dataclass
class Stages:
    """The stages a run streams its units through; a benchmark may swap some for simulations."""

    prompts: Stage
    filter: FilterStage
    generators: dict[str, Stage]  # by generator name
    judges: dict[str, Stage]  # by judge name, in config order
    shards: Stage


def product_stages(config: PipelineConfig, storage: Storage) -> Stages:
    return Stages(
        prompts=ExpandStage(config.prompts, config.seed),
        filter=FilterStage(config.prompts, list(config.categories)),
        generators={g.name: GenerateStage(g, config.generate.image, config.generate.video, storage) for g in config.generate.generators},
        judges={e.name: JudgeStage(config.judge, e, config.seed, storage, clips=config.generate.video)
                for _, e in config.judges_at_work()},  # an idle judge has no pool: it neither widens the window nor shows
        shards=WriteShardStage(config, storage),
    )


@dataclass
class UnitOutcome:
    """A judged unit waiting for the prefix to reach it: what it adds when counted."""

    kept: list[tuple[int, str, dict[str, str]]]  # index, seed subject and facet values of each kept pair
    tally: AgreementTally
    drops: Counter  # by the filters and the judge

    @classmethod
    def of(cls, verdicts: list[Verdict], filter_drops: Counter, prompts: list[Prompt]) -> UnitOutcome:
        tally, drops = AgreementTally(), Counter(filter_drops)
        for verdict in verdicts:
            tally.add(verdict)
            if not verdict.kept:
                drops[verdict.reason] += 1
        by_id = {p.id: p for p in prompts}
        return cls([(int(v.pair_id.rsplit("-p", 1)[1]), by_id[v.pair_id].seed_subject,
                     {f.facet: f.value for f in by_id[v.pair_id].facets}) for v in verdicts if v.kept], tally, drops)


@dataclass
class InFlight:
    """An admitted unit, until every judge has judged it."""

    generators: list[str]  # all of the unit's generators: the judges read every one's candidates
    missing: dict[str, int]  # generators still at work -> candidates each owes
    verdicts: dict[str, list[Verdict]]  # by judge, as each is cached


@dataclass
class CategoryState:
    """One category's units as they stream through; only units not yet judged keep their prompts."""

    category: Category
    quota: int
    order: int  # position in the config: breaks priority ties
    listing: set[str]  # the cache folder's names when the run started
    rounds: list[range] = field(default_factory=list)  # units of each expansion round, as decided
    expand_next: int = 0  # next unit to send to the prompt LLM
    answers: dict[int, list] = field(default_factory=dict)  # expanded, waiting to be filtered in unit order
    filter_next: int = 0  # next unit to filter
    part_prompts: dict[int, list[Prompt]] = field(default_factory=dict)  # by first unit: filtered, until the part is written
    part_drops: dict[int, dict[int, dict]] = field(default_factory=dict)  # and their drops, by unit
    prompts: dict[int, list[Prompt]] = field(default_factory=dict)  # filtered, not yet judged
    partly_judged: dict[int, dict[str, list[Verdict]]] = field(default_factory=dict)  # waiting units some judges have cached
    filter_drops: dict[int, Counter] = field(default_factory=dict)  # filtered, not yet in the prefix
    judged: dict[int, UnitOutcome] = field(default_factory=dict)  # judged, beyond the prefix
    prefix: int = 0  # units [0, prefix) are judged; those up to the one that filled the quota are counted
    kept_units: array = field(default_factory=lambda: array("i"))  # kept pairs in dataset order: unit
    kept_index: array = field(default_factory=lambda: array("i"))  # and index within it
    balance: FacetBalance | None = None  # the category's least facet shares, where it has any
    failed: dict[int, Failure] = field(default_factory=dict)
    expansion_blocked: bool = False  # a unit could not be expanded: later ones can never be filtered
    closed: bool = False  # the quota is filled: no more of its work is done
    drops: Counter = field(default_factory=Counter)  # of the counted units
    subjects: set[str] = field(default_factory=set)  # distinct seed subjects of the pairs within the quota
    combinations: set[int] = field(default_factory=set)  # and hashes of their distinct facet combinations
    tally: AgreementTally = field(default_factory=AgreementTally)  # of the counted units

    @property
    def requested(self) -> int:
        """Units asked for so far."""
        return self.rounds[-1].stop if self.rounds else 0

    @property
    def kept(self) -> int:
        return len(self.kept_units)

    @property
    def short(self) -> bool:
        return self.kept < self.quota

    def count(self, unit: int, outcome: UnitOutcome) -> None:
        """Add the prefix's next unit to the dataset's pairs and figures."""
        self.tally.update(outcome.tally)
        self.drops.update(outcome.drops)
        for index, subject, facets in outcome.kept:
            if self.balance and not self.balance.admit(facets):
                self.drops[FACET_SHARE] += 1
                continue
            if self.short:
                self.subjects.add(subject)
                self.combinations.add(hash(tuple(sorted(facets.items()))))
            self.kept_units.append(unit)
            self.kept_index.append(index)

    def pair_id(self, position: int) -> str:
        return prompt_id(self.category.name, self.kept_units[position], self.kept_index[position])

    def cached(self, rel: str) -> bool:
        """Whether a cache file of this category was there when the run started (from the one listing)."""
        return rel.rsplit("/", 1)[1] in self.listing

    def round_of(self, unit: int) -> int:
        return next(r for r, units in enumerate(self.rounds) if unit in units)

    def part_of(self, unit: int) -> range:
        """The units of the prompt part that holds `unit`: PART_UNITS at a time from its round's start."""
        units = self.rounds[self.round_of(unit)]
        first = units.start + (unit - units.start) // cache.PART_UNITS * cache.PART_UNITS
        return range(first, min(first + cache.PART_UNITS, units.stop))


class Run:
    """Streams every category's units through the stages and commits shards as their pairs are kept.

    Determinism: a unit's prompts, candidates and verdicts depend only on (seed, category, unit);
    prompts are filtered in unit order; the dataset is each category's first kept pairs in unit
    order; and how many units to ask for is decided from the judged prefix of units only, so it
    never depends on timing or actor counts.
    """

    def __init__(self, config: PipelineConfig, plan: ShardPlan, storage: Storage, committed: dict, console: Console,
                 stages: Stages | None = None, retry_failed: bool = False):
        self.config, self.plan, self.storage, self.console = config, plan, storage, console
        self.stages = stages or product_stages(config, storage)
        self.unit_size = config.generate.unit_size
        self.prompt_parts = set(storage.list(cache.PROMPTS_DIR, ".parquet"))  # listed once
        self.states = {name: CategoryState(config.category(name), quota, i, cache.listing(storage, name),
                                           balance=(FacetBalance(shares, plan.per_shard(name))
                                                    if (shares := config.categories[name].facet_shares) else None))
                       for i, (name, quota) in enumerate(plan.quotas.items())}
        self.earlier_failures: dict[tuple[str, int], dict] = {}
        for name in self.states:
            for unit, record in cache.read_failures(storage, name).items():
                if retry_failed:
                    storage.remove(cache.failure_path(name, unit))
                else:
                    self.earlier_failures[name, unit] = record
        self.committed = dict(committed)
        self.started_at = time.time()
        self.done_this_run: Counter = Counter()  # shards, pairs and judged pairs since this run started
        self.reused: Counter = Counter()  # cache hits: work an earlier run did and this one did not redo
        # per shard set (one per modality), its shards not yet committed, in order
        self.pending = [deque(s for s in numbers if plan.shard_name(s) not in committed) for numbers in plan.set_shards()]
        self.needed = {s: plan.needed(s) for queue in self.pending for s in queue}
        self.window = config.ray.max_units_in_flight or self.default_window()
        self.expanding = 0  # units with the prompt LLM or waiting to be filtered
        self.ready: list = []  # heap of (priority, category, unit): filtered, waiting to be admitted
        self.in_flight: dict[tuple[str, int], InFlight] = {}  # units being generated or judged
        self.scheduler = Scheduler()
        self.scheduler.add(self.stages.prompts, self.expanded, self.unit_failed)
        self.scheduler.add(self.stages.filter, self.filtered)
        for stage in self.stages.generators.values():
            self.scheduler.add(stage, self.generated, self.unit_failed)
        for stage in self.stages.judges.values():
            self.scheduler.add(stage, self.judged_unit, self.unit_failed)
        self.scheduler.add(self.stages.shards, self.shard_written)
        self.progress = Progress(
            TextColumn("{task.description:<12}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            console=console, transient=False, disable=logs.quiet(),
        )
        self.bars = {name: self.progress.add_task(name, total=0) for name in ("prompts", "candidates", "judged", "shards")}
        self.progress.update(self.bars["shards"], total=plan.num_shards, completed=len(committed))

    def default_window(self) -> int:
        """Twice the calls all generator and judge actors can hold at once, in units."""
        stages = [*self.stages.generators.values(), *self.stages.judges.values()]
        slots = sum(s.resources.actors * s.resources.calls_in_flight * s.resources.units_per_call for s in stages)
        return 2 * slots

    # Driver ------------------------------------------------------------------------------

    def execute(self) -> dict:
        started = time.perf_counter()
        try:
            with self.progress:
                for state in self.states.values():
                    self.add_round(state, self.config.first_round_units(state.quota))
                while True:
                    self.feed()
                    if not self.scheduler.step():
                        break
        finally:
            self.stage_stats = self.scheduler.stats()
            self.scheduler.shutdown()
        failures = [f for s in self.states.values() if s.short for f in s.failed.values()]  # others are past the quota
        missing = [s for s in self.states.values() if s.short]
        if missing and not failures:
            worst = missing[0]
            raise VipoError(
                f"category {worst.category.name}: {worst.kept} of {worst.quota} pairs kept after "
                f"{len(worst.rounds)} rounds ({worst.requested * self.unit_size} prompts); raise prompts.max_rounds "
                "or prompts.overgen, or lower judge.threshold"
            )
        result = summary.build(self, time.perf_counter() - started)
        self.storage.write_bytes(SUMMARY_JSON, json.dumps(result, indent=1, sort_keys=True).encode())
        summary.show(result, self.console)
        if failures:  # after the summary: the run did all it could
            raise UnitsFailed(self.storage.url, failures)
        return result

    def feed(self) -> None:
        """Send units to the prompt LLM and admit filtered ones to generation, in priority order,
        while fewer than `window` are at each of the two steps."""
        while self.expanding + len(self.ready) < self.window:
            waiting = [s for s in self.states.values()
                       if s.expand_next < s.requested and not (s.expansion_blocked or s.closed)]
            if not waiting:
                break
            state = min(waiting, key=lambda s: self.priority(s, s.expand_next))
            self.expand(state, state.expand_next)
            state.expand_next += 1
        while self.ready and len(self.in_flight) < self.window:
            _, name, unit = heapq.heappop(self.ready)
            if self.states[name].closed:
                self.states[name].prompts.pop(unit)
            else:
                self.admit(self.states[name], unit)

    def priority(self, state: CategoryState, unit: int) -> tuple:
        """Shard-plan order: unit u of a category is about u / (units of its first round) of the way through it."""
        return (unit / len(state.rounds[0]), state.order)

    def grow(self, bar: str, n: int, done: bool = False) -> None:
        """Add n items to a progress bar's total (and to its completed count when they are already done)."""
        task = self.bars[bar]
        self.progress.update(task, total=self.progress.tasks[task].total + n)
        if done:
            self.progress.advance(task, n)

    # Prompts -----------------------------------------------------------------------------

    def add_round(self, state: CategoryState, units: int) -> None:
        """Ask for `units` more units, as the next round. Its parts that an earlier run wrote come from
        the cache; they always form a prefix (parts are written in unit order)."""
        name = state.category.name
        state.rounds.append(range(state.requested, state.requested + units))
        self.grow("prompts", units * self.unit_size)
        while state.filter_next < state.requested:
            first = state.filter_next
            if cache.prompt_part(name, first).rsplit("/", 1)[1] not in self.prompt_parts:
                return
            prompts, unit_list, drops = cache.read_prompts(self.storage, name, first)
            self.reused["prompt_parts"] += 1
            self.progress.advance(self.bars["prompts"], len(unit_list) * self.unit_size)
            self.stages.filter.remember(name, prompts)
            state.expand_next = state.filter_next = unit_list[-1] + 1
            by_unit: dict[int, list[Prompt]] = {unit: [] for unit in unit_list}
            for prompt in prompts:
                by_unit[prompt.unit].append(prompt)
            judged = [path for u in unit_list for path in self.judged_paths(state, u).values() if state.cached(path)]
            found = self.storage.read_many(judged)  # one concurrent fetch per part, not one request per unit
            for unit, unit_prompts in by_unit.items():
                self.unit_ready(state, unit, unit_prompts, Counter(drops.get(unit, {})),
                                {j: found[path] for j, path in self.judged_paths(state, unit).items() if path in found})

    def expand(self, state: CategoryState, unit: int) -> None:
        name = state.category.name
        if self.earlier_failures.get((name, unit), {}).get("stage") == ExpandStage.name:
            self.skip_failed(state, unit)
            self.stop_expanding(state)
            return
        requests = expand.unit_requests(state.category, self.config.seed, unit, self.unit_size)
        self.expanding += 1
        self.scheduler.submit("prompts", cache.unit_name(name, unit), ExpansionWork(state.category, requests),
                              self.priority(state, unit))

    def expanded(self, task: Task, answers: list) -> None:
        work: ExpansionWork = task.work
        state = self.states[work.category.name]
        if state.expansion_blocked or state.closed:
            self.expanding -= 1
            return
        state.answers[work.requests[0].unit] = answers
        self.progress.advance(self.bars["prompts"], len(answers))
        while state.filter_next in state.answers:  # unit order: which duplicate survives never depends on timing
            unit = state.filter_next
            state.filter_next += 1
            requests = expand.unit_requests(state.category, self.config.seed, unit, self.unit_size)
            self.scheduler.submit("filter", cache.unit_name(state.category.name, unit),
                                  FilterWork(state.category, state.round_of(unit), requests, state.answers.pop(unit)))

    def filtered(self, task: Task, result: tuple[list[Prompt], Counter]) -> None:
        work: FilterWork = task.work
        state, unit = self.states[work.category.name], work.requests[0].unit
        prompts, drops = result
        self.expanding -= 1
        part = state.part_of(unit)
        state.part_prompts.setdefault(part.start, []).extend(prompts)
        state.part_drops.setdefault(part.start, {})[unit] = dict(sorted(drops.items()))
        if unit == part[-1]:  # the part's last unit: filtered in order, so the whole part is
            name = state.category.name
            cache.write_prompts(self.storage, name, work.round, state.part_prompts.pop(part.start), list(part),
                                state.part_drops.pop(part.start))
            failpoints.reached("prompts.part_written", cache.unit_name(name, part.start))
        cached = [path for path in self.judged_paths(state, unit).values() if state.cached(path)]
        found = self.storage.read_many(cached)
        self.unit_ready(state, unit, prompts, drops,
                        {j: found[path] for j, path in self.judged_paths(state, unit).items() if path in found})

    # Candidates and verdicts -------------------------------------------------------------

    def judged_paths(self, state: CategoryState, unit: int) -> dict[str, str]:
        return {j: cache.judged_path(state.category.name, unit, j) for j in panel.judge_names(self.config.judge, state.category)}

    def unit_ready(self, state: CategoryState, unit: int, prompts: list[Prompt], drops: Counter,
                   judged: dict[str, bytes]) -> None:
        """A filtered unit: done when every judge's verdicts are cached (or it has no prompts), else waits
        to be admitted, with the verdicts of the judges that are cached."""
        if state.closed:
            return
        state.filter_drops[unit] = drops
        if not prompts:
            self.finish_unit(state, unit, [], [])
        elif len(judged) == len(panel.judge_names(self.config.judge, state.category)):
            self.reused["judged_units"] += 1
            self.grow("candidates", 2 * len(prompts), done=True)
            self.grow("judged", len(prompts))
            self.finish_unit(state, unit, prompts, panel.parse_unit(self.config.judge, state.category, judged)[1])
        else:
            state.prompts[unit] = prompts
            if judged:
                state.partly_judged[unit] = {j: cache.parse_judged(data)[1] for j, data in judged.items()}
            heapq.heappush(self.ready, (self.priority(state, unit), state.category.name, unit))

    def admit(self, state: CategoryState, unit: int) -> None:
        """Send a unit to the generators whose candidates are not cached yet (or straight to the judge)."""
        name, prompts = state.category.name, state.prompts[unit]
        if (name, unit) in self.earlier_failures:
            self.skip_failed(state, unit)
            return
        self.grow("candidates", 2 * len(prompts))
        self.grow("judged", len(prompts))
        by_id = {p.id: p for p in prompts}
        by_generator = specs_by_generator(self.config, prompts)
        missing = {}
        for generator, specs in by_generator.items():
            if state.cached(cache.candidates_path(name, unit, generator)):
                self.progress.advance(self.bars["candidates"], len(specs))
            else:
                missing[generator] = specs
        if len(missing) < len(by_generator):
            self.reused["candidate_units"] += 1
        self.in_flight[name, unit] = InFlight(list(by_generator), {g: len(specs) for g, specs in missing.items()},
                                              state.partly_judged.pop(unit, {}))
        for generator, specs in missing.items():
            texts = [generation_text(by_id[s.prompt_id], s) for s in specs]
            self.scheduler.submit(f"generate:{generator}", cache.unit_name(name, unit),
                                  GenerationWork(name, unit, specs, texts), self.priority(state, unit))
        if not missing:
            self.judge(state, unit)

    def generated(self, task: Task, count: int) -> None:
        work: GenerationWork = task.work
        unit = self.in_flight.get((work.category, work.unit))
        if unit is None:  # dropped: another generator gave up on it, or its category is full
            return
        self.progress.advance(self.bars["candidates"], unit.missing.pop(work.specs[0].generator))
        if not unit.missing:
            self.judge(self.states[work.category], work.unit)

    def judge(self, state: CategoryState, unit: int) -> None:
        """Send a generated unit to every judge whose verdicts on it are not cached yet."""
        if state.closed:
            self.drop(state, unit)
            return
        name, in_flight = state.category.name, self.in_flight[state.category.name, unit]
        for judge in panel.judge_names(self.config.judge, state.category):
            if judge not in in_flight.verdicts:
                self.scheduler.submit(f"judge:{judge}", cache.unit_name(name, unit),
                                      JudgeWork(state.category, unit, state.prompts[unit], in_flight.generators, judge),
                                      self.priority(state, unit))

    def judged_unit(self, task: Task, verdicts: list[Verdict]) -> None:
        """One judge's verdicts on a unit; the unit is done when every judge's are in."""
        work: JudgeWork = task.work
        in_flight = self.in_flight.get((work.category.name, work.unit))
        if in_flight is None:  # dropped: another judge gave up on it, or its category is full
            return
        in_flight.verdicts[work.judge] = verdicts
        if len(in_flight.verdicts) < len(panel.judge_names(self.config.judge, work.category)):
            return
        del self.in_flight[work.category.name, work.unit]
        self.done_this_run["judged"] += len(verdicts)
        self.finish_unit(self.states[work.category.name], work.unit, work.prompts,
                         panel.combine(self.config.judge, work.category, in_flight.verdicts))

    def finish_unit(self, state: CategoryState, unit: int, prompts: list[Prompt], verdicts: list[Verdict]) -> None:
        """A judged unit; counted when the judged prefix reaches it, unless the quota is filled by then."""
        state.prompts.pop(unit, None)
        self.progress.advance(self.bars["judged"], len(verdicts))
        if state.closed:
            return
        state.judged[unit] = UnitOutcome.of(verdicts, state.filter_drops.pop(unit), prompts)
        while state.prefix in state.judged:
            outcome = state.judged.pop(state.prefix)
            if state.short:
                state.count(state.prefix, outcome)
            state.prefix += 1
            if state.short:
                self.ask_for_more(state)
            elif not state.closed:
                self.close(state)
        self.write_ready_shards()

    def ask_for_more(self, state: CategoryState) -> None:
        """Add a round when the judged prefix says the units asked for will fall short.

        Decided from the prefix alone (once it covers half the units asked for), at every unit it
        grows by: the same decisions whatever the timing, while later units are still in flight.
        """
        asked = state.requested
        if len(state.rounds) >= self.config.prompts.max_rounds or 2 * state.prefix < asked:
            return
        rate = max(state.kept / (state.prefix * self.unit_size), MIN_KEEP_RATE)
        expected = state.kept + rate * (asked - state.prefix) * self.unit_size
        if expected < state.quota:
            self.add_round(state, math.ceil((state.quota - expected) / rate * 1.2 / self.unit_size))

    def close(self, state: CategoryState) -> None:
        """The judged prefix fills the category's quota: its later units are not part of the dataset.
        Their queued work is dropped for good (running calls finish and are cached); nothing more of
        the category is expanded, generated or judged."""
        state.closed = True
        name = state.category.name
        for stage, task in self.scheduler.cancel(lambda task: task.unit.startswith(f"{name}/")):
            if stage == ExpandStage.name:
                self.expanding -= 1
            elif (name, task.work.unit) in self.in_flight:
                self.drop(state, task.work.unit)
        self.expanding -= len(state.answers)
        state.answers.clear()
        state.filter_drops.clear()
        state.judged.clear()
        state.partly_judged.clear()

    def drop(self, state: CategoryState, unit: int) -> None:
        """An admitted unit of a closed category: no longer awaited."""
        in_flight = self.in_flight.pop((state.category.name, unit))
        self.grow("candidates", -sum(in_flight.missing.values()))
        self.grow("judged", -len(state.prompts.pop(unit)))

    # Failures ----------------------------------------------------------------------------

    def unit_failed(self, task: Task, failure: Failure) -> None:
        """A stage gave up on a unit: recorded in the root; the run goes on with the others."""
        name, unit = task.unit.rsplit("/u", 1)
        state, unit = self.states[name], int(unit)
        if failure.stage == ExpandStage.name:
            self.expanding -= 1
        elif self.in_flight.pop((name, unit), None) is None:  # a second generator of it, or a closed category
            return
        if state.closed:
            return
        cache.write_failure(self.storage, name, unit, failure.model_dump())
        state.failed[unit] = failure
        log.warning("%s; recorded in %s/%s", failure.line(), self.storage.url, cache.failure_path(name, unit))
        if failure.traceback:
            log.debug("%s on unit %s raised in %s:\n%s", failure.stage, unit, failure.actor, "\n".join(failure.traceback))
        if failure.stage == ExpandStage.name:
            self.stop_expanding(state)

    def stop_expanding(self, state: CategoryState) -> None:
        """A unit that cannot be expanded blocks its category's filter (unit order): later answers are
        dropped and no more units of it are expanded, so the other categories keep their share."""
        self.expanding -= len(state.answers)
        state.answers.clear()
        state.expansion_blocked = True

    def skip_failed(self, state: CategoryState, unit: int) -> None:
        record = self.earlier_failures[state.category.name, unit]
        state.failed[unit] = Failure(**record)

    # Shards ------------------------------------------------------------------------------

    def write_progress(self) -> None:
        now = time.time()
        record = {"started": self.started_at, "updated": now, "seconds": round(now - self.started_at, 3),
                  "this_run": dict(sorted(self.done_this_run.items())),
                  "shards": {"committed": len(self.committed), "planned": self.plan.num_shards}}
        self.storage.write_bytes(PROGRESS_JSON, json.dumps(record, indent=1).encode())

    def write_ready_shards(self) -> None:
        # A set's shards need ever more pairs of each of its categories, so they become ready in order.
        for queue in self.pending:
            while queue and all(self.states[c].kept >= n for c, n in self.needed[queue[0]].items()):
                self.write_shard(queue.popleft())

    def write_shard(self, shard: int) -> None:
        members = [(c, self.states[c].kept_units[o], self.states[c].pair_id(o)) for c, o in self.plan.slots(shard)]
        self.scheduler.submit("shards", self.plan.shard_name(shard), ShardWork(self.plan.shard_name(shard), members), (shard,))

    def shard_written(self, task: Task, record: dict) -> None:
        self.committed[record["shard"]] = record
        self.progress.advance(self.bars["shards"])
        self.done_this_run.update(shards=1, pairs=record["pairs"])
        self.write_progress()


class UnitsFailed(VipoError):
    """Units a stage gave up on; the rest of the run is done and committed."""

    def __init__(self, root: str, failures: list[Failure]):
        shown = "; ".join(f.line() for f in failures[:5])
        more = f"; and {len(failures) - 5} more" if len(failures) > 5 else ""
        super().__init__(f"{len(failures)} unit(s) failed (recorded under {root}/{cache.FAILED_DIR}; "
                         f"`vipo-build run CONFIG --retry-failed` retries them): {shown}{more}")
