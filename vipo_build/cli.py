"""The `vipo-build` command line."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from vipo_build.calibration import DEFAULT_GOLD_FLOOR
from vipo_build.errors import VipoError
from vipo_build.layout import RUN_JSON, SUMMARY_JSON

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
models_app = typer.Typer(no_args_is_help=True, help="Models the pipelines use.")
app.add_typer(models_app, name="models")
console = Console(soft_wrap=True)  # messages stay on one line; tables still fit the terminal


@app.callback()
def options(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Also show each call sent to an actor, its units and time."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Show warnings and errors only: no progress bars or notes."),
) -> None:
    """Options of every command (before its name: `vipo-build -q run CONFIG`)."""
    from vipo_build import logs

    if verbose and quiet:
        _fail(VipoError("--verbose and --quiet: choose one"))
    logs.configure(console, 1 if verbose else -1 if quiet else 0)


def _fail(err: VipoError) -> None:
    """One line on stderr; exit 1 when the run did all it could but some units failed, else 2 (bad input)."""
    from vipo_build.run import UnitsFailed

    Console(stderr=True).print(f"error: {err}", markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(1 if isinstance(err, UnitsFailed) else 2)


@app.command()
def run(
    config: Path = typer.Argument(..., help="Pipeline YAML, e.g. pipelines/tiny.yaml."),
    out: Optional[str] = typer.Option(None, "--out", help="Dataset root (path or fsspec URL); default: the config's output."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Validate and print the plan without loading any model."),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="Retry the units an earlier run recorded as failed."),
    gc: bool = typer.Option(False, "--gc", help="When every shard is committed, delete the candidate caches (as `vipo-build gc`)."),
) -> None:
    """Run (or resume) a pipeline: prompts -> candidates -> judged pairs -> committed shards."""
    from vipo_build.run import prepare, run as run_pipeline

    try:
        if dry_run:
            prepared = prepare(config, out)
            show_plan(*prepared)
            if prepared[0].ray.cluster_gpus:  # sized for a cluster: what it will cost there
                from vipo_build.cost_plan import show

                resolved, costs = cost_plan_of(config, None, None, None)
                show(costs, resolved, console)
            return
        run_pipeline(config, out, console, retry_failed=retry_failed)
        if gc:
            from vipo_build.root import open_root
            from vipo_build.runtime import cache_gc

            console.print(cache_gc.describe(cache_gc.collect(open_root(prepare(config, out)[2])), dry_run=False))
    except VipoError as err:
        _fail(err)


@app.command("gc")
def gc_command(
    root: str = typer.Argument(..., help="Dataset root (path or fsspec URL)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print what would be deleted; delete nothing."),
) -> None:
    """Delete the candidate caches no run will read again (their pairs are all in committed shards, or dropped)."""
    from vipo_build.root import open_root
    from vipo_build.runtime import cache_gc
    from vipo_build.runtime.lock import writer_lock

    try:
        storage = open_root(root)
        if not storage.exists(RUN_JSON):
            raise VipoError(f"{root}: no run.json: not a vipo-build dataset root (or not started yet)")
        if dry_run:
            garbage = cache_gc.collect(storage, dry_run=True)
        else:
            with writer_lock(storage):  # not while a run writes the root
                garbage = cache_gc.collect(storage)
        console.print(cache_gc.describe(garbage, dry_run))
    except VipoError as err:
        _fail(err)


@app.command()
def plan(
    config: Path = typer.Argument(..., help="Pipeline YAML, e.g. pipelines/image_1m.yaml."),
    gpus: Optional[int] = typer.Option(None, "--gpus", min=1, help="GPUs to balance the pools on; default: ray.cluster_gpus."),
    gpu_memory_gb: Optional[float] = typer.Option(None, "--gpu-memory-gb", min=1, help="Memory of one GPU; default: ray.gpu_memory_gb."),
    from_root: Optional[str] = typer.Option(None, "--from-root", help="Root of an earlier or pilot run: its measured rates replace the cost table's."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON for machines."),
) -> None:
    """What a config costs (GPU-hours per stage, wall clock, storage, requests) and the pool sizes that balance it on N GPUs."""
    try:
        found = cost_plan_of(config, gpus, gpu_memory_gb, from_root)
    except VipoError as err:
        _fail(err)
    from vipo_build.cost_plan import show, to_json

    if as_json:
        print(to_json(found[1]))
    else:
        show(found[1], found[0], console)


def cost_plan_of(config_path: Path, gpus: int | None, gpu_memory_gb: float | None, from_root: str | None):
    """(config, cost plan) for the plan command and the dry run."""
    from vipo_build.config import load_config
    from vipo_build.cost_plan import make_plan, measured_rates
    from vipo_build.root import open_root

    config, _ = load_config(config_path)
    gpus = gpus or config.ray.cluster_gpus
    if gpus is None:
        raise VipoError(f"{config_path}: how many GPUs? give --gpus, or set ray.cluster_gpus in the config")
    measured = {}
    if from_root:
        storage = open_root(from_root)
        if not storage.exists(SUMMARY_JSON):
            raise VipoError(f"{from_root}: no summary.json: not a finished (or stopped) run's root")
        measured = measured_rates(json.loads(storage.read_bytes(SUMMARY_JSON)), config)
    return config, make_plan(config, gpus, gpu_memory_gb or config.ray.gpu_memory_gb, config.ray.cluster_cpus, measured)


def show_plan(config, plan, root: str) -> None:
    sets = ", ".join(f"{s.name} {s.num_shards:,}" for s in plan.sets)
    table = Table(title=f"{config.name}: {plan.total_pairs:,} pairs in {plan.num_shards:,} shards ({sets}) -> {root}")
    from vipo_build.prompts.expand import first_round_draws

    for column in ("category", "modality", "pairs", "share", "per shard", "first-round prompts", "distinct draws"):
        table.add_column(column, justify="left" if column in ("category", "modality") else "right", no_wrap=column == "category")
    unit = config.generate.unit_size
    repeated = []
    for name, pairs in plan.quotas.items():
        per_shard = plan.per_shard(name)
        units = config.first_round_units(pairs)
        distinct = first_round_draws(config.category(name), config.seed, units, unit,
                                     config.prompts.subjects.share if config.prompts.subjects else None)
        if distinct < units * unit:
            repeated.append(f"{name} {units * unit - distinct:,}")
        table.add_row(name, config.category(name).modality, f"{pairs:,}", f"{pairs / plan.total_pairs:.1%}",
                      f"{per_shard.min()}-{per_shard.max()}", f"{units * unit:,}", f"{distinct:,}")
    console.print(table)
    if repeated:
        console.print(f"warning: the first round draws some library seed subject and facet values more than once "
                      f"(repeated requests: {', '.join(repeated)}); add seeds or facet values to those categories, "
                      "or raise prompts.subjects.share",
                      markup=False, soft_wrap=True)
    generators = ", ".join(f"{g.name} ({g.modality}, {g.model})" for g in config.generate.generators)
    console.print(f"generators: {generators}", soft_wrap=True)
    judges = ", ".join(f"{e.name} ({e.engine.model})" for _, e in config.judges_at_work())
    rule = f", combined by {config.judge.combine}" if config.combines_judges() else ""
    console.print(f"judge: {judges}, {config.judge.votes} votes x 2 orders each, threshold {config.judge.threshold}{rule}",
                  soft_wrap=True)
    console.print(f"prompt LLM: {config.prompts.engine.model}", soft_wrap=True)
    show_judge_views(config)
    show_pools(config)


def show_judge_views(config) -> None:
    """What each judge sees of each modality the config generates, and its visual tokens per request (two candidates)."""
    from vipo_build.cost_plan import request_tokens
    from vipo_build.judge.budget import sampled_frames, view_kind

    modalities = sorted({config.category(c).modality for c in config.categories})
    j = config.judge
    for _, engine in config.judges_at_work():
        seen = []
        for modality in (m for m in modalities if m in engine.modalities):
            kind, output = view_kind(engine, modality), config.output_for(modality)
            if kind == "image":
                how = f"{j.image_size} px"
            elif kind == "contact_sheet":
                how = f"{min(j.video_frames, output.frames)} frames tiled in {j.image_size} px"
            else:
                how = f"{sampled_frames(output.frames, output.fps, j)} frames at {j.video_fps:g} fps, {j.video_size} px"
            seen.append(f"{modality} as {kind.replace('_', ' ')} ({how}): {request_tokens(config, engine, modality):,} "
                        "visual tokens a request")
        console.print(f"judge {engine.name} sees " + "; ".join(seen), soft_wrap=True)


def show_pools(config) -> None:
    """What each pool asks for; every pool runs for the whole run, so the cluster must hold their sum."""
    from vipo_build.preflight import pool_asks

    asks = pool_asks(config)
    table = Table(title="Pools (all up at once; a run refuses a cluster that cannot hold their sum)")
    for column in ("pool", "actors", "GPUs/actor", "CPUs/actor", "GPUs", "CPUs", "weights GB"):
        table.add_column(column, justify="left" if column == "pool" else "right")
    for a in asks:
        table.add_row(a.name, str(a.pool.actors), f"{a.pool.num_gpus:g}", f"{a.pool.num_cpus:g}", f"{a.gpus:g}",
                      f"{a.cpus:g}", f"{a.weights_gb:g}" if a.weights_gb else "-")
    table.add_row("total", "", "", "", f"{sum(a.gpus for a in asks):g}", f"{sum(a.cpus for a in asks):g}", "")
    console.print(table)


@app.command()
def status(
    root: str = typer.Argument(..., help="Dataset root (path or fsspec URL)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON for machines."),
) -> None:
    """Shards complete/incomplete/not started, pairs per category, drops by reason."""
    from vipo_build.root import open_root
    from vipo_build.status import root_status, show

    try:
        report = root_status(open_root(root))
    except VipoError as err:
        _fail(err)
    if as_json:
        typer.echo(report.model_dump_json(indent=1))
    else:
        show(report, console)


@app.command()
def verify(
    root: str = typer.Argument(..., help="Dataset root (path or fsspec URL)."),
    deep: bool = typer.Option(False, "--deep", help="Also decode every sample (images, clips, json)."),
    repair: bool = typer.Option(False, "--repair", help="Move bad shards to ROOT/quarantine/ so the next run rebuilds them."),
) -> None:
    """Check every shard against its commit record (sizes, sha256, tar <-> manifest keys); exit 1 if any is bad."""
    from vipo_build.root import open_root
    from vipo_build.shards.verify import quarantine, verify as verify_root

    try:
        storage = open_root(root)
    except VipoError as err:
        _fail(err)
    report = verify_root(storage, deep=deep)
    for shard, problems in report.bad.items():
        for problem in problems:
            console.print(f"BAD {shard}: {problem}", markup=False)
        if repair:
            console.print(f"moved aside: {', '.join(quarantine(storage, shard))}", markup=False)
    console.print(f"{len(report.good)} shards good, {len(report.bad)} bad, {len(report.unwritten)} planned but not written yet")
    if report.bad:
        raise typer.Exit(1)


@app.command()
def audit(
    root: str = typer.Argument(..., help="Dataset root (path or fsspec URL)."),
    tolerance: float = typer.Option(1.0, "--tolerance", min=0,
                                    help="Largest allowed deviation of a category's share from the plan, in percentage points (run-wide and per shard)."),
    compare: Optional[str] = typer.Option(None, "--compare", help="A second root, audited the same way and shown side by side."),
) -> None:
    """Balance and agreement of the committed shards against the plan; reports in ROOT/reports/; exit 1 naming each offender."""
    from vipo_build.audit.command import audit as audit_root

    try:
        code = audit_root(root, tolerance, compare, console)
    except VipoError as err:
        _fail(err)
    raise typer.Exit(code)


@app.command()
def calibrate(
    root: str = typer.Argument(..., help="Dataset root (path or fsspec URL)."),
    labels: Optional[str] = typer.Option(None, "--labels", help="The label database `vipo-build label` writes (SQLite), "
                                         "or a Parquet file of labels: key, rater, choice (A, B or skip)."),
    sample: Optional[int] = typer.Option(None, "--sample", help="Export N pairs, stratified by category, for A/B labelling."),
    gold: float = typer.Option(0.1, "--gold", help="Share of the exported sample that are gold pairs (attention checks)."),
    gold_floor: float = typer.Option(DEFAULT_GOLD_FLOOR, "--gold-floor", help="Raters below this gold accuracy are left out of the human majority."),
    seed: int = typer.Option(0, "--seed", help="Seed of the sample and of which side is shown as A."),
) -> None:
    """Check the judge against people: export an A/B sample to label, or score judge and raters on the labels."""
    from vipo_build.calibration.report import calibrate as score_labels
    from vipo_build.calibration.sample import export_sample

    if (labels is None) == (sample is None):
        _fail(VipoError("calibrate: give exactly one of --sample N or --labels LABELS"))
    try:
        if sample is not None:
            console.print(f"wrote {export_sample(root, sample, seed, gold)}", markup=False)
        else:
            score_labels(root, labels, console, gold_floor)
    except VipoError as err:
        _fail(err)


@app.command()
def label(
    root: str = typer.Argument(..., help="Dataset root (path or fsspec URL)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on; other machines reach it only if told (e.g. 0.0.0.0)."),
    port: int = typer.Option(8765, "--port"),
    sample: Optional[int] = typer.Option(None, "--sample", help="Pairs in the calibration sample, exported on first use "
                                         "(default 200); the sample already there is used otherwise."),
    overlap: int = typer.Option(3, "--overlap", help="Labels from distinct raters each pair gets."),
    gold: float = typer.Option(0.1, "--gold", help="Share of a new sample that are gold pairs (attention checks)."),
    gold_floor: float = typer.Option(DEFAULT_GOLD_FLOOR, "--gold-floor", help="Raters below this gold accuracy are left out of the human majority."),
    token: Optional[str] = typer.Option(None, "--token", help="Every request must carry this token."),
    db: Optional[str] = typer.Option(None, "--db", help="The label database (SQLite); default ROOT/calibration/labels.sqlite."),
    seed: int = typer.Option(0, "--seed", help="Seed of a new sample."),
) -> None:
    """Serve the A/B labelling app for ROOT's calibration sample, with a live judge-vs-human agreement page."""
    from vipo_build.calibration.server import serve

    try:
        serve(root, host, port, db, sample, gold, seed, overlap, gold_floor, token, console)
    except VipoError as err:
        _fail(err)


@app.command("judge-eval")
def judge_eval(
    config: Path = typer.Argument(..., help="Pipeline YAML whose judge (model, rubric, votes, keep rule) is evaluated."),
    pairs: str = typer.Option(..., "--pairs", help="The human-labelled pair set (file, path or fsspec URL)."),
    layout: str = typer.Option("pickapic", "--format", help="pickapic, hpd, genai-bench or vipo (see vipo_build/judge/labelled.py)."),
    category: Optional[str] = typer.Option(None, "--category", help="Rubric for pairs without a category (default: the config's first image category)."),
    out: str = typer.Option("judge-eval.json", "--out", help="Where the figures and every pair's result go, as JSON."),
) -> None:
    """Measure the configured judge against human labels: accuracy with and without ties, Cohen's kappa, position bias, keep rate."""
    from vipo_build.judge.evaluate import run_judge_eval

    try:
        run_judge_eval(str(config), pairs, layout, category, out, console)
    except VipoError as err:
        _fail(err)


@app.command()
def export(
    root: str = typer.Argument(..., help="Dataset root (path or fsspec URL)."),
    out: str = typer.Argument(..., help="A new folder (path or fsspec URL) for the export."),
    to: str = typer.Option(..., "--to", help="pickapic (the diffusers Diffusion-DPO scripts' Parquet), hf (a datasets dataset with a card) or video."),
    split: str = typer.Option("train=0.98,validation=0.01,test=0.01", "--split", help="Split names and shares, by seed subject."),
    min_vote_share: Optional[float] = typer.Option(None, "--min-vote-share", min=0, max=1, help="Only pairs whose chosen side got at least this share of the votes."),
    categories: Optional[str] = typer.Option(None, "--categories", help="Comma-separated categories (default: every category of the format's modality)."),
    rows_per_file: int = typer.Option(1000, "--rows-per-file", min=1, help="Pairs per Parquet file."),
) -> None:
    """Export the committed pairs in a trainer's format, streaming, split by seed subject with each category's share kept."""
    from vipo_build.export.command import export as export_root

    try:
        export_root(root, out, to, split, min_vote_share, categories.split(",") if categories else None, rows_per_file, console)
    except VipoError as err:
        _fail(err)


@app.command()
def schema(out: Path = typer.Option(Path("schemas"), "--out", help="Folder for the JSON Schema files.")) -> None:
    """Write the JSON Schemas of the pipeline config, manifest row, sample json, status and audit report (made from the
    installed models, so any installation writes the ones it reads)."""
    from vipo_build.schemas import write_schemas

    for path in write_schemas(out):
        console.print(f"wrote {path}")


@models_app.command("list")
def list_models(modality: Optional[str] = typer.Option(None, "--modality", help="image or video"),
                judges: bool = typer.Option(False, "--judges", help="the judge models instead of the generators")) -> None:
    """The registered generator families (pipeline class, hub id, defaults, native sizes), or with --judges the
    judge models (vLLM settings, prompt protocol, published accuracy)."""
    wide = Console(soft_wrap=True, width=max(console.width, 180))
    if judges:
        from vipo_build.judge.registry import print_judges

        print_judges(wide)
        return
    from vipo_build.generate.registry import print_generators

    print_generators(wide, modality=modality)


@models_app.command("make-tiny")
def make_tiny(out: Path = typer.Argument(..., help="Folder for the tiny models.")) -> None:
    """Build tiny random-weight models (same classes as production) for tests and the embedded default."""
    from vipo_build.models.tiny import make_tiny_models

    for name, path in make_tiny_models(out).items():
        console.print(f"{name}: {path}")


def main() -> None:  # pragma: no cover - console entry point
    try:
        app()
        code = 0
    except SystemExit as done:
        code = done.code if isinstance(done.code, int) else int(done.code is not None)
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        # Arrow's worker threads can abort a process in interpreter teardown (std::terminate on a
        # joinable thread, apache/arrow#34314) after the command has done all its work; a command
        # that started no Ray has nothing left to finalise, so it ends here with its output flushed.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    main()
