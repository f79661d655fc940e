"""The audit's plots, drawn from the report alone (so audit.json holds everything they show).

Figures are rendered with the Agg canvas directly, never through pyplot: no GUI backend and no
global matplotlib state changes in the caller's process.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from vipo_build.audit.model import AuditReport, RunAudit

NAMED_TICKS = 40  # more shards than this get index ticks instead of names
CHOSEN, REJECTED, TARGET = "#2b8cbe", "#e34a33", "#555555"


@dataclass(frozen=True)
class Plot:
    name: str  # file stem under reports/plots/
    title: str
    png: bytes


def png(figure: Figure) -> bytes:
    FigureCanvasAgg(figure)
    sink = io.BytesIO()
    figure.savefig(sink, format="png", dpi=100, metadata={"Software": None})  # no version stamp: same data, same bytes
    return sink.getvalue()


def new_figure(width: float, height: float) -> Figure:
    return Figure(figsize=(width, height), layout="constrained")


def nothing_to_show(ax: Axes, what: str) -> None:
    ax.text(0.5, 0.5, f"no {what} yet", ha="center", va="center", transform=ax.transAxes, color=TARGET)
    ax.set_axis_off()


def category_colors(categories: list[str]) -> dict[str, tuple]:
    palette = colormaps["tab20" if len(categories) > 10 else "tab10"]
    return {c: palette(i % palette.N) for i, c in enumerate(categories)}


def category_counts(run: RunAudit) -> Plot:
    rows = run.categories
    figure = new_figure(9, 1.2 + 0.45 * len(rows))
    ax = figure.subplots()
    y = np.arange(len(rows))
    ax.barh(y - 0.2, [c.pairs for c in rows], height=0.4, color=CHOSEN, label="committed pairs")
    ax.barh(y + 0.2, [c.target for c in rows], height=0.4, color=TARGET, alpha=0.6, label="plan for the committed shards")
    ax.scatter([c.quota for c in rows], y, marker="|", s=300, color="black", label="quota (whole dataset)", zorder=3)
    ax.set_yticks(y, [c.category for c in rows])
    ax.invert_yaxis()
    ax.set_xlabel("pairs")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize="small")
    ax.set_title(f"{run.name}: pairs per category ({run.shards.committed} of {run.shards.planned} shards committed)")
    return Plot("category-counts", "Category counts vs targets", png(figure))


def shard_mix(run: RunAudit, tolerance_pct: float) -> Plot:
    shards = run.shard_balance
    categories = [c.category for c in run.categories]
    figure = new_figure(11, 3 + 0.3 * len(categories))
    top, bottom = figure.subplots(2, 1, height_ratios=[3, 2])
    if not shards:
        nothing_to_show(top, "committed shards")
        nothing_to_show(bottom, "committed shards")
        return Plot("shard-mix", "Category mix per shard", png(figure))
    edges = np.arange(len(shards) + 1)
    share = np.array([[s.categories[c].share if c in s.categories else 0.0 for s in shards] for c in categories])
    planned = np.array([[s.categories[c].planned_share if c in s.categories else 0.0 for s in shards] for c in categories])
    colors = category_colors(categories)
    base = np.zeros(len(shards))
    for category, values in zip(categories, share):
        top.stairs(base + values, edges, baseline=base, fill=True, color=colors[category], label=category)
        base = base + values
    for boundary in np.cumsum(planned, axis=0)[:-1]:
        top.stairs(boundary, edges, color="black", linewidth=0.8, linestyle="--")
    top.set_ylim(0, 1)
    top.set_xlim(0, len(shards))
    top.set_ylabel("share of shard")
    top.set_title("category mix per shard (fill: committed; dashed: plan)")
    top.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize="small")
    deviation = np.array([[s.categories[c].deviation_pp if c in s.categories else 0.0 for s in shards] for c in categories])
    limit = max(tolerance_pct, float(np.abs(deviation).max()), 0.01)
    image = bottom.imshow(deviation, aspect="auto", cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest",
                          extent=(0, len(shards), len(categories) - 0.5, -0.5))
    figure.colorbar(image, ax=bottom, label="share - plan (pp)")
    bottom.set_yticks(range(len(categories)), categories)
    bottom.set_title(f"deviation from the plan (tolerance ±{tolerance_pct:g} pp)")
    for ax in (top, bottom):
        if len(shards) <= NAMED_TICKS:
            ax.set_xticks(edges[:-1] + 0.5, [s.shard for s in shards], rotation=90, fontsize="x-small")
        else:
            ax.set_xlabel("shard (index among committed shards)")
    return Plot("shard-mix", "Category mix per shard vs plan", png(figure))


def win_rates(run: RunAudit) -> Plot:
    names = [g.generator for g in run.generators.generators]
    figure = new_figure(2.5 + 1.1 * max(len(names), 2), 1.8 + 1.0 * max(len(names), 2))
    ax = figure.subplots()
    if not names:
        nothing_to_show(ax, "pairs")
        return Plot("generator-win-rates", "Generator win-rate matrix", png(figure))
    index = {g: i for i, g in enumerate(names)}
    wins = np.zeros((len(names), len(names)), dtype=int)
    for m in run.generators.matchups:
        wins[index[m.chosen], index[m.rejected]] = m.pairs
    games = wins + wins.T
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.where(games > 0, wins / games, np.nan)
    np.fill_diagonal(rate, np.nan)  # same generator on both sides: a cross-seed pair, no winner between models
    cmap = colormaps["RdYlGn"].with_extremes(bad="#dddddd")
    image = ax.imshow(rate, cmap=cmap, vmin=0, vmax=1)
    for i in range(len(names)):
        for j in range(len(names)):
            if i == j:
                text = f"{wins[i, j]}\ncross-seed" if wins[i, j] else ""
            else:
                text = f"{rate[i, j]:.0%}\n{wins[i, j]}/{games[i, j]}" if games[i, j] else ""
            ax.text(j, i, text, ha="center", va="center", fontsize="small")
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("rejected generator")
    ax.set_ylabel("chosen generator")
    figure.colorbar(image, ax=ax, label="share of their pairs won by the row")
    ax.set_title("generator win rates")
    return Plot("generator-win-rates", "Generator win-rate matrix", png(figure))


def agreement(run: RunAudit) -> Plot:
    rows = run.agreement
    figure = new_figure(9, 1.2 + 0.45 * len(rows))
    ax = figure.subplots()
    y = np.arange(len(rows))
    ax.barh(y - 0.2, [r.mean_vote_share or 0 for r in rows], height=0.4, color=CHOSEN, label="mean vote share")
    ax.barh(y + 0.2, [r.order_consistent_rate or 0 for r in rows], height=0.4, color="#74c476", label="order-consistency rate")
    ax.set_yticks(y, [f"{r.category} ({r.pairs})" for r in rows])
    ax.invert_yaxis()
    ax.set_xlim(0, 1.05)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize="small")
    ax.set_title("judge agreement per category (pairs in committed shards)")
    return Plot("agreement", "Judge agreement per category", png(figure))


def funnel(run: RunAudit) -> Plot:
    f = run.funnel
    figure = new_figure(12, 4)
    pairs_ax, stages_ax = figure.subplots(1, 2, width_ratios=[3, 2])
    labels = ["prompts requested", "prompts accepted", "judged", "kept", "in committed shards"]
    values = [f.prompts_requested, f.prompts_accepted, f.judged, f.kept, f.written]
    y = np.arange(len(labels))
    pairs_ax.barh(y, values, color=[TARGET, TARGET, "#cccccc", CHOSEN, "#31a354"])
    left = f.kept
    reasons = colormaps["Set2"]
    for i, (reason, n) in enumerate(f.dropped.items()):  # the judged bar, split into kept and each drop reason
        pairs_ax.barh(2, n, left=left, color=reasons(i % reasons.N), label=f"dropped: {reason} ({n})")
        left += n
    pairs_ax.barh(2, f.kept, color=CHOSEN, label=f"kept ({f.kept})")
    for i, v in enumerate(values):
        pairs_ax.text(v, i, f" {v}", va="center", fontsize="small")
    pairs_ax.set_yticks(y, labels)
    pairs_ax.invert_yaxis()
    pairs_ax.set_xlabel("prompts / pairs")
    pairs_ax.legend(loc="lower right", fontsize="x-small")
    pairs_ax.set_title("drop funnel (from the run's caches)")
    names = list(f.stages)
    done = [f.stages[s].done / f.stages[s].total if f.stages[s].total else 0 for s in names]
    stages_ax.barh(names, done, color=CHOSEN)
    for i, s in enumerate(names):
        stages_ax.text(min(done[i], 1), i, f" {f.stages[s].done}/{f.stages[s].total}", va="center", fontsize="small")
    stages_ax.invert_yaxis()
    stages_ax.set_xlim(0, 1.3)
    stages_ax.set_xlabel("done (prompts; work units; shards)")
    stages_ax.set_title("stage progress")
    return Plot("funnel", "Drop funnel", png(figure))


def media(run: RunAudit) -> Plot:
    figure = new_figure(11, 3.5)
    sizes_ax, frames_ax = figure.subplots(1, 2)
    if not run.media.resolutions:
        nothing_to_show(sizes_ax, "pairs")
        nothing_to_show(frames_ax, "pairs")
        return Plot("media", "Resolutions and clip lengths", png(figure))
    sizes = run.media.resolutions
    sizes_ax.bar([f"{r.width}x{r.height}" for r in sizes], [r.pairs for r in sizes], color=CHOSEN)
    sizes_ax.set_title("resolution (width x height)")
    sizes_ax.set_ylabel("pairs")
    lengths = run.media.clip_lengths
    frames_ax.bar([str(c.frames) if c.frames > 1 else "1 (image)" for c in lengths], [c.pairs for c in lengths], color="#756bb1")
    frames_ax.set_title("clip length (frames)")
    for ax in (sizes_ax, frames_ax):
        ax.tick_params(axis="x", labelrotation=30, labelsize="small")
    return Plot("media", "Resolutions and clip lengths", png(figure))


def scores(run: RunAudit) -> Plot:
    dimensions = run.scores.dimensions
    columns = min(4, max(len(dimensions), 1))
    grid_rows = max(1, -(-len(dimensions) // columns))
    figure = new_figure(3.2 * columns, 2.4 * grid_rows + 0.4)
    axes = figure.subplots(grid_rows, columns, squeeze=False).ravel()
    if not dimensions:
        nothing_to_show(axes[0], "scores")
        return Plot("scores", "Score distributions per dimension", png(figure))
    edges = run.scores.bin_edges
    for ax, d in zip(axes, dimensions):
        ax.stairs(d.chosen_histogram, edges, color=CHOSEN, linewidth=1.5, label=f"chosen (mean {d.chosen_mean:.2f})")
        ax.stairs(d.rejected_histogram, edges, color=REJECTED, linewidth=1.5, label=f"rejected (mean {d.rejected_mean:.2f})")
        ax.set_title(f"{d.dimension} ({d.pairs} pairs)", fontsize="medium")
        ax.set_xlim(edges[0], edges[-1])
        ax.legend(fontsize="x-small")
    for ax in axes[len(dimensions):]:
        ax.set_axis_off()
    figure.suptitle("judge scores per dimension")
    return Plot("scores", "Score distributions per dimension", png(figure))


def motion(run: RunAudit) -> Plot:
    categories = run.motion.categories
    figure = new_figure(3.6 * max(len(categories), 1), 2.8)
    axes = figure.subplots(1, max(len(categories), 1), squeeze=False).ravel()
    if not categories:
        nothing_to_show(axes[0], "clips")
        return Plot("motion", "Clip motion per video category", png(figure))
    edges = np.array(run.motion.bin_edges)
    shown = np.concatenate([[edges[1] / 2], edges[1:]])  # the bin from 0 drawn on a log axis
    for ax, c in zip(axes, categories):
        ax.stairs(c.chosen_histogram, shown, color=CHOSEN, linewidth=1.5, label=f"chosen (median {c.chosen_motion_median:.3f})")
        ax.stairs(c.rejected_histogram, shown, color=REJECTED, linewidth=1.5,
                  label=f"rejected (median {c.rejected_motion_median:.3f})")
        ax.set_xscale("log")
        ax.set_title(f"{c.category} ({c.pairs} pairs)", fontsize="medium")
        ax.set_xlabel("motion (frame widths / s)")
        ax.legend(fontsize="x-small")
    axes[0].set_ylabel("clips")
    return Plot("motion", "Clip motion per video category", png(figure))


def comparison(report: AuditReport) -> Plot:
    rows = report.comparison or []
    figure = new_figure(9, 1.2 + 0.5 * len(rows))
    ax = figure.subplots()
    y = np.arange(len(rows))
    for offset, label, run, shares, color in (
        (-0.2, "A", report.run, [r.share for r in rows], CHOSEN),
        (0.2, "B", report.compare, [r.other_share for r in rows], "#fd8d3c"),
    ):
        targets = {c.category: c.target_share for c in run.categories}
        ax.barh(y + offset, shares, height=0.4, color=color, label=f"{label}: {run.name} ({run.root})")
        ax.scatter([targets.get(r.category, 0) for r in rows], y + offset, marker="|", s=150, color="black", zorder=3,
                   label="plan of each" if label == "A" else None)
    ax.set_yticks(y, [r.category for r in rows])
    ax.invert_yaxis()
    ax.set_xlabel("share of committed pairs")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize="x-small")
    ax.set_title("category shares, side by side")
    return Plot("comparison", "Category shares of both runs", png(figure))


def render(report: AuditReport) -> list[Plot]:
    run = report.run
    plots = [category_counts(run), shard_mix(run, report.tolerance_pct), win_rates(run), agreement(run), funnel(run),
             media(run), scores(run), motion(run)]
    if report.compare is not None:
        plots.append(comparison(report))
    return plots
