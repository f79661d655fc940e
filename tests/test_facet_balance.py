"""Sub-topic balance: least facet shares held on the kept pairs, shard by shard, and shown by the audit."""

from __future__ import annotations

import json
import math
import random
import shutil

import pyarrow.parquet as pq
import pytest

from tests.conftest import LEAST_SHARE_FACET, LEAST_SHARE_VALUE, vipo
from vipo_build.config import PipelineConfig
from vipo_build.records import Verdict
from vipo_build.shards.facet_balance import FacetBalance

OTHER_VALUE = "hands holding an object"


def test_a_pair_is_left_out_only_when_its_shard_has_no_slot_to_spare():
    # shards of 3, 0 and 2 slots; x owes floor(0.5 x 3) = 1 in the first, then 2 in all
    balance = FacetBalance({"hands": {"x": 0.5}}, [3, 0, 2])
    arriving = ["y", "y", "y", "x", "y", "y", "x"]
    assert [balance.admit({"hands": v}) for v in arriving] == [True, True, False, True, True, False, True]


@pytest.mark.parametrize("seed", range(5))
def test_every_shard_holds_its_least_shares_within_one_pair_and_so_do_the_shards_so_far(seed):
    rng = random.Random(seed)
    per_shard = [rng.choice([0, 1, 5, 7, 10]) for _ in range(20)]
    shares = {"hands": {"both": 0.4, "one": 0.2}, "age": {"child": 0.3}}
    balance, admitted = FacetBalance(shares, per_shard), []
    while len(admitted) < sum(per_shard):
        pair = {"hands": rng.choices(["both", "one", "none"], [1, 2, 4])[0], "age": rng.choice(["child", "adult", "old", "teen"])}
        if balance.admit(pair):
            admitted.append(pair)
    start = 0
    for n in per_shard:
        block, so_far = admitted[start : start + n], admitted[: start + n]
        start += n
        for facet, values in shares.items():
            for value, share in values.items():
                assert sum(p[facet] == value for p in block) >= math.floor(share * n + 1e-9)
                assert sum(p[facet] == value for p in so_far) >= math.floor(share * start + 1e-9)


def test_facet_shares_name_the_category_files_facets_and_values(tmp_path):
    from tests.conftest import tiny_config, write_config

    for shares, error in [({"hand": {"x": 0.5}}, "categories.human_quality.facet_shares: unknown facet 'hand'"),
                          ({LEAST_SHARE_FACET: {"three hands": 0.5}}, "unknown value 'three hands'"),
                          ({LEAST_SHARE_FACET: {LEAST_SHARE_VALUE: 0.7, OTHER_VALUE: 0.4}}, "shares add up to 1.1, more than 1")]:
        config = tiny_config()
        config["categories"]["human_quality"]["facet_shares"] = shares
        result = vipo("run", str(write_config(tmp_path / "c.yaml", config)), "--dry-run")
        assert result.returncode == 2 and error in result.stderr, result.stderr


def judge_kept_in_dataset_order(root, category: str) -> list[tuple[str, dict]]:
    """The judge's kept pairs of a category in unit order, with their facet values (from the caches)."""
    prompts = {row["id"]: {f["facet"]: f["value"] for f in row["facets"]}
               for part in sorted((root / "prompts").glob(f"part-{category}-u*.parquet"))
               for row in pq.read_table(part).to_pylist()}
    judged = sorted((root / "cache" / category).glob("u*.judged.json"), key=lambda p: int(p.name[1:].split(".")[0]))
    verdicts = [Verdict.model_validate(v) for path in judged for v in json.loads(path.read_text())["verdicts"]]
    return [(v.pair_id, prompts[v.pair_id]) for v in verdicts if v.kept]


def test_the_tiny_runs_least_share_holds_on_its_kept_pair_and_the_audit_shows_it(tiny_run, tmp_path):
    _, root, _ = tiny_run
    kept = judge_kept_in_dataset_order(root, "human_quality")
    first_with = next(i for i, (_, facets) in enumerate(kept) if facets[LEAST_SHARE_FACET] == LEAST_SHARE_VALUE)
    assert first_with >= 1  # the judge kept a pair without the value first: the balance had to leave it out
    rows = [r for p in sorted((root / "shards").glob("*.parquet")) for r in pq.read_table(p).to_pylist()
            if r["category"] == "human_quality"]
    assert [r["key"] for r in rows] == [kept[first_with][0]]
    assert {f["facet"]: f["value"] for f in rows[0]["facets"]}[LEAST_SHARE_FACET] == LEAST_SHARE_VALUE
    summary = json.loads((root / "summary.json").read_text())
    assert summary["categories"]["human_quality"]["dropped"]["facet_share"] == first_with

    copy = tmp_path / "out"
    shutil.copytree(root, copy)
    result = vipo("audit", str(copy))
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((copy / "reports" / "audit.json").read_text())
    [human] = [c for c in report["run"]["diversity"]["categories"] if c["category"] == "human_quality"]
    [floored] = [f for f in human["facet_shares"] if f["least_share"] is not None]
    assert floored == {"facet": LEAST_SHARE_FACET, "value": LEAST_SHARE_VALUE, "pairs": 1, "share": 1.0,
                       "least_share": 1.0, "shards_short": 0}
    assert human["distinct_facet_combinations"] == 1

    # a least share the committed pairs do not hold fails the audit, naming category and value
    run = json.loads((copy / "run.json").read_text())
    run["config"]["categories"]["human_quality"]["facet_shares"] = {LEAST_SHARE_FACET: {OTHER_VALUE: 1.0}}
    PipelineConfig.model_validate(run["config"])
    (copy / "run.json").write_text(json.dumps(run))
    result = vipo("audit", str(copy))
    assert result.returncode == 1, result.stdout + result.stderr
    assert ("OFFENDER category human_quality: facet hand_visibility = 'hands holding an object' holds 0.0% of 1 pairs "
            "(least share 100%; 1 shard(s) short)") in result.stdout
