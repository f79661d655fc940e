"""The shard plan gives every shard one modality and its set's category mix, within one pair."""

from __future__ import annotations

import numpy as np
import pytest

from vipo_build.shards.plan import ShardPlan, ShardSet


@pytest.mark.parametrize(
    ("quotas", "per_shard"),
    [
        ({"a": 5, "b": 5, "c": 5, "d": 5, "e": 5, "f": 5, "g": 5, "h": 5}, 10),
        ({"a": 200_000, "b": 200_000, "c": 200_000, "d": 200_000, "e": 200_000}, 1000),
        ({"a": 7, "b": 3, "c": 1}, 4),
        ({"x": 100_001, "y": 99_999, "z": 50_000}, 333),
        ({"a": 1, "b": 2, "c": 3, "d": 5, "e": 8, "f": 13}, 7),
    ],
)
def test_every_shard_has_the_planned_mix(quotas: dict[str, int], per_shard: int):
    plan = ShardSet("t", quotas, per_shard)
    total = sum(quotas.values())
    matrix = plan.count_matrix
    assert matrix.sum(axis=0).tolist() == list(quotas.values())
    assert matrix.sum(axis=1)[:-1].tolist() == [per_shard] * (plan.num_shards - 1)
    sizes = matrix.sum(axis=1, keepdims=True)
    target = sizes * np.array(list(quotas.values()))[None, :] / total
    assert np.abs(matrix - target).max() < 1 + 1e-9


def test_slots_are_category_prefixes_in_order():
    plan = ShardSet("t", {"a": 7, "b": 3, "c": 1}, 4)
    seen: dict[str, list[int]] = {"a": [], "b": [], "c": []}
    for shard in range(plan.num_shards):
        mine = {"a": 0, "b": 0, "c": 0}
        for category, ordinal in plan.slots(shard):
            seen[category].append(ordinal)
            mine[category] = ordinal + 1
        assert plan.needed(shard) == mine
    assert seen == {"a": list(range(7)), "b": list(range(3)), "c": [0]}
    assert plan.shard_name(2) == "t-000002"


def test_random_quotas_keep_the_mix_and_the_totals():
    rng = np.random.default_rng(0)
    for _ in range(300):
        quotas = {f"c{i}": int(q) for i, q in enumerate(rng.integers(1, 500, size=rng.integers(1, 9)))}
        plan = ShardSet("t", quotas, int(rng.integers(1, 60)))
        matrix = plan.count_matrix  # raises if the totals were not exact
        sizes = matrix.sum(axis=1, keepdims=True)
        target = sizes * np.array(list(quotas.values()))[None, :] / plan.total_pairs
        assert np.abs(matrix - target).max() < 1


def test_each_modality_has_its_own_shard_set_with_its_categories_balanced():
    quotas = {"aesthetics": 7, "motion": 5, "composition": 3, "visual": 1}
    modalities = {"aesthetics": "image", "motion": "video", "composition": "image", "visual": "video"}
    plan = ShardPlan("t", quotas, 4, modalities)
    assert [plan.shard_name(s) for s in range(plan.num_shards)] == [
        "t-image-000000", "t-image-000001", "t-image-000002", "t-video-000000", "t-video-000001"]
    assert plan.set_shards() == [[0, 1, 2], [3, 4]]
    assert [plan.modality(s) for s in range(plan.num_shards)] == ["image"] * 3 + ["video"] * 2
    for s in range(plan.num_shards):
        assert {modalities[c] for c, _ in plan.slots(s)} == {plan.modality(s)}
    # each set alone is the plan of its categories: image 7:3 over 10 pairs, video 5:1 over 6
    assert [plan.counts(s) for s in range(3)] == [ShardSet("t-image", {"aesthetics": 7, "composition": 3}, 4).counts(s)
                                                  for s in range(3)]
    assert plan.counts(3) == {"motion": 3, "visual": 1} and plan.counts(4) == {"motion": 2, "visual": 0}
    table = plan.table()
    assert table.column_names == ["shard", "modality", "category", "pairs"] and sum(table.column("pairs").to_pylist()) == 16
