"""The shard plan gives every shard the configured category mix, within one pair."""

from __future__ import annotations

import numpy as np
import pytest

from vipo_build.shards.plan import ShardPlan


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
    plan = ShardPlan("t", quotas, per_shard)
    total = sum(quotas.values())
    matrix = plan.count_matrix
    assert matrix.sum(axis=0).tolist() == list(quotas.values())
    assert matrix.sum(axis=1)[:-1].tolist() == [per_shard] * (plan.num_shards - 1)
    sizes = matrix.sum(axis=1, keepdims=True)
    target = sizes * np.array(list(quotas.values()))[None, :] / total
    assert np.abs(matrix - target).max() < 1 + 1e-9


def test_slots_are_category_prefixes_in_order():
    plan = ShardPlan("t", {"a": 7, "b": 3, "c": 1}, 4)
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
        plan = ShardPlan("t", quotas, int(rng.integers(1, 60)))
        matrix = plan.count_matrix  # raises if the totals were not exact
        sizes = matrix.sum(axis=1, keepdims=True)
        target = sizes * np.array(list(quotas.values()))[None, :] / plan.total_pairs
        assert np.abs(matrix - target).max() < 1
