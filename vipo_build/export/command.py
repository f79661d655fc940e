"""`vipo-build export ROOT OUT --to pickapic|hf|video`: a root's kept pairs in a trainer's format, split by subject."""

from __future__ import annotations

import json
import tempfile
from collections import Counter

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from vipo_build.errors import VipoError
from vipo_build.export.formats import (PICKAPIC_SCHEMA, VIDEO_SCHEMA, SplitFiles, hf_features, hf_row, pickapic_row,
                                       video_row)
from vipo_build.export.source import read_index, samples
from vipo_build.export.split import achieved, assign, parse_split, targets
from vipo_build.layout import SUMMARY_JSON
from vipo_build.root import open_root, read_run_json
from vipo_build.runtime.storage import Storage

FORMATS = {"pickapic": ("image", pickapic_row), "hf": ("image", hf_row), "video": ("video", video_row)}
EXPORT_JSON = "export.json"


def export(root: str, out: str, to: str, split: str, min_vote_share: float | None, categories: list[str] | None,
           rows_per_file: int, console: Console) -> dict:
    if to not in FORMATS:
        raise VipoError(f"--to: {to!r} is not a format; choose one of {', '.join(FORMATS)}")
    modality, make_row = FORMATS[to]
    shares = parse_split(split)
    storage = open_root(root)
    config, recorded = read_run_json(storage)
    names = categories or [c for c in config.quotas() if config.category(c).modality == modality]
    for name in names:
        if name not in config.quotas():
            raise VipoError(f"--categories: {name!r} is not a category of {root} (it has: {', '.join(config.quotas())})")
        if config.category(name).modality != modality:
            raise VipoError(f"--categories: {name} is a {config.category(name).modality} category; --to {to} exports "
                            f"{modality} pairs" + (" (use --to video)" if modality == "image" else ""))
    target = Storage(out)
    if target.fs.exists(target.root) and target.fs.ls(target.root):
        raise VipoError(f"{out}: not empty; export into a new folder")

    index = read_index(storage, modality, names, min_vote_share)
    if not index.num_rows:
        raise VipoError(f"{root}: no committed {modality} pairs of {', '.join(names)}"
                        + (f" with a vote share of at least {min_vote_share:g}" if min_vote_share is not None else ""))
    pair_categories = index["category"].to_pylist()
    pair_splits = assign(pair_categories, index["seed_subject"].to_pylist(), shares, config.seed)
    schema = hf_features().arrow_schema if to == "hf" else VIDEO_SCHEMA if to == "video" else PICKAPIC_SCHEMA
    columns = [TextColumn("export {task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()]
    with SplitFiles(target, schema, rows_per_file) as files, Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task(to, total=index.num_rows)
        for position, row, sample in samples(storage, index):
            files.add(pair_splits[position], make_row(row, sample, config.seed))
            bar.advance(task)
        written = files.close()

    wanted = targets(Counter(pair_categories), shares)
    got = achieved(pair_categories, pair_splits)
    summary = {
        "format": to, "root": root, "config_hash": recorded.get("config_hash"), "seed": config.seed, "pairs": index.num_rows,
        "filters": {"categories": names, "min_vote_share": min_vote_share},
        "splits": {s: {"pairs": sum(got.get(s, {}).values()), "categories": got.get(s, {}), "targets": wanted[s],
                       "files": written.get(s, [])} for s in shares},
        "generators": {"chosen": dict(Counter(index["chosen_generator"].to_pylist()).most_common()),
                       "rejected": dict(Counter(index["rejected_generator"].to_pylist()).most_common())},
    }
    target.write_bytes(EXPORT_JSON, json.dumps(summary, indent=1).encode())
    if to == "hf":
        save_hf(target, summary, storage, config.name)
    show(summary, out, console)
    return summary


def save_hf(target: Storage, summary: dict, root: Storage, name: str) -> None:
    """The same splits as a `datasets` dataset on disk (`disk/`), and a dataset card (README.md)."""
    from datasets import DatasetDict, load_dataset

    files = {s: [target.path(f) for f in split["files"]] for s, split in summary["splits"].items() if split["files"]}
    with tempfile.TemporaryDirectory(prefix="vipo-export-") as cache:
        dataset: DatasetDict = load_dataset("parquet", data_files=files, features=hf_features(), cache_dir=cache)
        dataset.save_to_disk(target.url.rstrip("/") + "/disk")
    summary_json = json.loads(root.read_bytes(SUMMARY_JSON)) if root.exists(SUMMARY_JSON) else {}
    target.write_bytes("README.md", dataset_card(summary, summary_json.get("agreement"), name).encode())


def dataset_card(summary: dict, agreement: dict | None, name: str) -> str:
    splits = summary["splits"]
    lines = ["---", "configs:", "- config_name: default", "  data_files:"]
    for split, info in splits.items():
        if info["files"]:
            lines += [f"  - split: {split}", f"    path: data/{split}-*.parquet"]
    lines += ["task_categories:", "- text-to-image", "tags:", "- preference", "- dpo", "---", "",
              f"# {name}: image preference pairs", "",
              f"{summary['pairs']:,} pairs judged by a vision-language model (both presentation orders, several votes "
              "each), exported by vipo-build. `chosen` won the judge's vote; `vote_share` is the share of votes it got.",
              "", f"Config hash: `{summary['config_hash']}`; split seed {summary['seed']}; splits by seed subject "
              "(no subject or prompt in two splits).", "", "## Pairs per category and split", "",
              "| category | " + " | ".join(splits) + " |", "|---|" + "---:|" * len(splits)]
    for category in summary["filters"]["categories"]:
        lines.append(f"| {category} | " + " | ".join(str(info["categories"].get(category, 0)) for info in splits.values()) + " |")
    lines += ["", "## Generators", "", "| generator | chosen | rejected |", "|---|---:|---:|"]
    generators = summary["generators"]
    for generator in sorted(set(generators["chosen"]) | set(generators["rejected"])):
        lines.append(f"| {generator} | {generators['chosen'].get(generator, 0)} | {generators['rejected'].get(generator, 0)} |")
    if agreement:
        lines += ["", "## Judge agreement (the run's judged pairs up to each quota)", "",
                  "| category | judged | order consistency | Fleiss' kappa | mean vote share |", "|---|---:|---:|---:|---:|"]
        for category, a in {**agreement["categories"], "all categories of the run": agreement["overall"]}.items():
            if category not in agreement["categories"] or category in summary["filters"]["categories"]:
                lines.append(f"| {category} | {a['pairs']} | {_figure(a.get('order_consistency_rate'))} | "
                             f"{_figure(a.get('fleiss_kappa'), '{:.3f}')} | {_figure(a.get('mean_vote_share'), '{:.3f}')} |")
    return "\n".join(lines) + "\n"


def _figure(value, form: str = "{:.1%}") -> str:
    return "n/a" if value is None else form.format(value)


def show(summary: dict, out: str, console: Console) -> None:
    from rich.table import Table

    table = Table(title=f"{summary['pairs']:,} pairs exported as {summary['format']} -> {out}")
    splits = summary["splits"]
    table.add_column("category")
    for split in splits:
        table.add_column(f"{split} (target)", justify="right")
    for category in summary["filters"]["categories"]:
        table.add_row(category, *(f"{info['categories'].get(category, 0)} ({info['targets'][category]})" for info in splits.values()))
    console.print(table)
