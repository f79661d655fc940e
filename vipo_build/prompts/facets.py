"""Facet values per expansion request: drawn by weight from (seed, category, unit, index) alone, so a
request's facets never depend on run order, and the plan can count the combinations a round draws."""

from __future__ import annotations

import random

from vipo_build.prompts.categories import Category
from vipo_build.seeding import derive_seed

FacetValues = tuple[tuple[str, str], ...]  # (facet, value) in facet-name order


def draw_facets(category: Category, run_seed: int, unit: int, index: int) -> FacetValues:
    if not category.facets:
        return ()
    rng = random.Random(derive_seed(run_seed, "facets", category.name, unit, index))
    return tuple((name, rng.choices(list(facet.values), weights=list(facet.values.values()))[0])
                 for name, facet in sorted(category.facets.items()))


def describe(facets: FacetValues) -> str:
    return "; ".join(f"{name.replace('_', ' ')}: {value}" for name, value in facets)

