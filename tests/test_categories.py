"""The category library: five image and three video categories, each complete."""

from __future__ import annotations

from vipo_build.prompts.categories import known_categories, load_category

IMAGE = ["aesthetics", "composition", "human_quality", "text_image_alignment", "text_rendering"]
VIDEO = ["motion_quality", "video_text_alignment", "visual_quality"]


def test_library_has_the_eight_categories():
    assert known_categories() == sorted(IMAGE + VIDEO)
    assert [load_category(c).modality for c in IMAGE] == ["image"] * 5
    assert [load_category(c).modality for c in VIDEO] == ["video"] * 3


def test_each_category_is_complete():
    for name in IMAGE + VIDEO:
        category = load_category(name)
        assert category.name == name
        assert len(set(category.seeds)) == len(category.seeds) >= 50
        assert "alignment" in category.rubric.dimension_names
        assert category.rubric.critical and set(category.rubric.critical) <= set(category.rubric.dimension_names)
        assert category.expansion.instructions.strip()


def test_default_shares_sum_to_one_per_modality():
    for names in (IMAGE, VIDEO):
        assert abs(sum(load_category(c).default_share for c in names) - 1) < 1e-6
