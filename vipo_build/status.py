"""`vipo-build status`: how far a dataset root is, read from what the run wrote (no Ray, no models)."""

from __future__ import annotations

import json
from collections import Counter

from rich.console import Console
from rich.table import Table

from vipo_build.errors import VipoError
from vipo_build.runtime import cache
from vipo_build.runtime.storage import Storage
from vipo_build.shards.plan import ShardPlan
from vipo_build.run import RUN_JSON, read_run_json
from vipo_build.shards.writer import SHARDS_DIR, committed_shards, pairs_written


def root_status(storage: Storage) -> dict:
    if not storage.exists(RUN_JSON):
        raise VipoError(f"{storage.url}: no run.json: not a vipo-build dataset root (or not started yet)")
    config, _ = read_run_json(storage)
    plan = ShardPlan(config.shards.name, config.quotas(), config.shards.pairs_per_shard)
    committed = committed_shards(storage)
    with_data = {n.rsplit(".", 1)[0] for n in storage.list(SHARDS_DIR) if not n.endswith(".json")}
    written = pairs_written(committed)
    categories = {}
    for name, quota in plan.quotas.items():
        units = storage.list(f"cache/{name}", ".judged.json")
        reasons: Counter = Counter()
        for unit in units:
            prompts_and_verdicts = json.loads(storage.read_bytes(f"cache/{name}/{unit}"))
            reasons.update(v["reason"] for v in prompts_and_verdicts["verdicts"])
        rounds = [n for n in storage.list(cache.PROMPTS_DIR, ".parquet") if n.startswith(f"part-{name}-r")]
        categories[name] = {
            "planned": quota,
            "written": written.get(name, 0),
            "kept": reasons.pop("kept", 0),
            "units_judged": len(units),
            "expansion_rounds": len(rounds),
            "dropped": dict(sorted(reasons.items())),
        }
    names = [plan.shard_name(s) for s in range(plan.num_shards)]
    summary = json.loads(storage.read_bytes("summary.json")) if storage.exists("summary.json") else None
    return {
        "root": storage.url,
        "name": config.name,
        "shards": {
            "planned": plan.num_shards,
            "complete": len(committed),
            "incomplete": sorted(n for n in with_data if n not in committed),
            "missing": sum(1 for n in names if n not in committed and n not in with_data),
        },
        "categories": categories,
        "last_run_stages": summary["stages"] if summary else {},
    }


def show(status: dict, console: Console) -> None:
    shards = status["shards"]
    console.print(
        f"{status['name']} at {status['root']}: {shards['complete']}/{shards['planned']} shards complete, "
        f"{len(shards['incomplete'])} incomplete, {shards['missing']} not started"
    )
    table = Table()
    for column in ("category", "planned", "written", "kept", "units judged", "rounds", "dropped"):
        table.add_column(column, justify="left" if column in ("category", "dropped") else "right")
    for name, c in status["categories"].items():
        dropped = ", ".join(f"{k} {v}" for k, v in c["dropped"].items()) or "-"
        table.add_row(name, str(c["planned"]), str(c["written"]), str(c["kept"]), str(c["units_judged"]),
                      str(c["expansion_rounds"]), dropped)
    console.print(table)
    for stage, s in status["last_run_stages"].items():
        console.print(f"last run, {stage}: {s['items']} items, {s['items_per_s']:.2f}/s, busy {s['busy_fraction']:.0%}")
