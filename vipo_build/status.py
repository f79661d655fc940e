"""`vipo-build status`: how far a dataset root is, read from what the run wrote (no Ray, no models)."""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timezone

import pyarrow.parquet as pq

from pydantic import Field
from rich.console import Console
from rich.table import Table

from vipo_build import drops
from vipo_build.errors import VipoError
from vipo_build.judge.agreement import AgreementTally, DatasetAgreement
from vipo_build.judge import panel
from vipo_build.runtime import cache
from vipo_build.runtime.storage import Storage
from vipo_build.shards.plan import ShardPlan
from vipo_build.layout import LOCK, PROGRESS_JSON, RUN_JSON, SHARDS_DIR, SUMMARY_JSON
from vipo_build.root import read_run_json
from vipo_build.shards.writer import committed_shards, pairs_written
from vipo_build.strict import FrozenModel
from vipo_build.summary import drop_reasons


class StageProgress(FrozenModel):
    done: int
    total: int


class ShardState(FrozenModel):
    planned: int
    complete: int = Field(description="Shards with a commit record.")
    incomplete: list[str] = Field(description="Shards with data but no commit record (a run was stopped while writing them).")
    missing: int = Field(description="Shards not started.")


class CategoryStatus(FrozenModel):
    planned: int = Field(description="The category's quota.")
    written: int = Field(description="Pairs in committed shards.")
    kept: int = Field(description="Pairs the judge kept, from the caches (the balance may leave some out).")
    units_judged: int
    expansion_rounds: int
    dropped: dict[str, int] = Field(description="Judged pairs dropped, by reason (vipo_build.drops order).")


class Rate(FrozenModel):
    pairs_per_hour: float
    shards_per_hour: float
    eta_seconds: int = Field(description="Time left for the shards not committed, at this rate.")
    measured_at: str = Field(description="UTC time of the last progress record.")


class PoolStats(FrozenModel):
    """A stage pool's figures from the last run summary."""

    items: int
    wall_seconds: float
    items_per_s: float
    busy_seconds: float
    actor_seconds: float
    busy_fraction: float
    peak_queued: int


class CategoryDiversity(FrozenModel):
    distinct_subjects: int
    facet_combinations: int


class RootStatus(FrozenModel):
    """What `vipo-build status --json` prints and the audit reads: how far a root is."""

    root: str
    name: str
    running: bool = Field(description="A run holds the root's lock.")
    stages: dict[str, StageProgress] = Field(
        description="prompts: accepted of requested; candidates and judged: work units of those expanded so far; "
        "shards: committed of planned.")
    shards: ShardState
    categories: dict[str, CategoryStatus]
    rate: Rate | None = Field(description="The current (or last) run's throughput; null before its first shard.")
    last_run_stages: dict[str, PoolStats]
    diversity: dict[str, CategoryDiversity] = Field(
        description="Of the pairs within each quota, as the last run counted them.")
    judge: DatasetAgreement | None = Field(None, description="With --judge: agreement over every judged pair.")


def root_status(storage: Storage, judge: bool = False) -> RootStatus:
    """How far the root is; with `judge`, also the judge's agreement over every judged pair, per
    category and overall."""
    if not storage.exists(RUN_JSON):
        raise VipoError(f"{storage.url}: no run.json: not a vipo-build dataset root (or not started yet)")
    config, _ = read_run_json(storage)
    plan = ShardPlan.of(config)
    committed = committed_shards(storage)
    with_data = {n.rsplit(".", 1)[0] for n in storage.list(SHARDS_DIR) if not n.endswith(".json")}
    written = pairs_written(committed)
    categories = {}
    tallies: dict[str, AgreementTally] = {}
    stages = {stage: Counter() for stage in ("prompts", "candidates", "judged")}
    parts = storage.list(cache.PROMPTS_DIR, ".parquet")
    for name, quota in plan.quotas.items():
        prompts, units, rounds = 0, 0, set()
        for part in (p for p in parts if p.startswith(f"part-{name}-u")):
            with storage.fs.open(storage.path(f"{cache.PROMPTS_DIR}/{part}")) as f:  # reads the footer only
                metadata = pq.ParquetFile(f).metadata
            prompts += metadata.num_rows
            units += len(json.loads(metadata.metadata[b"units"]))
            rounds.add(metadata.metadata[b"round"])
        cached = storage.list(cache.category_dir(name))
        judged = panel.judged_units(storage, config.judge, config.category(name), cached)
        reasons: Counter = Counter()
        tallies[name] = AgreementTally()
        for verdicts in judged.values():
            reasons.update(v.reason for v in verdicts)
            for verdict in verdicts if judge else ():
                tallies[name].add(verdict)
        stages["prompts"].update(done=prompts, total=units * config.generate.unit_size)
        # a unit has one candidates file per generator it uses
        # (or was: gc deletes the candidates of judged units whose pairs are all committed)
        with_candidates = {n.split(".", 1)[0] for n in cached if n.endswith((".candidates.parquet", ".judged.json"))}
        stages["candidates"].update(done=len(with_candidates), total=units)
        stages["judged"].update(done=len(judged), total=units)
        categories[name] = CategoryStatus(
            planned=quota, written=written.get(name, 0), kept=reasons.pop("kept", 0), units_judged=len(judged),
            expansion_rounds=len(rounds), dropped=drops.in_order(reasons))
    names = [plan.shard_name(s) for s in range(plan.num_shards)]
    summary = json.loads(storage.read_bytes(SUMMARY_JSON)) if storage.exists(SUMMARY_JSON) else None
    return RootStatus(
        root=storage.url,
        name=config.name,
        running=storage.exists(LOCK),
        stages={**{stage: StageProgress(**c) for stage, c in stages.items()},
                "shards": StageProgress(done=len(committed), total=plan.num_shards)},
        shards=ShardState(planned=plan.num_shards, complete=len(committed),
                          incomplete=sorted(n for n in with_data if n not in committed),
                          missing=sum(1 for n in names if n not in committed and n not in with_data)),
        categories=categories,
        rate=rate(storage, plan.num_shards - len(committed)),
        last_run_stages=summary["stages"] if summary else {},
        diversity={name: {k: c[k] for k in CategoryDiversity.model_fields}
                   for name, c in summary["categories"].items() if "distinct_subjects" in c} if summary else {},
        judge=DatasetAgreement(categories={c: t.result() for c, t in tallies.items()},
                               overall=AgreementTally.merged(tallies.values()).result()) if judge else None,
    )


def rate(storage: Storage, shards_left: int) -> Rate | None:
    """Throughput of the current (or last) run and the time left at that rate; None before its first shard."""
    if not storage.exists(PROGRESS_JSON):
        return None
    progress = json.loads(storage.read_bytes(PROGRESS_JSON))
    seconds, done = progress["seconds"], progress["this_run"]
    if not seconds or not done.get("shards"):
        return None
    return Rate(
        pairs_per_hour=round(done["pairs"] / seconds * 3600, 1),
        shards_per_hour=round(done["shards"] / seconds * 3600, 2),
        eta_seconds=round(shards_left * seconds / done["shards"]),
        measured_at=datetime.fromtimestamp(progress["updated"], timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    )


def show(status: RootStatus, console: Console) -> None:
    shards = status.shards
    console.print(
        f"{status.name} at {status.root} ({'running' if status.running else 'not running'}): "
        f"{shards.complete}/{shards.planned} shards complete, "
        f"{len(shards.incomplete)} incomplete, {shards.missing} not started"
    )
    console.print("  ".join(f"{stage} {s.done}/{s.total}" for stage, s in status.stages.items()))
    if r := status.rate:
        eta = f"{r.eta_seconds // 3600}h{r.eta_seconds % 3600 // 60:02d}m"
        console.print(f"{r.pairs_per_hour:.0f} pairs/h, {r.shards_per_hour:.1f} shards/h (at {r.measured_at}); "
                      f"ETA at that rate: {eta}")
    reasons, caption = drop_reasons(c.dropped for c in status.categories.values())
    table = Table(caption=caption)
    table.add_column("category", no_wrap=True)
    for column in ("planned", "written", "kept", "units", "rounds", *(f"#{i}" for i in range(1, len(reasons) + 1))):
        table.add_column(column, justify="right")
    for name, c in status.categories.items():
        table.add_row(name, str(c.planned), str(c.written), str(c.kept), str(c.units_judged),
                      str(c.expansion_rounds), *(str(c.dropped.get(r, 0)) for r in reasons))
    console.print(table)
    if status.diversity:
        console.print("last run, distinct seed subjects / facet combinations of the kept pairs: " + ", ".join(
            f"{name} {d.distinct_subjects}/{d.facet_combinations}" for name, d in status.diversity.items()),
            soft_wrap=True)
    for stage, s in status.last_run_stages.items():
        console.print(f"last run, {stage}: {s.items} items, {s.items_per_s:.2f}/s, busy {s.busy_fraction:.0%}")
