"""`vipo-build judge-eval CONFIG --pairs FILE`: the configured judge, with the production protocol
(rubric, both orders, k votes, schema, keep rule), on a human-labelled pair set.

Per category and overall: accuracy with ties (the judge's A / B / tie against the human label,
every pair) and without (pairs with a human winner only; a judge tie counts as wrong), the
GenAI-Bench conventions; Cohen's kappa between judge and human labels; the judge's order
consistency and position bias; the share of pairs the keep rule keeps and the accuracy on those.
"""

from __future__ import annotations

import json
from collections import defaultdict

import fsspec

from pydantic import Field
from rich.console import Console
from rich.table import Table

from vipo_build.config import PipelineConfig, load_config
from vipo_build.errors import VipoError
from vipo_build.judge import panel
from vipo_build.judge.actor import JudgeItem, JudgeStage
from vipo_build.judge.agreement import AgreementTally, JudgesAgreement, cohen_kappa, for_first_shown
from vipo_build.judge.labelled import LabelledPair, read_pairs
from vipo_build.prompts.categories import Category
from vipo_build.records import Verdict
from vipo_build.strict import StrictModel


class PairResult(StrictModel):
    pair_id: str
    category: str
    human: str
    judge: str = Field(description="A, B, or tie for no winner.")
    kept: bool
    vote_share: float
    first_shown_votes: int = Field(description="Decisive votes for the candidate shown first.")
    decisive_votes: int = Field(description="Usable votes that are not ties.")


class JudgeScores(StrictModel):
    pairs: int
    accuracy_with_ties: float | None = Field(description="Judge label (A, B, tie) equal to the human label, over every pair.")
    accuracy_without_ties: float | None = Field(description="Over pairs with a human winner; a judge tie counts as wrong.")
    cohen_kappa: float | None = Field(description="Judge against human labels, three classes.")
    order_consistency_rate: float | None
    first_shown_rate: float | None = Field(description="Share of decisive votes for the candidate shown first.")
    first_shown_p_value: float | None
    kept_share: float = Field(description="Share of pairs the keep rule keeps.")
    accuracy_on_kept: float | None = Field(description="Over kept pairs with a human winner.")
    between_judges: list[JudgesAgreement] = Field(description="Each two judges of a panel: same winner and Cohen's kappa.")


class MemberEvaluation(StrictModel):
    """One judge of a panel on its own."""

    judge: str
    model: str
    categories: dict[str, JudgeScores]
    overall: JudgeScores
    results: list[PairResult]


class JudgeEvaluation(StrictModel):
    judges: list[str] = Field(description="name (model) of each judge")
    combine: str | None = Field(description="How the judges' votes were combined (judge.combine); None for one judge.")
    pairs_file: str
    layout: str
    votes: int
    threshold: float
    categories: dict[str, JudgeScores]
    overall: JudgeScores
    results: list[PairResult]
    per_judge: list[MemberEvaluation] = Field(description="Each judge of a panel scored on its own; empty for one judge.")


def judge_label(verdict: Verdict) -> str:
    return "tie" if verdict.chosen_side is None else "AB"[verdict.chosen_side]


def scores(results: list[PairResult], tally: AgreementTally) -> JudgeScores:
    decided = [r for r in results if r.human != "tie"]
    kept = [r for r in decided if r.kept]
    figures = tally.result()
    return JudgeScores(
        pairs=len(results),
        accuracy_with_ties=sum(r.judge == r.human for r in results) / len(results) if results else None,
        accuracy_without_ties=sum(r.judge == r.human for r in decided) / len(decided) if decided else None,
        cohen_kappa=cohen_kappa([r.judge for r in results], [r.human for r in results]),
        order_consistency_rate=figures.order_consistency_rate,
        first_shown_rate=figures.first_shown_rate,
        first_shown_p_value=figures.first_shown_p_value,
        kept_share=sum(r.kept for r in results) / len(results) if results else 0.0,
        accuracy_on_kept=sum(r.judge == r.human for r in kept) / len(kept) if kept else None,
        between_judges=figures.between_judges,
    )


def evaluate(judges: dict[str, JudgeStage], config: PipelineConfig, pairs: list[LabelledPair], pairs_file: str,
             layout: str) -> JudgeEvaluation:
    """Judge every pair as a run would: units of `generate.unit_size` pairs, each judge's `pool.units_per_call`
    units per call, each judge's verdicts combined by `judge.combine`."""
    by_category: dict[str, list[LabelledPair]] = defaultdict(list)
    for pair in pairs:
        by_category[pair.category].append(pair)
    unit = config.generate.unit_size
    units = [(config.category(name), group[i : i + unit]) for name, group in by_category.items() for i in range(0, len(group), unit)]
    asked = [(category, [JudgeItem(p.pair_id, p.prompt, tuple(p.images)) for p in group]) for category, group in units]
    judged_by = [panel.judge_names(config.judge, category) for category, _ in units]  # each unit's judges
    missing = {name for names in judged_by for name in names} - judges.keys()
    if missing:
        raise VipoError(f"the pairs' categories are judged by {', '.join(sorted(missing))} too: load config.judges_at_work")
    verdicts: dict[str, dict[int, list[Verdict]]] = {}  # judge -> unit index -> its verdicts
    for name, judge in judges.items():
        mine = [i for i, names in enumerate(judged_by) if name in names]  # the units of its modalities only
        per_call = judge.resources.units_per_call
        found = [v for start in range(0, len(mine), per_call) for v in judge.judge([asked[i] for i in mine[start : start + per_call]])]
        verdicts[name] = dict(zip(mine, found))
    combined = [panel.combine(config.judge, category, {name: verdicts[name][i] for name in judged_by[i]})
                for i, (category, _) in enumerate(units)]
    categories, overall, results = _assess(units, combined)
    paneled = config.combines_judges({category.name for category, _ in units})
    members = []
    for name, judge in judges.items() if paneled else ():
        own = sorted(verdicts[name])  # a judge is assessed on the pairs of its own modalities
        own_categories, own_overall, own_results = _assess([units[i] for i in own], [verdicts[name][i] for i in own])
        members.append(MemberEvaluation(judge=name, model=judge.judge_engine.engine.model, categories=own_categories,
                                        overall=own_overall, results=own_results))
    return JudgeEvaluation(
        judges=[f"{name} ({judge.judge_engine.engine.model})" for name, judge in judges.items()],
        combine=config.judge.combine if paneled else None, pairs_file=pairs_file, layout=layout,
        votes=config.judge.votes, threshold=config.judge.threshold, categories=categories, overall=overall,
        results=results, per_judge=members,
    )


def _assess(units: list[tuple[Category, list[LabelledPair]]], verdicts: list[list[Verdict]]
            ) -> tuple[dict[str, JudgeScores], JudgeScores, list[PairResult]]:
    """Scores per category and overall of each unit's verdicts against its human labels."""
    results, tallies = [], defaultdict(AgreementTally)
    for (category, group), found in zip(units, verdicts):
        for pair, verdict in zip(group, found):
            tallies[category.name].add(verdict)
            decisive = [v for v in verdict.votes if v.valid and v.winner_side is not None]
            results.append(PairResult(
                pair_id=pair.pair_id, category=category.name, human=pair.human, judge=judge_label(verdict),
                kept=verdict.kept, vote_share=verdict.vote_share, decisive_votes=len(decisive),
                first_shown_votes=sum(map(for_first_shown, decisive))))
    categories = {name: scores([r for r in results if r.category == name], tally) for name, tally in tallies.items()}
    return categories, scores(results, AgreementTally.merged(tallies.values())), results


def show(evaluation: JudgeEvaluation, console: Console) -> None:
    rule = f", combined by {evaluation.combine}" if evaluation.combine else ""
    # a line of its own, never cut: a table's title is clipped to the table's width, and model paths are long
    console.print(f"{', '.join(evaluation.judges)} on {evaluation.pairs_file} ({evaluation.layout}): "
                  f"{evaluation.votes} votes x 2 orders, threshold {evaluation.threshold:g}{rule}", soft_wrap=True)
    table = Table()
    for column in ("category", "pairs", "accuracy (ties)", "accuracy (no ties)", "Cohen's kappa", "order consistency",
                   "first shown wins", "kept", "accuracy on kept"):
        table.add_column(column, justify="left" if column == "category" else "right")
    rows = {**evaluation.categories, "all": evaluation.overall} | {f"all, {m.judge} alone": m.overall for m in evaluation.per_judge}
    for name, s in rows.items():
        table.add_row(name, str(s.pairs), _figure(s.accuracy_with_ties), _figure(s.accuracy_without_ties),
                      _figure(s.cohen_kappa, "{:.3f}"), _figure(s.order_consistency_rate), _figure(s.first_shown_rate),
                      _figure(s.kept_share), _figure(s.accuracy_on_kept))
    console.print(table)


def _figure(value: float | None, form: str = "{:.1%}") -> str:
    return "-" if value is None else form.format(value)


def run_judge_eval(config_path: str, pairs_file: str, layout: str, category: str | None, out: str, console: Console) -> JudgeEvaluation:
    config, _ = load_config(config_path)
    default = category or next((c for c in config.quotas() if config.category(c).modality == "image"), None)
    if default is None:
        raise VipoError("--category: the config has no image category; name the rubric to judge with")
    config.category(default)  # an unknown name fails here, in one line
    pairs = read_pairs(pairs_file, layout, default)
    for name in {p.category for p in pairs}:
        config.category(name)
    judges = {e.name: JudgeStage(config.judge, e, config.seed, storage=None, clips=config.generate.video)
              for _, e in config.judges_at_work({p.category for p in pairs})}  # a judge of other modalities never loads
    for judge in judges.values():
        judge.setup()
    evaluation = evaluate(judges, config, pairs, pairs_file, layout)
    with fsspec.open(out, "w") as f:  # a local path or any storage URL
        json.dump(evaluation.model_dump(mode="json"), f, indent=1)
    show(evaluation, console)
    console.print(f"wrote {out}", markup=False)
    return evaluation
