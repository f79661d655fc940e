"""The judge's question and answer format, built from a category's rubric."""

from __future__ import annotations

from PIL import Image

from vipo_build.prompts.categories import Category


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


def judge_conversation(category: Category, prompt: str, first: Image.Image, second: Image.Image) -> list[dict]:
    """One chat request: the rubric, the prompt, candidate A then candidate B."""
    medium = "image" if category.modality == "image" else "video (shown as a grid of frames in time order)"
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
                {"type": "image_pil", "image_pil": first},
                {"type": "text", "text": "Candidate B:"},
                {"type": "image_pil", "image_pil": second},
            ],
        }
    ]
