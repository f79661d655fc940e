"""A vLLM engine answering chat requests in a JSON schema: shared by the prompt and judge stages."""

from __future__ import annotations

import json
from typing import Any

from vipo_build.config import EngineConfig
from vipo_build.runtime import endpoint


def start_engine(engine: EngineConfig, seed: int, **extra: Any):
    """Load `engine.model` into a vllm.LLM (imported here: only engine actors pay for vLLM), or
    connect to the engine's OpenAI-compatible endpoint when it names one."""
    if engine.endpoint is not None:
        return endpoint.start_endpoint(engine.endpoint)
    from vllm import LLM

    kwargs = {
        "model": engine.model,
        "load_format": engine.load_format,
        "dtype": engine.dtype,
        "gpu_memory_utilization": engine.gpu_memory_utilization,
        "tensor_parallel_size": engine.tensor_parallel_size,
        "enforce_eager": engine.enforce_eager,
        "seed": seed,
        # Compact JSON: no free whitespace for a model to spend its token budget on.
        "structured_outputs_config": {"backend": "xgrammar", "disable_any_whitespace": True},
        **({"max_model_len": engine.max_model_len} if engine.max_model_len else {}),
        **extra,
        **engine.options,
    }
    return LLM(**kwargs)


def chat_json(
    llm,
    conversations: list[list[dict]],
    seeds: list[int],
    schema: dict,
    temperature: float,
    max_tokens: int,
) -> list[dict | None]:
    """One answer per conversation, constrained to `schema`; None where the answer is not valid JSON.

    Each request has its own seed: the same seed gives the same answer, so k votes need k seeds.
    """
    if isinstance(llm, endpoint.EndpointClient):
        return endpoint.chat_json(llm, conversations, seeds, schema, temperature, max_tokens)
    from vllm import SamplingParams
    from vllm.sampling_params import StructuredOutputsParams

    params = [
        SamplingParams(
            temperature=temperature,
            max_tokens=max_tokens,
            seed=seed,
            structured_outputs=StructuredOutputsParams(json=schema),
        )
        for seed in seeds
    ]
    outputs = llm.chat(conversations, params, use_tqdm=False)
    return [_parse(out.outputs[0].text) for out in outputs]


def _parse(text: str) -> dict | None:
    try:
        value = json.loads(text, strict=False)  # control characters inside strings are tolerated
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None
