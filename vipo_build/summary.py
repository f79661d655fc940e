"""The end-of-run summary: pairs kept and dropped per category and why, and per-stage throughput."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

from vipo_build import drops
from vipo_build.judge.agreement import AgreementTally, DatasetAgreement
from vipo_build.shards.writer import pairs_written

if TYPE_CHECKING:
    from vipo_build.run import Run


def build(run: Run, seconds: float) -> dict:
    written = pairs_written(run.committed)
    tallies = {name: state.tally for name, state in run.states.items()}
    overall = AgreementTally.merged(tallies.values())
    return {
        "seconds": round(seconds, 2),
        "shards": {"committed": len(run.committed), "planned": run.plan.num_shards},
        "categories": {
            name: {
                "planned": state.quota,
                "written": written.get(name, 0),
                "kept": state.kept,
                "prompts_requested": state.requested * run.unit_size,
                "units": state.requested,
                "rounds": len(state.rounds),
                "dropped": drops.in_order(state.drops),
                "distinct_subjects": len(state.subjects),
                "facet_combinations": len(state.combinations),
            }
            for name, state in run.states.items()
        },
        "stages": run.stage_stats,
        "reused": {k: run.reused[k] for k in ("prompt_parts", "candidate_units", "judged_units")},
        # every verdict, kept or dropped, of each category's units up to the one that filled its
        # quota: the judge's agreement as the data were labelled, the same whatever the timing
        "agreement": DatasetAgreement(
            categories={name: tally.result() for name, tally in sorted(tallies.items())}, overall=overall.result()
        ).model_dump(mode="json"),
    }


def drop_reasons(dropped: Iterable[dict[str, int]]) -> tuple[list[str], str | None]:
    """The drop reasons of the categories' dropped counts, shown as columns #1, #2... (a table of
    reason names would not fit 80 columns), and the caption that names them."""
    reasons = list(drops.in_order({r: 0 for counts in dropped for r in counts}))
    return reasons, (f"dropped: {', '.join(f'#{i} {r}' for i, r in enumerate(reasons, 1))}" if reasons else None)


def show(result: dict, console: Console) -> None:
    categories = result["categories"]
    reasons, caption = drop_reasons(c["dropped"] for c in categories.values())
    pairs = Table(title=f"Pairs ({result['shards']['committed']}/{result['shards']['planned']} shards committed)", caption=caption)
    pairs.add_column("category", no_wrap=True)
    for column in ("plan", "written", "kept", "prompts", "subjects", "facet combos", *(f"#{i}" for i in range(1, len(reasons) + 1))):
        pairs.add_column(column, justify="right", min_width=len(column))
    for name, c in categories.items():
        counts = [str(c["dropped"].get(r, 0)) for r in reasons]
        pairs.add_row(name, str(c["planned"]), str(c["written"]), str(c["kept"]), str(c["prompts_requested"]),
                      str(c["distinct_subjects"]), str(c["facet_combinations"]), *counts)
    console.print(pairs)
    stages = Table(title=f"Stages ({result['seconds']} s)")
    for column in ("stage", "items", "items/s", "busy fraction"):
        stages.add_column(column, justify="left" if column == "stage" else "right")
    for name, s in result["stages"].items():
        stages.add_row(name, str(s["items"]), f"{s['items_per_s']:.2f}", f"{s['busy_fraction']:.2f}")
    console.print(stages)
    reused = result["reused"]
    if any(reused.values()):
        console.print(f"reused from the cache: {reused['prompt_parts']} prompt parts, {reused['judged_units']} judged units, "
                      f"{reused['candidate_units']} units of candidates awaiting the judge")
    agreement = Table(title="Judge agreement (judged pairs of the units up to each quota; rates over decided pairs)")
    for column in ("category", "judged", "decided", "order-consistent", "mean vote share", "Fleiss' kappa", "tie votes",
                   "first shown wins"):
        agreement.add_column(column, justify="left" if column == "category" else "right")
    rows = {**result["agreement"]["categories"], "all": result["agreement"]["overall"]}
    for name, a in rows.items():
        agreement.add_row(name, str(a["pairs"]), str(a["decided"]), _figure(a["order_consistency_rate"], "{:.1%}"),
                          _figure(a["mean_vote_share"], "{:.3f}"), _figure(a["fleiss_kappa"], "{:.3f}"),
                          _figure(a["tie_rate"], "{:.1%}"), _figure(a["first_shown_rate"], "{:.1%}"))
    console.print(agreement)
    between = [(name, b) for name, a in rows.items() for b in a["between_judges"]]
    if between:
        judges = Table(title="Agreement between judges (each judge's own winner)")
        for column in ("category", "judges", "pairs", "same winner", "Cohen's kappa"):
            judges.add_column(column, justify="left" if column in ("category", "judges") else "right")
        for name, b in between:
            judges.add_row(name, f"{b['first']} / {b['second']}", str(b["pairs"]), _figure(b["agreement"], "{:.1%}"),
                           _figure(b["cohen_kappa"], "{:.3f}"))
        console.print(judges)


def _figure(value: float | None, form: str) -> str:
    return "-" if value is None else form.format(value)
