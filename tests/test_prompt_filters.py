"""Prompt filters: lint rules, safety, exact, near-duplicate and embedding dedup, determinism."""

from __future__ import annotations

import random
import re
import string
import sys
import unicodedata
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from datasketch import MinHash
from pydantic import ValidationError

from vipo_build.errors import VipoError
from vipo_build.prompts.dedup import minhash_signatures, normalise, shingle_hashes
from vipo_build.prompts.filter_config import EmbeddingDedupConfig, NearDuplicateConfig, SafetyConfig
from vipo_build.prompts.filters import PromptFilterConfig, PromptFilters
from vipo_build.prompts.safety import load_blocklist

LIGHTHOUSE = (
    "A lighthouse on a rocky cliff at dusk, waves crashing below, warm light from the lantern room, "
    "a dramatic sky of orange and violet clouds, oil painting with thick brush strokes, moody and romantic"
)
MARKET = (
    "A busy street market in the rain, umbrellas in pink, orange and purple, vendors selling fruit "
    "under striped awnings, reflections on wet cobblestones, 35mm film photo with soft grain"
)
FOX = (
    "A red fox curled up asleep in fresh snow at the edge of a birch forest, pale blue morning light, "
    "frost on its whiskers, shallow depth of field, wildlife photography with a telephoto lens"
)


def run_filters(texts: list[str], config: PromptFilterConfig | None = None) -> tuple[list[str], Counter]:
    drops: Counter = Counter()
    filters = PromptFilters(config or PromptFilterConfig())
    keep = filters.filter(texts, drops)
    return [text for text, kept in zip(texts, keep) if kept], drops


# Exact duplicates ------------------------------------------------------------------------


def test_normalise_ignores_case_width_punctuation_and_spacing():
    assert normalise("  A Red-Apple,\tON a TABLE!! ") == "a red apple on a table"
    assert normalise("ＡＢＣ　ｄｅｆ") == "abc def"  # full-width forms (NFKC)
    assert normalise("Straße café") == normalise("STRASSE Café") == "strasse café"
    assert normalise("“Quoted” — text…") == "quoted text"


def test_normalise_of_ascii_text_takes_a_shortcut_to_the_same_result():
    def reference(text: str) -> str:
        return " ".join(re.sub(r"[^\w\s]", " ", unicodedata.normalize("NFKC", text).casefold()).split())

    for code in range(128):
        text = f"Ab{chr(code)}cD e_f"
        assert normalise(text) == reference(text), repr(chr(code))


def test_exact_duplicates_with_case_space_and_punctuation_variants_are_dropped():
    variants = [LIGHTHOUSE, LIGHTHOUSE.upper(), LIGHTHOUSE.replace(",", " ;"), "  " + LIGHTHOUSE.replace(" ", "   ") + " !"]
    kept, drops = run_filters(variants + [MARKET])
    assert kept == [LIGHTHOUSE, MARKET]
    assert drops == Counter(duplicate=3)


# Near duplicates -------------------------------------------------------------------------


def test_near_duplicates_are_dropped_and_distinct_prompts_kept():
    near = [
        LIGHTHOUSE.replace("orange and violet", "orange and purple"),
        LIGHTHOUSE.replace("at dusk", "at sunset"),
        LIGHTHOUSE + ", highly detailed",
        MARKET.replace("selling fruit", "selling vegetables"),
        FOX.replace("asleep ", ""),
    ]
    # Same subjects, different prompts: they share a few phrases and must survive.
    distinct = [
        "A lighthouse on a rocky cliff at noon, seen from a small fishing boat, bright turquoise water, "
        "seagulls overhead, flat vector illustration in pastel colors",
        "A lighthouse keeper climbing a spiral staircase with a lantern, stone walls, long shadows, "
        "charcoal drawing on textured paper",
        "A street market at night lit by paper lanterns, steam rising from noodle stalls, crowds in "
        "winter coats, cinematic wide shot, teal and amber grading",
        "Two red foxes playing in a summer meadow full of poppies, golden hour backlight, watercolor illustration",
    ]
    kept, drops = run_filters([LIGHTHOUSE, MARKET, FOX] + near + distinct)
    assert kept == [LIGHTHOUSE, MARKET, FOX] + distinct
    assert drops == Counter(near_duplicate=len(near))


def test_near_duplicate_of_a_prompt_kept_in_an_earlier_call_is_dropped():
    filters, drops = PromptFilters(PromptFilterConfig()), Counter()
    assert filters.filter([LIGHTHOUSE], drops) == [True]
    assert filters.filter([MARKET], drops) == [True]
    assert filters.filter([FOX, LIGHTHOUSE.replace("dusk", "dawn")], drops) == [True, False]
    assert drops == Counter(near_duplicate=1)


def test_signatures_equal_datasketch_minhash():
    texts = [normalise(t) for t in (LIGHTHOUSE, MARKET, "two words", "one", "")]
    hashes, offsets = shingle_hashes(texts, shingle_words=3)
    permutations = MinHash(num_perm=64, seed=7).permutations
    signatures = minhash_signatures(hashes, offsets, permutations)
    for i in range(len(texts)):
        reference = MinHash(num_perm=64, seed=7, hashfunc=lambda value: value)
        reference.update_batch(hashes[offsets[i] : offsets[i + 1]].tolist())
        assert np.array_equal(signatures[i], reference.hashvalues)


def test_near_duplicate_threshold_is_configurable():
    one_edit = LIGHTHOUSE.replace("at dusk", "at sunset")
    three_edits = one_edit.replace("thick", "thin").replace("moody", "calm")
    strict = PromptFilterConfig(near_duplicates=NearDuplicateConfig(threshold=0.95))
    loose = PromptFilterConfig(near_duplicates=NearDuplicateConfig(threshold=0.4))
    assert run_filters([LIGHTHOUSE, one_edit, three_edits])[0] == [LIGHTHOUSE, three_edits]
    assert run_filters([LIGHTHOUSE, one_edit, three_edits], strict)[0] == [LIGHTHOUSE, one_edit, three_edits]
    assert run_filters([LIGHTHOUSE, one_edit, three_edits], loose)[0] == [LIGHTHOUSE]


# Lint ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("A cat", "too_short"),
        ("Sunset" * 3, "too_few_words"),
        ("A cat on a mat, see https://example.org/cat for more", "url"),
        ("A cat on a mat in front of www.catshop.net", "url"),
        ("A poster with the address cats@example.com", "url"),
        ("A cat on a mat, then the same from petshop.com", "url"),
        ('A sign that reads "OPEN 24 HOURS above the door', "unbalanced_quotes"),
        ("A sign that reads \u201cOPEN 24 HOURS above the door", "unbalanced_quotes"),
        ("A cat (sleeping on a mat near the window", "unbalanced_brackets"),
        ("A cat [sleeping) on a mat near the window", "unbalanced_brackets"),
        ("A cat on a mat\x07 near the window", "control_chars"),
        ("A cat on a mat \u202enear the window", "control_chars"),
        ("a cat on a mat a cat on a mat a cat on a mat a cat on a mat", "repetition"),
    ],
)
def test_lint_rules_drop_with_their_reason(text: str, reason: str):
    kept, drops = run_filters([text])
    assert kept == [] and drops == Counter({reason: 1})


def test_lint_keeps_well_formed_prompts():
    good = [
        'A neon sign that reads "OPEN 24 HOURS" above the diner\'s door, rain on the glass',
        "A chef\u2019s hands slicing carrots (and onions) on a board, \u201cmise en place\u201d, steam from a pot",
        "A children's book illustration: three bears [mother, father, cub] at a picnic, version 2.5 style",
    ]
    assert run_filters(good) == (good, Counter())


def test_max_chars_is_optional():
    long_prompt = " ".join([FOX] * 3)
    bounded = PromptFilterConfig.model_validate({"lint": {"max_chars": 200, "max_repeated_share": 1}})
    assert run_filters([long_prompt], bounded)[1] == Counter(too_long=1)
    assert run_filters([long_prompt], PromptFilterConfig.model_validate({"lint": {"max_repeated_share": 1}}))[0] == [long_prompt]


# Safety ----------------------------------------------------------------------------------


def test_blocklist_matches_whole_words_and_phrases_after_normalisation():
    unsafe = [
        "A gory battlefield scene with soldiers at dawn",
        "A photo of a NUDE figure on a beach at sunset",
        "A teenager thinking about self-harm in a dark room",
        "A flag with a Swastika hanging from a balcony",
    ]
    safe = ["A gorgeous garden with roses and a stone fountain", "A nudibranch sea slug on a coral reef, macro photo"]
    kept, drops = run_filters(unsafe + safe)
    assert kept == safe and drops == Counter(blocklist=len(unsafe))


def test_blocklist_entries_are_normalised(tmp_path: Path):
    (tmp_path / "xx.txt").write_text("# comment\n\nSelf-Harm\n  BAD   word \n")
    blocklist = load_blocklist(("xx",), tmp_path)
    assert blocklist.phrases == {"self harm", "bad word"}
    assert blocklist.match(normalise("so BAD, word!").split()) == "bad word"
    assert blocklist.match(normalise("bad words").split()) is None


def test_unknown_blocklist_language_is_an_error():
    with pytest.raises(VipoError, match="no blocklist for 'zz'"):
        PromptFilters(PromptFilterConfig(safety=SafetyConfig(blocklists=["zz"])))


@pytest.fixture
def dragon_classifier(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Installs module `dragon_safety` whose `flag` marks texts with "dragon" unsafe; returns its calls."""
    module = tmp_path / "dragon_safety.py"
    module.write_text(
        "CALLS = []\n"
        "def flag(texts):\n"
        "    CALLS.append(list(texts))\n"
        "    return ['dragon' in t.lower() for t in texts]\n"
        "def wrong_length(texts):\n"
        "    return [False]\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "dragon_safety", raising=False)
    import dragon_safety

    return dragon_safety.CALLS


def test_classifier_hook_is_called_in_batches_and_its_drops_counted(dragon_classifier: list[list[str]]):
    config = PromptFilterConfig(safety=SafetyConfig(classifier="dragon_safety:flag", classifier_batch_size=2))
    texts = [LIGHTHOUSE, "A dragon breathing fire over a castle", "hi", MARKET, LIGHTHOUSE.lower(), "A Dragon egg in a nest of ash", FOX]
    filters, drops = PromptFilters(config), Counter()
    kept = [text for text, ok in zip(texts, filters.filter(texts, drops)) if ok]
    assert kept == [LIGHTHOUSE, MARKET, FOX]
    assert drops == Counter(unsafe=2, too_short=1, duplicate=1)
    assert [len(batch) for batch in dragon_classifier] == [2, 2, 2]
    assert "hi" not in sum(dragon_classifier, [])
    # Lint failures and duplicates of prompts kept by earlier calls are not sent.
    assert filters.filter([MARKET.upper(), "hi"], drops) == [False, False]
    assert len(dragon_classifier) == 3


def test_classifier_errors_are_reported(dragon_classifier: list[list[str]]):
    wrong = PromptFilterConfig(safety=SafetyConfig(classifier="dragon_safety.wrong_length"))
    with pytest.raises(VipoError, match="returned 1 verdicts for 2 texts"):
        run_filters([LIGHTHOUSE, MARKET], wrong)
    with pytest.raises(VipoError, match="cannot import 'dragon_safety:missing'"):
        PromptFilters(PromptFilterConfig(safety=SafetyConfig(classifier="dragon_safety:missing")))
    with pytest.raises(ValidationError):
        SafetyConfig(classifier="not a path")


# Determinism -----------------------------------------------------------------------------


def synthetic_prompts(n: int, seed: int) -> list[str]:
    """Varied prompts with exact and near duplicates of earlier ones mixed in."""
    rng = random.Random(seed)
    subjects = ["a lighthouse", "a red fox", "a street market", "an old sailor", "a glass teapot", "a city park"]
    details = ["at dawn", "in the rain", "under neon signs", "in thick fog", "by candlelight", "in deep snow"]
    styles = ["oil painting", "35mm film photo", "watercolor", "pencil sketch", "3d render", "ukiyo-e print"]
    moods = ["calm", "eerie", "joyful", "lonely", "festive", "tense"]
    prompts: list[str] = []
    for _ in range(n):
        roll = rng.random()
        if prompts and roll < 0.1:
            prompts.append(rng.choice(prompts).upper())
        elif prompts and roll < 0.2:
            words = rng.choice(prompts).split()
            words[rng.randrange(len(words))] = rng.choice(moods)
            prompts.append(" ".join(words))
        else:
            parts = [rng.choice(subjects), rng.choice(details), rng.choice(styles), rng.choice(moods), "mood"]
            extra = " ".join(rng.choice(string.ascii_lowercase) * 3 for _ in range(4))
            prompts.append(f"{parts[0]} {parts[1]}, {parts[2]}, {parts[3]} {parts[4]}, with {extra} texture details")
    return prompts


def test_same_prompts_give_the_same_survivors_however_they_are_split():
    prompts = synthetic_prompts(600, seed=3)
    whole, whole_drops = run_filters(prompts)
    again, again_drops = run_filters(prompts)
    filters, unit_drops = PromptFilters(PromptFilterConfig()), Counter()
    by_unit = [p for start in range(0, len(prompts), 16) for p, kept in
               zip(prompts[start : start + 16], filters.filter(prompts[start : start + 16], unit_drops)) if kept]
    assert whole == again == by_unit
    assert whole_drops == again_drops == unit_drops
    assert whole_drops["duplicate"] > 0 and whole_drops["near_duplicate"] > 0


def test_band_buckets_moved_to_sorted_arrays_give_the_same_survivors():
    prompts = synthetic_prompts(600, seed=4)
    expected = run_filters(prompts)
    filters, drops = PromptFilters(PromptFilterConfig()), Counter()
    assert filters.near is not None
    filters.near.buckets.stage_at, filters.near.buckets.merge_at = 10, 100  # both sorted tiers fill up
    kept = [p for start in range(0, len(prompts), 16) for p, ok in
            zip(prompts[start : start + 16], filters.filter(prompts[start : start + 16], drops)) if ok]
    assert len(filters.near.buckets.staged) > 0 and len(filters.near.buckets.merged) > 0
    assert (kept, drops) == expected


def test_remembered_prompts_restore_the_dedup_state():
    prompts = synthetic_prompts(400, seed=5)
    first, second = prompts[:200], prompts[200:]
    straight, drops = PromptFilters(PromptFilterConfig()), Counter()
    kept_first = [p for p, kept in zip(first, straight.filter(first, drops)) if kept]
    expected = straight.filter(second, drops)
    resumed = PromptFilters(PromptFilterConfig())
    resumed.remember(kept_first)
    assert resumed.filter(second, Counter()) == expected


# Embedding dedup -------------------------------------------------------------------------


def test_embedding_dedup_drops_paraphrases_and_keeps_distinct_prompts(tiny_encoder: Path):
    original = "a red apple on a wooden table in the morning light"
    paraphrase = "a red apple on the wooden table in morning light"  # neither an exact nor a near duplicate
    distinct = ["a blue car under a tree at night", "an old dog running by the river", "a watercolor painting of a mountain city street"]
    texts = [original, *distinct, paraphrase]
    config = PromptFilterConfig(embedding=EmbeddingDedupConfig(model=str(tiny_encoder), threshold=0.9, batch_size=2))
    kept, drops = run_filters(texts, config)
    assert kept == [original, *distinct] and drops == Counter(semantic_duplicate=1)
    assert run_filters(texts) == (texts, Counter())  # without embeddings all are kept
    # Across calls too, and the same survivors one prompt at a time.
    filters, drops = PromptFilters(config), Counter()
    assert [filters.filter([t], drops)[0] for t in texts] == [True, True, True, True, False]


def test_missing_embedding_model_is_an_error(tmp_path: Path):
    with pytest.raises(VipoError, match="model directory not found"):
        PromptFilters(PromptFilterConfig(embedding=EmbeddingDedupConfig(model=str(tmp_path / "nope"))))


# Config ----------------------------------------------------------------------------------


def test_config_defaults_and_unknown_keys():
    config = PromptFilterConfig()
    assert config.exact_dedup and config.near_duplicates.enabled and config.embedding is None
    assert config.safety.blocklists == ["en"] and config.lint.min_chars == 10
    with pytest.raises(ValidationError):
        PromptFilterConfig.model_validate({"near_duplicates": {"treshold": 0.5}})
    off = PromptFilterConfig(exact_dedup=False, near_duplicates=NearDuplicateConfig(enabled=False))
    assert run_filters([LIGHTHOUSE, LIGHTHOUSE], off)[0] == [LIGHTHOUSE, LIGHTHOUSE]
