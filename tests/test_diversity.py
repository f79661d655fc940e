"""Prompt diversity: each figure against an independent computation on fixed prompt sets, a
duplicate-heavy set scoring lower on every one, the fixed-size sample, and the audit's limits."""

from __future__ import annotations

import json
import random

import numpy as np
import pyarrow as pa
import pytest
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.metrics.pairwise import cosine_similarity

from tests.test_audit import make_root, run_audit
from vipo_build.audit.diversity import (
    collect_prompts,
    distinct_n,
    embedding_figures,
    near_duplicate_rate,
)
from vipo_build.layout import RUN_JSON
from vipo_build.prompts.filter_config import NearDuplicateConfig

SUBJECTS = ["lighthouse", "fox", "teapot", "violin", "glacier", "bicycle", "orchard", "robot", "cathedral", "octopus",
            "desert", "train", "library", "waterfall", "kite", "castle", "market", "owl", "canyon", "harbor"]
SETTINGS = ["at dawn", "under neon rain", "in thick fog", "on a summer afternoon", "by candlelight"]
STYLES = ["oil painting", "pencil sketch", "studio photograph", "isometric render", "watercolor"]


def varied_prompts() -> list[str]:
    rng = random.Random(0)
    return [f"A {s} {rng.choice(SETTINGS)}, {rng.choice(STYLES)}, with {rng.choice(SUBJECTS)}s in the background."
            for s in SUBJECTS for _ in range(3)]


def duplicate_heavy_prompts() -> list[str]:
    """60 prompts from 3 templates, every other one with its last word replaced (Jaccard of word 3-grams about 0.8)."""
    base = ["A red lighthouse at dawn, oil painting, with foxes in the background.",
            "A small teapot on a wooden table by candlelight, studio photograph of it.",
            "A quiet harbor in thick fog, watercolor, with boats along the old pier."]
    swaps = [("background.", "distance."), ("of it.", "of them."), ("old pier.", "old quay.")]  # the last word: one shingle
    return [text if i % 2 else text.replace(*swap) for text, swap in zip(base, swaps) for i in range(20)]


def jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b)


def shingles(text: str) -> set[tuple[str, ...]]:
    words = "".join(c if c.isalnum() else " " for c in text.lower()).split()
    return {tuple(words[i : i + 3]) for i in range(max(1, len(words) - 2))}


@pytest.mark.parametrize("texts", [varied_prompts(), duplicate_heavy_prompts()])
def test_distinct_n_matches_a_count_vectorizer(texts):
    for n in (1, 2, 3):
        counts = CountVectorizer(ngram_range=(n, n), token_pattern=r"(?u)\b\w+\b").fit_transform(texts)
        assert distinct_n(texts, n) == pytest.approx(counts.shape[1] / counts.sum())


def test_near_duplicate_rate_matches_exact_jaccard():
    config = NearDuplicateConfig(threshold=0.7)
    for texts in (varied_prompts(), duplicate_heavy_prompts()):
        kept: list[set] = []
        duplicates = 0
        for text in texts:  # the filter's rule: a duplicate of an earlier prompt that was kept
            own = shingles(text)
            if any(jaccard(own, other) >= 0.7 for other in kept):
                duplicates += 1
            else:
                kept.append(own)
        # exact Jaccard here is far from the threshold for every pair, so MinHash's estimate agrees
        assert near_duplicate_rate(texts, config) == pytest.approx(duplicates / len(texts))
    assert near_duplicate_rate(duplicate_heavy_prompts(), config) > 0.9 and near_duplicate_rate(varied_prompts(), config) == 0


def test_embedding_figures_match_sklearn_and_the_vendi_definition():
    rng = np.random.default_rng(3)
    embeddings = rng.normal(size=(40, 16))
    mean, vendi = embedding_figures(embeddings)
    similarity = cosine_similarity(embeddings)
    assert mean == pytest.approx(similarity[~np.eye(40, dtype=bool)].mean())
    eigenvalues = np.linalg.eigvalsh(similarity / 40)
    eigenvalues = eigenvalues[eigenvalues > 1e-12]
    assert vendi == pytest.approx(np.exp(-np.sum(eigenvalues * np.log(eigenvalues))))
    assert embedding_figures(np.ones((10, 4)))[1] == pytest.approx(1.0)  # all alike: one effective prompt
    assert embedding_figures(np.eye(10))[1] == pytest.approx(10.0)  # all orthogonal: ten


def test_a_duplicate_heavy_set_scores_lower_with_the_tiny_encoder(tiny_encoder):
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(tiny_encoder), device="cpu")
    varied, heavy = varied_prompts(), duplicate_heavy_prompts()[:len(varied_prompts())]
    (varied_mean, varied_vendi), (heavy_mean, heavy_vendi) = (embedding_figures(model.encode(t)) for t in (varied, heavy))
    assert heavy_mean > varied_mean and heavy_vendi < varied_vendi
    for n in (1, 2, 3):
        assert distinct_n(heavy, n) < distinct_n(varied, n)


def test_the_sample_is_fixed_whatever_the_shard_order():
    rows = [{"key": f"k{i}", "category": ("a", "b")[i % 2], "seed_subject": f"s{i % 7}", "prompt": f"prompt {i}",
             "shard": f"shard-{i // 100}", "facets": [{"facet": "light", "value": ("dawn", "dusk", "noon")[i % 3]},
                                                      {"facet": "lens", "value": ("wide", "tele")[i % 4 // 2]}]}
            for i in range(500)]
    batches = [pa.Table.from_pylist(rows[i : i + 50]) for i in range(0, 500, 50)]
    first = collect_prompts(batches, 30)
    shuffled = collect_prompts(random.Random(1).sample(batches, len(batches)), 30)
    assert {c: p.sample() for c, p in first.items()} == {c: p.sample() for c, p in shuffled.items()}
    assert {c: (p.pairs, len(p.subjects), len(p.sample())) for c, p in first.items()} == {"a": (250, 7, 30), "b": (250, 7, 30)}
    assert collect_prompts(batches, 1000)["a"].pairs == 250 and len(collect_prompts(batches, 1000)["a"].sample()) == 250
    # category a holds the even rows: lens wide for i % 4 == 0, tele for i % 4 == 2; light cycles through all three
    assert len(first["a"].combinations) == 6
    shares = {(f.facet, f.value): f for f in first["a"].facet_shares({"lens": {"wide": 0.5, "tele": 0.6}})}
    assert {k: f.pairs for k, f in shares.items()} == {("lens", "tele"): 125, ("lens", "wide"): 125, ("light", "dawn"): 84,
                                                      ("light", "dusk"): 83, ("light", "noon"): 83}
    # each shard holds 50 pairs of a, 25 with each lens: floor(0.6 x 50) = 30 tele are owed in all 5
    assert (shares["lens", "wide"].shards_short, shares["lens", "tele"].shards_short, shares["light", "dawn"].shards_short) == (0, 5, None)


def test_the_audit_reports_diversity_and_fails_on_its_limits(tmp_path):
    root = tmp_path / "root"
    storage = make_root(root, shards=1)  # some categories have no committed pair yet
    code, out, report = run_audit(str(root))
    assert code == 0, out
    figures = {c.category: c for c in report.run.diversity.categories}
    assert set(figures) == {c.category for c in report.run.categories}
    aesthetics = figures["aesthetics"]
    # the synthetic root's prompts are "{category} prompt {ordinal}", all from one subject
    texts = [f"aesthetics prompt {o}" for o in range(aesthetics.pairs)]
    assert (aesthetics.distinct_subjects, aesthetics.sample, aesthetics.distinct_prompts) == (1, aesthetics.pairs, 1.0)
    assert aesthetics.distinct_n == {str(n): pytest.approx(distinct_n(texts, n)) for n in (1, 2, 3)}
    assert report.run.diversity.encoder is None and aesthetics.vendi is None
    empty = [c for c in report.run.diversity.categories if c.pairs == 0]
    assert empty and all(c.distinct_prompts is None and c.distinct_n == {} and c.near_duplicate_rate is None for c in empty)
    assert "prompt diversity over the committed pairs" in out and "encoder: none configured" in out

    raw = json.loads(storage.read_bytes(RUN_JSON))
    raw["config"]["audit"] |= {"min_distinct_2": 0.99, "encoder": str(tmp_path / "elsewhere")}
    storage.write_bytes(RUN_JSON, json.dumps(raw).encode())
    code, out, report = run_audit(str(root))
    assert code == 1 and {o.kind for o in report.offenders} == {"diversity"}
    assert {o.category for o in report.offenders} == {c for c, f in figures.items() if f.pairs}  # not the empty ones
    value = figures["aesthetics"].distinct_n["2"]
    assert (f"OFFENDER category aesthetics: prompt distinct bigrams {value:.3f} below audit.min_distinct_2 0.99 "
            f"(over {aesthetics.sample} sampled prompts)") in out
    assert report.run.diversity.encoder_missing == str(tmp_path / "elsewhere")
    assert f"encoder: none: {tmp_path / 'elsewhere'} is not on this machine" in out
