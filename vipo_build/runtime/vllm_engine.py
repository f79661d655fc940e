"""A vLLM engine answering chat requests in a JSON schema: shared by the prompt and judge stages."""

from __future__ import annotations

import contextlib
import json
import threading
from concurrent.futures import InvalidStateError
from dataclasses import dataclass
from multiprocessing import connection
from typing import Any

from vipo_build.config import EngineConfig
from vipo_build.errors import VipoError, one_line
from vipo_build.runtime import actor_log, endpoint, lifetimes
from vipo_build.runtime.llm import LLMBackend, per_request


# Sequences a CPU engine runs at once: on CPU a bigger batch buys no speed, and this bounds the
# token budget that cpu_scheduler_options derives from it.
CPU_MAX_NUM_SEQS = 64


def cpu_scheduler_options(max_model_len: int | None, options: dict[str, Any], where: str) -> dict[str, Any]:
    """vLLM scheduler settings under which no prefill of any request is ever split across steps.

    vLLM discards the token it sampled for a request whose prompt was only partly prefilled in a
    step and rewinds that request's torch.Generator with `set_offset`; CPU generators have no
    offset, so a split prefill of a seeded request kills the engine ("CPU Generator does not use
    offset"). A prefill is split when chunked prefill cuts it to the step's token budget, or when
    the encoder budget (which vLLM sizes from the token budget) runs out before the request's
    images. With chunked prefill off and a token budget that holds the longest possible prompt of
    every sequence a step can run (max_model_len x max_num_seqs), a waiting request is scheduled
    whole or waits for the next step, however many requests are queued.
    """
    if max_model_len is None:
        raise VipoError(f"{where}: set max_model_len: a CPU engine sizes its token budget from it")
    seqs = int(options.get("max_num_seqs", CPU_MAX_NUM_SEQS))
    return {
        "enable_chunked_prefill": False,
        "long_prefill_token_threshold": 0,
        "max_num_seqs": seqs,
        "max_num_batched_tokens": max(int(options.get("max_num_batched_tokens", 0)), max_model_len * seqs),
    }


def start_engine(engine: EngineConfig, seed: int, where: str, **extra: Any) -> LLMBackend:
    """Load `engine.model` into a vllm.LLM (imported here: only engine actors pay for vLLM), or
    connect to the engine's OpenAI-compatible endpoint when it names one. `where` names the
    engine's config field in errors, e.g. "judge.engines[0].engine"."""
    if engine.endpoint is not None:
        return endpoint.start_endpoint(engine.endpoint, {k: v for k, v in extra.items() if k in endpoint.MEDIA_KWARGS})
    from vllm import LLM
    from vllm.platforms import current_platform

    lifetimes.spawned_children_die_with_this_process()  # vLLM's engine core must not outlive this actor
    logs = actor_log.marks()
    # GPU engines keep vLLM's own scheduler settings: CUDA generators can rewind.
    scheduler = cpu_scheduler_options(engine.max_model_len, engine.options, where) if current_platform.is_cpu() else {}
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
        **scheduler,
    }
    return LocalEngine(engine.model, LLM(**kwargs), logs)


ENGINE_MONITOR_THREAD = "MPClientEngineMonitor"  # vLLM's thread that logs an engine core's death and cleans up
ENGINE_CLEANUP_WAIT_S = 30.0


class EngineWatch:
    """Turns the death of a vllm.LLM's engine core processes into an error of the call waiting on them.

    vLLM notices a dead engine core in a monitor thread, which marks the client dead and stops the
    thread that feeds the client's output queue and answers its utility calls, without putting an
    error on that queue or those answers. A call that sent its requests before the mark (the engine
    died while idle and the mark is not yet set, or it dies mid-call) would wait forever. This
    watch puts the error there itself as soon as a process's sentinel says it has exited. Clients
    without engine processes (vLLM's in-process mode) are not watched.
    """

    def __init__(self, client: Any):
        self.client = client
        manager = getattr(getattr(client, "resources", None), "engine_manager", None)
        self.sentinels = [p.sentinel for p in getattr(manager, "processes", [])]
        self.done = threading.Event()

    def dead(self, timeout: float = 0.0) -> bool:
        return bool(self.sentinels) and bool(connection.wait(self.sentinels, timeout=timeout))

    def raise_if_dead(self) -> None:
        if self.dead():
            from vllm.v1.engine.exceptions import EngineDeadError

            raise EngineDeadError()

    def __enter__(self) -> EngineWatch:
        if self.sentinels and hasattr(self.client, "outputs_queue"):
            threading.Thread(target=self._watch, name="vipo-engine-watch", daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()

    def _watch(self) -> None:
        from vllm.v1.engine.exceptions import EngineDeadError

        while not self.done.is_set():
            if self.dead(timeout=1.0):
                if not self.done.is_set():
                    self.client.outputs_queue.put_nowait(EngineDeadError())
                    for pending in list(getattr(self.client, "utility_results", {}).values()):
                        with contextlib.suppress(InvalidStateError):  # answered meanwhile
                            pending.set_exception(EngineDeadError())
                return

    def await_cleanup(self) -> None:
        if self.dead():
            for thread in threading.enumerate():
                if thread.name == ENGINE_MONITOR_THREAD:
                    thread.join(ENGINE_CLEANUP_WAIT_S)


class EngineFailed(VipoError):
    """An in-process engine died or raised; the message carries the cause found in the actor's log."""


@dataclass
class LocalEngine:
    """A vllm.LLM in this process, and where its processes write their logs (for a failure's cause)."""

    model: str
    llm: Any
    logs: list[actor_log.LogMark]  # the ends of the log files when the engine started

    def chat_json(self, conversations: list[list[dict]], seeds: list[int], schema: dict | list[dict],
                  temperature: float, max_tokens: int) -> list[dict | None]:
        """LLMBackend.chat_json: one engine call of every request, each with its seed and schema."""
        from vllm import SamplingParams
        from vllm.sampling_params import StructuredOutputsParams

        params = [SamplingParams(temperature=temperature, max_tokens=max_tokens, seed=seed,
                                 structured_outputs=StructuredOutputsParams(json=one))
                  for seed, one in zip(seeds, per_request(schema, len(conversations)))]
        return [_parse(out.outputs[0].text) for out in self.chat(conversations, params)]

    def chat(self, conversations: list[list[dict]], params: list) -> list:
        watch = EngineWatch(self.llm.llm_engine.engine_core)
        try:
            watch.raise_if_dead()
            with watch:
                return self.llm.chat(conversations, params, use_tqdm=False)
        except Exception as err:
            watch.await_cleanup()  # vLLM logs the death and stops the engine's processes first
            raise EngineFailed(self.describe(err)) from None

    def describe(self, err: Exception) -> str:
        found = actor_log.find_cause(self.logs)
        if found:
            return f"engine {self.model}: {found[0]} (log: {found[1]})"
        return f"engine {self.model}: {one_line(err)}"


def _parse(text: str) -> dict | None:
    try:
        value = json.loads(text, strict=False)  # control characters inside strings are tolerated
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None
