"""The judge's question and answer format, built from a category's rubric."""

from __future__ import annotations

from vipo_build.judge.views import View, VideoView
from vipo_build.prompts.categories import Category
from vipo_build.records import ViewKind


def verdict_schema(category: Category, reason_chars: int) -> dict:
    """JSON schema the judge's answer must follow (enforced by vLLM structured outputs)."""
    scores = {
        "type": "object",
        "properties": {d: {"type": "integer", "minimum": 1, "maximum": 5} for d in category.rubric.dimension_names},
        "required": category.rubric.dimension_names,
        "additionalProperties": False,
    }
    properties = {"winner": {"enum": ["A", "B", "tie"]}, "scores_a": scores, "scores_b": scores}
    if reason_chars:
        properties["reason"] = {"type": "string", "maxLength": reason_chars}
    return {"type": "object", "properties": properties, "required": ["winner", "scores_a", "scores_b"], "additionalProperties": False}


def judge_conversation(category: Category, prompt: str, first: View, second: View, kind: ViewKind) -> list[dict]:
    """One chat request: the rubric, the prompt, candidate A then candidate B, each as the judge sees it."""
    medium = {"image": "image", "contact_sheet": "video (shown as a grid of frames in time order)", "video": "video"}[kind]
    criteria = "\n".join(f"{i}. {c}" for i, c in enumerate(category.rubric.criteria, 1))
    dimensions = "\n".join(f"- {d.name}: {d.description}" for d in category.rubric.dimensions)
    instructions = (
        f"You compare two generated {medium}s for the category '{category.name}': {category.description}\n"
        f"Apply these criteria in order:\n{criteria}\n"
        f"Score each candidate from 1 to 5 on:\n{dimensions}\n"
        "Answer in JSON with the winner (A, B or tie), scores_a and scores_b."
    )
    return [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": f"{instructions}\nPrompt: {prompt}\nCandidate A:"},
                content_part(first),
                {"type": "text", "text": "Candidate B:"},
                content_part(second),
            ],
        }
    ]


def content_part(view: View) -> dict:
    """A view as a chat content part: a PIL image, or a clip's frames as vLLM's frame-sequence video."""
    if isinstance(view, VideoView):
        return {"type": "video_url", "video_url": {"url": view.data_url()}}
    return {"type": "image_pil", "image_pil": view}
