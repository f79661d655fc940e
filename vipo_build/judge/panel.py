"""Several judges, one verdict: each judge's verdicts on a unit combined by the config's rule.

Every judge judges every pair of the modalities it lists with the same protocol and caches its own verdicts, so a resume
asks only the judges whose files are missing, and the combined verdict is recomputed from those
files wherever it is needed (the driver, the shard writer, gc): it is never stored on its own.
"""

from __future__ import annotations

from collections.abc import Iterable

from vipo_build.config import JudgeStageConfig
from vipo_build.judge.aggregate import aggregate
from vipo_build.prompts.categories import Category
from vipo_build.records import PanelVerdict, Prompt, Verdict
from vipo_build.runtime import cache
from vipo_build.runtime.storage import Storage


def judge_names(judge: JudgeStageConfig, category: Category) -> list[str]:
    """The judges of the category's pairs (those listing its modality)."""
    return [e.name for e in judge.judges_for(category.modality)]


def combine(judge: JudgeStageConfig, category: Category, by_judge: dict[str, list[Verdict]]) -> list[Verdict]:
    """One verdict per pair from each judge's verdicts (lists in the same pair order)."""
    names = judge_names(judge, category)
    if len(names) == 1:
        return by_judge[names[0]]
    return [_combine_pair(judge, category, [by_judge[n][i] for n in names]) for i in range(len(by_judge[names[0]]))]


def _combine_pair(judge: JudgeStageConfig, category: Category, verdicts: list[Verdict]) -> Verdict:
    # A defect is found before judging (no judge was asked, so no votes), the same for every judge.
    defect = verdicts[0].reason if not verdicts[0].votes else None
    pooled = aggregate(verdicts[0].pair_id, [v for verdict in verdicts for v in verdict.votes], judge.threshold,
                       category.rubric.critical, defect)
    panel = [PanelVerdict(judge=name, **v.model_dump(include=set(PanelVerdict.model_fields) - {"judge"}))
             for name, v in zip(judge_names(judge, category), verdicts)]
    if judge.combine == "all_agree" and not defect:
        # Each judge keeping side s makes the pooled votes keep s too, so only the reverse needs a rule.
        dropping = next((v for v in verdicts if not v.kept), None)
        if dropping is not None:
            pooled = pooled.model_copy(update={"kept": False, "reason": dropping.reason})
        elif len({v.chosen_side for v in verdicts}) > 1:
            pooled = pooled.model_copy(update={"kept": False, "reason": "judges_disagree"})
    return pooled.model_copy(update={"panel": panel})


def read_unit(storage: Storage, judge: JudgeStageConfig, category: Category, unit: int) -> tuple[list[Prompt], list[Verdict]]:
    """A judged unit's prompts and combined verdicts, from every judge's cache file."""
    names = judge_names(judge, category)
    found = storage.read_many([cache.judged_path(category.name, unit, n) for n in names])
    return parse_unit(judge, category, {n: found[cache.judged_path(category.name, unit, n)] for n in names})


def parse_unit(judge: JudgeStageConfig, category: Category, files: dict[str, bytes]) -> tuple[list[Prompt], list[Verdict]]:
    parsed = {name: cache.parse_judged(data) for name, data in files.items()}
    prompts = next(iter(parsed.values()))[0]
    return prompts, combine(judge, category, {name: verdicts for name, (_, verdicts) in parsed.items()})


def judged_units(storage: Storage, judge: JudgeStageConfig, category: Category, listing: Iterable[str]) -> dict[str, list[Verdict]]:
    """The combined verdicts of every unit in a category folder's listing that all judges have judged, by unit
    file stem (u000012)."""
    names, folder, listing = judge_names(judge, category), cache.category_dir(category.name), set(listing)
    stems = sorted({f.split(".", 1)[0] for f in listing if f.endswith(".judged.json")})
    done = [u for u in stems if all(f"{u}.{n}.judged.json" in listing for n in names)]
    found = storage.read_many([f"{folder}/{u}.{n}.judged.json" for u in done for n in names])
    return {u: parse_unit(judge, category, {n: found[f"{folder}/{u}.{n}.judged.json"] for n in names})[1] for u in done}
