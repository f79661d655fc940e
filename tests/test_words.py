"""Text to render drawn from the vocabulary: deterministic draws that follow their weights, prompts
that carry the words verbatim, and perturbations that are exactly one edit of them."""

from __future__ import annotations

import math
from collections import Counter

from vipo_build.prompts.accept import accept
from vipo_build.prompts.categories import load_category
from vipo_build.prompts.expand import conversation, unit_requests
from vipo_build.prompts.filter_config import PromptFilterConfig
from vipo_build.prompts.filters import PromptFilters
from vipo_build.prompts.words import carried, draw_text

CATEGORY = load_category("text_rendering")


def within_4_sd(count: int, p: float, n: int) -> bool:
    return abs(count - p * n) <= 4 * math.sqrt(n * p * (1 - p))


def test_texts_are_drawn_deterministically_by_script_length_and_case_weights():
    words = CATEGORY.words
    draws = [draw_text(CATEGORY, 3, unit, i) for unit in range(625) for i in range(16)]  # 10,000
    assert draws == [draw_text(CATEGORY, 3, unit, i) for unit in range(625) for i in range(16)]
    assert draws != [draw_text(CATEGORY, 4, unit, i) for unit in range(625) for i in range(16)]
    scripts = Counter(d.script for d in draws)
    for script, weight in words.scripts.items():
        assert within_4_sd(scripts[script], weight / sum(words.scripts.values()), len(draws)), script
    lengths = Counter(len(d.text.split(" ")) for d in draws)
    for length, weight in words.lengths.items():
        assert within_4_sd(lengths[length], weight / sum(words.lengths.values()), len(draws)), length
    upper = sum(d.text.isupper() for d in draws)
    assert within_4_sd(upper, words.cases["upper"] / sum(words.cases.values()), len(draws))
    for d in draws:
        tokens = d.text.split(" ")
        vocabulary = {w.lower() for w in words.vocabulary[d.script]}
        assert len(set(tokens)) == len(tokens) and all(t.lower() in vocabulary for t in tokens)
    assert [r.text for r in unit_requests(CATEGORY, 3, 7, 16)] == draws[7 * 16 : 8 * 16]


def test_the_prompt_carries_the_text_and_its_perturbation_is_one_edit_of_it():
    requests = [r for unit in range(40) for r in unit_requests(CATEGORY, 9, unit, 16)]
    quoted = [f'Shop sign {i} that says "{r.text.text}", in gold letters.' for i, r in enumerate(requests[::2])]
    without = [f"Shop sign {i} in gold letters on a brick wall at dusk." for i, _ in enumerate(requests[1::2])]
    answers = [{"prompt": p, "constraints": [], "subject": r.seed_subject}
               for p, r in zip([x for pair in zip(quoted, without) for x in pair], requests)]
    prompts = accept(CATEGORY, requests, answers, PromptFilters(PromptFilterConfig(near_duplicates={"enabled": False})), 0, "llm", Counter())
    assert len(prompts) == len(requests)
    edits = Counter()
    for prompt, request in zip(prompts, requests):
        text = request.text.text
        assert prompt.rendered_text == text and f'"{text}"' in prompt.text
        before, after = prompt.text.split(f'"{text}"')
        assert prompt.perturbed_text.startswith(before + '"') and prompt.perturbed_text.endswith('"' + after)
        edited = prompt.perturbed_text[len(before) + 1 : len(prompt.perturbed_text) - len(after) - 1]
        old, new = text.split(" "), edited.split(" ")
        assert len(old) == len(new) and sum(a != b for a, b in zip(old, new)) == 1, (text, edited)
        edits[prompt.perturbation.split(":")[0]] += 1
    assert set(edits) == {"swap letters", "replace letter", "drop letter", "replace word"}
    assert prompts[1].text == 'Shop sign 0 in gold letters on a brick wall at dusk. The text reads "' + requests[1].text.text + '".'


def test_the_text_goes_to_the_llm_quoted():
    request = unit_requests(CATEGORY, 9, 0, 16)[3]
    [system, user] = conversation(CATEGORY, request.seed_subject, request.facets, request.text)
    assert f'Text to render: "{request.text.text}"' in user["content"] and "exactly as given" in system["content"]
    assert carried(f'x "{request.text.text}" y', request.text.text) == f'x "{request.text.text}" y'
