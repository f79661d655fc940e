"""`vipo-build status`: how far a dataset root is, read from what the run wrote (no Ray, no models)."""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timezone

import pyarrow.parquet as pq

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
from vipo_build.summary import drop_reasons


def root_status(storage: Storage, judge: bool = False) -> dict:
    """How far the root is; with `judge`, also the judge's agreement over every judged pair, per
    category and overall (a DatasetAgreement as a dict, under "judge")."""
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
        categories[name] = {
            "planned": quota,
            "written": written.get(name, 0),
            "kept": reasons.pop("kept", 0),
            "units_judged": len(judged),
            "expansion_rounds": len(rounds),
            "dropped": drops.in_order(reasons),
        }
    names = [plan.shard_name(s) for s in range(plan.num_shards)]
    summary = json.loads(storage.read_bytes(SUMMARY_JSON)) if storage.exists(SUMMARY_JSON) else None
    return {
        "root": storage.url,
        "name": config.name,
        "running": storage.exists(LOCK),
        "stages": {
            # prompts: accepted of requested; candidates and judged: work units of those expanded so far
            **{stage: {"done": c["done"], "total": c["total"]} for stage, c in stages.items()},
            "shards": {"done": len(committed), "total": plan.num_shards},
        },
        "shards": {
            "planned": plan.num_shards,
            "complete": len(committed),
            "incomplete": sorted(n for n in with_data if n not in committed),
            "missing": sum(1 for n in names if n not in committed and n not in with_data),
        },
        "categories": categories,
        "rate": rate(storage, plan.num_shards - len(committed)),
        "last_run_stages": summary["stages"] if summary else {},
        # of the pairs within each quota, as the last run counted them
        "diversity": {name: {k: c[k] for k in ("distinct_subjects", "facet_combinations")}
                      for name, c in summary["categories"].items() if "distinct_subjects" in c} if summary else {},
    } | ({"judge": DatasetAgreement(categories={c: t.result() for c, t in tallies.items()},
                                    overall=AgreementTally.merged(tallies.values()).result()).model_dump()} if judge else {})


def rate(storage: Storage, shards_left: int) -> dict | None:
    """Throughput of the current (or last) run and the time left at that rate; None before its first shard."""
    if not storage.exists(PROGRESS_JSON):
        return None
    progress = json.loads(storage.read_bytes(PROGRESS_JSON))
    seconds, done = progress["seconds"], progress["this_run"]
    if not seconds or not done.get("shards"):
        return None
    return {
        "pairs_per_hour": round(done["pairs"] / seconds * 3600, 1),
        "shards_per_hour": round(done["shards"] / seconds * 3600, 2),
        "eta_seconds": round(shards_left * seconds / done["shards"]),
        "measured_at": datetime.fromtimestamp(progress["updated"], timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def show(status: dict, console: Console) -> None:
    shards = status["shards"]
    console.print(
        f"{status['name']} at {status['root']} ({'running' if status['running'] else 'not running'}): "
        f"{shards['complete']}/{shards['planned']} shards complete, "
        f"{len(shards['incomplete'])} incomplete, {shards['missing']} not started"
    )
    console.print("  ".join(f"{stage} {s['done']}/{s['total']}" for stage, s in status["stages"].items()))
    if status["rate"]:
        r = status["rate"]
        eta = f"{r['eta_seconds'] // 3600}h{r['eta_seconds'] % 3600 // 60:02d}m"
        console.print(f"{r['pairs_per_hour']:.0f} pairs/h, {r['shards_per_hour']:.1f} shards/h (at {r['measured_at']}); "
                      f"ETA at that rate: {eta}")
    reasons, caption = drop_reasons(status["categories"])
    table = Table(caption=caption)
    table.add_column("category", no_wrap=True)
    for column in ("planned", "written", "kept", "units", "rounds", *(f"#{i}" for i in range(1, len(reasons) + 1))):
        table.add_column(column, justify="right")
    for name, c in status["categories"].items():
        table.add_row(name, str(c["planned"]), str(c["written"]), str(c["kept"]), str(c["units_judged"]),
                      str(c["expansion_rounds"]), *(str(c["dropped"].get(r, 0)) for r in reasons))
    console.print(table)
    if status["diversity"]:
        console.print("last run, distinct seed subjects / facet combinations of the kept pairs: " + ", ".join(
            f"{name} {d['distinct_subjects']}/{d['facet_combinations']}" for name, d in status["diversity"].items()),
            soft_wrap=True)
    for stage, s in status["last_run_stages"].items():
        console.print(f"last run, {stage}: {s['items']} items, {s['items_per_s']:.2f}/s, busy {s['busy_fraction']:.0%}")
