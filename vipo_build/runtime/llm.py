"""What the prompt and judge stages ask of a language model, whichever backend answers: a vLLM
engine in the stage's actor (vllm_engine.LocalEngine) or an OpenAI-compatible server such as
`vllm serve` (endpoint.EndpointClient)."""

from __future__ import annotations

from typing import Protocol


class LLMBackend(Protocol):
    def chat_json(self, conversations: list[list[dict]], seeds: list[int], schema: dict | list[dict],
                  temperature: float, max_tokens: int) -> list[dict | None]:
        """One answer per conversation, constrained to `schema` (one for all, or one per
        conversation); None where no valid JSON came back. All of them are asked at once.

        Each request has its own seed: the same seed gives the same answer, so k votes need k seeds.
        """
        ...


def per_request(schema: dict | list[dict], requests: int) -> list[dict]:
    """The schema of each request."""
    return schema if isinstance(schema, list) else [schema] * requests
