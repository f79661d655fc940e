"""The subject pass's choices that need no LLM: which requests it asks, what it shows, what it keeps."""

from __future__ import annotations

import math

from vipo_build.prompts.categories import load_category
from vipo_build.prompts.expand import unit_requests
from vipo_build.prompts.subjects import SubjectLibrary, subject_conversation, writes_subject


def test_a_written_subject_that_repeats_the_library_or_its_unit_is_not_used():
    library = SubjectLibrary(["a red apple on a wooden table", "a dog running in a park"], similarity=0.6, max_chars=60)
    written = [
        "A red apple, on a wooden table!",  # the library's words
        "a red apple on the wooden table",  # 6 of 7 words shared: Jaccard 0.86
        "  a lighthouse keeper climbing   spiral stairs at dawn ",
        "a lighthouse keeper climbing the spiral stairs at dawn",  # the unit's own earlier subject
        "a dog sleeping in a park",  # {a, dog, in, park} of 6 words: 0.67
        "a dog running through snow",  # 3 of 7 words: 0.43
        "",
        None,
        "a very long subject about a lighthouse keeper climbing spiral stairs",  # 68 characters
    ]
    assert library.novel(written) == [None, None, "a lighthouse keeper climbing spiral stairs at dawn", None, None,
                                      "a dog running through snow", None, None, None]


def test_which_requests_get_a_written_subject_is_drawn_per_request_at_the_share():
    category = load_category("aesthetics")
    requests = [r for unit in range(625) for r in unit_requests(category, 5, unit, 16)]  # 10,000
    asked = [writes_subject(5, r.category, r.unit, r.index, 0.3) for r in requests]
    assert asked == [writes_subject(5, r.category, r.unit, r.index, 0.3) for r in requests]
    assert asked != [writes_subject(6, r.category, r.unit, r.index, 0.3) for r in requests]
    assert abs(sum(asked) - 3000) <= 4 * math.sqrt(10_000 * 0.3 * 0.7)


def test_the_subject_request_shows_library_examples_and_the_requests_facets():
    category = load_category("human_quality")
    request = unit_requests(category, 5, 3, 16)[7]
    [system, user] = subject_conversation(category, 5, request, examples=4)
    shown = [line[2:] for line in user["content"].splitlines() if line.startswith("- ")]
    assert len(shown) == 4 and set(shown) <= set(category.seeds)
    assert all(value in user["content"] for _, value in request.facets)
    assert category.description in system["content"]
    assert subject_conversation(category, 5, request, examples=4) == [system, user]
