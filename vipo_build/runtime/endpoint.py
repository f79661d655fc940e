"""An OpenAI-compatible chat endpoint (e.g. `vllm serve`) answering chat requests in a JSON schema.

Stands in for runtime/vllm_engine.py: `start_endpoint` for `start_engine`, `chat_json` for its
`chat_json` (same inputs, same answers). Each request keeps its seed across retries, so an answer
does not depend on how often the server failed; only a malformed answer is re-asked with a new seed
derived from the original one. Failures never raise: they come back as None with a reason, except
configuration errors every request would hit (missing key variable, key rejected, unknown model).
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import random
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import jsonschema
import openai
from PIL import Image
from pydantic import Field, model_validator

from vipo_build.errors import VipoError
from vipo_build.runtime.llm import per_request
from vipo_build.seeding import derive_seed
from vipo_build.strict import RUNTIME_ONLY, StrictModel

# How often a down server is probed, and how long one probe may take.
PROBE_INTERVAL_S = 0.5
PROBE_TIMEOUT_S = 5.0
# Detail strings carry at most this much of a model's answer or a validation message.
DETAIL_CHARS = 200

# An engine's multimodal settings that a server takes per request (limit_mm_per_prompt is the server's own)
MEDIA_KWARGS = ("media_io_kwargs", "mm_processor_kwargs")
# vLLM's server flag that lets requests carry their own multimodal settings; its refusals name it
TRUST_MM_FLAG = "--trust-request-mm-kwargs"

DropReason = Literal["malformed_answer", "endpoint_error"]
T = TypeVar("T")


class EndpointConfig(StrictModel):
    """An OpenAI-compatible server answering /v1/chat/completions, e.g. `vllm serve`."""

    base_url: str = Field(json_schema_extra=RUNTIME_ONLY, description="API root including /v1, e.g. http://127.0.0.1:8000/v1.")
    model: str = Field(description="Model name as the server lists it under /v1/models.")
    api_key_env: str | None = Field(
        None,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        json_schema_extra=RUNTIME_ONLY, description="Name of the environment variable holding the API key (never the key itself); none: send no real key.",
    )
    max_concurrency: int = Field(64, ge=1, json_schema_extra=RUNTIME_ONLY, description="Requests in flight at once, per client.")
    timeout_s: float = Field(300, gt=0, json_schema_extra=RUNTIME_ONLY, description="Seconds one request may take before it is retried.")
    max_retries: int = Field(5, ge=0, json_schema_extra=RUNTIME_ONLY, description="Retries of a request after connection errors, timeouts, HTTP 429 or 5xx.")
    max_reasks: int = Field(
        2, ge=0, description="Times a malformed answer (not JSON, or not matching the schema) is asked again with a new seed."
    )
    backoff_s: float = Field(0.5, ge=0, json_schema_extra=RUNTIME_ONLY, description="Wait before the first retry; doubles with each further retry (with jitter).")
    max_backoff_s: float = Field(30, ge=0, json_schema_extra=RUNTIME_ONLY, description="Longest wait between retries.")
    wait_for_server_s: float = Field(
        600, ge=0, json_schema_extra=RUNTIME_ONLY, description="How long an unreachable server may take to come back before its requests are dropped."
    )
    send_schema: bool = Field(True, description="Send the schema as response_format json_schema so the server constrains decoding.")
    send_video_timing: bool = Field(
        True,
        json_schema_extra=RUNTIME_ONLY,
        description="Send a video judge's frame timing (media_io_kwargs, mm_processor_kwargs) with each request that carries a "
        "clip; vLLM takes them only from a server started with --trust-request-mm-kwargs. Off: start the server with the "
        "run's --media-io-kwargs and --mm-processor-kwargs instead (a refused request's error prints them).",
    )

    @model_validator(mode="after")
    def _backoff_bounded(self) -> EndpointConfig:
        if self.max_backoff_s < self.backoff_s:
            raise ValueError(f"max_backoff_s ({self.max_backoff_s}) is below backoff_s ({self.backoff_s})")
        return self


class EndpointError(VipoError):
    """A configuration problem every request would hit; raised instead of dropping every request."""


@dataclass(frozen=True)
class Outcome:
    """What became of one request: the parsed answer, or None and why."""

    answer: dict | None
    attempts: int  # requests sent for this conversation, re-asks and retries included
    reason: DropReason | None = None
    detail: str = ""  # the last problem seen, e.g. "HTTP 503" or "not JSON: ..."


class EndpointClient:
    """Synchronous client: each call runs its own event loop, so it works in Ray actors and the driver."""

    def __init__(self, config: EndpointConfig, media_kwargs: dict[str, dict] | None = None):
        """`media_kwargs`: the multimodal settings an in-process engine would be started with (a video judge's
        media_io_kwargs and mm_processor_kwargs); a server gets them with each request that carries a clip."""
        self.config = config
        self.media_kwargs = media_kwargs or {}
        self._api_key = read_api_key(config)

    def __repr__(self) -> str:
        return f"EndpointClient(base_url={self.config.base_url!r}, model={self.config.model!r})"

    def ask(
        self,
        conversations: list[list[dict]],
        seeds: list[int],
        schema: dict,
        temperature: float,
        max_tokens: int,
    ) -> list[Outcome]:
        """One outcome per conversation, in request order."""
        if len(conversations) != len(seeds):
            raise ValueError(f"{len(conversations)} conversations but {len(seeds)} seeds")
        return run_sync(lambda: self._ask_all(conversations, seeds, schema, temperature, max_tokens))

    def chat_json(self, conversations: list[list[dict]], seeds: list[int], schema: dict | list[dict],
                  temperature: float, max_tokens: int) -> list[dict | None]:
        """LLMBackend.chat_json: the requests asked together, a group per distinct schema (one
        response_format per group); None where no usable answer came back."""
        schemas = per_request(schema, len(conversations))
        groups: dict[str, list[int]] = {}
        for i, one in enumerate(schemas):
            groups.setdefault(json.dumps(one, sort_keys=True), []).append(i)
        answers: list[dict | None] = [None] * len(conversations)
        for indices in groups.values():
            outcomes = self.ask([conversations[i] for i in indices], [seeds[i] for i in indices], schemas[indices[0]],
                                temperature, max_tokens)
            for i, outcome in zip(indices, outcomes):
                answers[i] = outcome.answer
        return answers

    def wait_until_up(self) -> None:
        """Block until the server answers, for at most wait_for_server_s; EndpointError if it never does."""

        async def wait() -> bool:
            async with self._open() as client:
                watch = ServerWatch(client, self.config.wait_for_server_s)
                watch.mark_down()
                return await watch.wait_until_up()

        if not run_sync(wait):
            raise EndpointError(f"{self.config.base_url}: no answer within {self.config.wait_for_server_s:g} s")

    def _open(self) -> openai.AsyncOpenAI:
        # Retries are ours (seeded backoff, waiting out restarts), so the library's are off.
        return openai.AsyncOpenAI(
            base_url=self.config.base_url, api_key=self._api_key or "EMPTY", timeout=self.config.timeout_s, max_retries=0
        )

    async def _ask_all(
        self, conversations: list[list[dict]], seeds: list[int], schema: dict, temperature: float, max_tokens: int
    ) -> list[Outcome]:
        encode = image_encoder()
        messages = [openai_messages(c, encode) for c in conversations]
        async with self._open() as client:
            session = Session(
                client=client,
                config=self.config,
                slots=asyncio.Semaphore(self.config.max_concurrency),
                watch=ServerWatch(client, self.config.wait_for_server_s),
                validator=jsonschema.Draft202012Validator(schema),
                request=request_options(self.config, schema, temperature, max_tokens),
                video_kwargs=self.media_kwargs if self.config.send_video_timing else {},
            )
            # gather keeps request order whatever order the answers arrive in.
            return list(await asyncio.gather(*(session.ask(m, seed) for m, seed in zip(messages, seeds))))


def start_endpoint(config: EndpointConfig, media_kwargs: dict[str, dict] | None = None) -> EndpointClient:
    """A client for `config`, once its server answers (a server may still be loading its model)."""
    client = EndpointClient(config, media_kwargs)
    client.wait_until_up()
    return client


def read_api_key(config: EndpointConfig) -> str | None:
    if config.api_key_env is None:
        return None
    key = os.environ.get(config.api_key_env)
    if not key:
        raise EndpointError(f"endpoint API key: environment variable {config.api_key_env} is not set")
    return key


def run_sync(make_coroutine: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to completion from synchronous code."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make_coroutine())
    # Called from inside a running loop (an async Ray actor): use a private loop in a worker thread.
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(make_coroutine())).result()


# Requests -------------------------------------------------------------------------------


def request_options(config: EndpointConfig, schema: dict, temperature: float, max_tokens: int) -> dict[str, Any]:
    """Keyword arguments shared by every request of a call."""
    options: dict[str, Any] = {"model": config.model, "temperature": temperature, "max_tokens": max_tokens}
    if config.send_schema:
        # vLLM turns this into structured outputs (guided decoding), like the offline engine's json schema.
        options["response_format"] = {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}}
    return options


def carries_video(messages: list[dict]) -> bool:
    """Whether a conversation holds a video part (a native video judge's clip)."""
    return any(isinstance(m.get("content"), list) and any(p.get("type") == "video_url" for p in m["content"]) for m in messages)


def image_encoder() -> Callable[[Image.Image], str]:
    """PNG data URLs (lossless: the server sees the pixels the offline engine would), each image encoded once."""
    encoded: dict[int, str] = {}

    def encode(image: Image.Image) -> str:
        if id(image) not in encoded:
            buffer = io.BytesIO()
            image.save(buffer, format="PNG")
            encoded[id(image)] = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
        return encoded[id(image)]

    return encode


def openai_messages(conversation: list[dict], encode: Callable[[Image.Image], str]) -> list[dict]:
    """A conversation in vLLM's offline chat format with its PIL images as OpenAI image_url parts."""
    return [
        {**message, "content": [openai_part(part, encode) for part in message["content"]]}
        if isinstance(message.get("content"), list)
        else message
        for message in conversation
    ]


def openai_part(part: dict, encode: Callable[[Image.Image], str]) -> dict:
    if part.get("type") != "image_pil":
        return part
    return {"type": "image_url", "image_url": {"url": encode(part["image_pil"])}}


def reask_seed(seed: int, reask: int) -> int:
    return derive_seed(seed, "reask", reask)


def backoff_delay(config: EndpointConfig, seed: int, retry: int) -> float:
    """Exponential and capped, scaled by a jitter in [0.5, 1) drawn from the request's seed (reruns wait alike)."""
    ceiling = min(config.max_backoff_s, config.backoff_s * 2 ** (retry - 1))
    return ceiling * (0.5 + 0.5 * random.Random(derive_seed(seed, "backoff", retry)).random())


def parse_answer(text: str | None, validator: jsonschema.Draft202012Validator) -> tuple[dict | None, str]:
    """The answer as a dict matching the schema, or None and what is wrong with it."""
    if text is None:
        return None, "no content"
    try:
        value = json.loads(text, strict=False)  # control characters inside strings are tolerated, as offline
    except json.JSONDecodeError:
        return None, f"not JSON: {text[:DETAIL_CHARS]!r}"
    error = jsonschema.exceptions.best_match(validator.iter_errors(value))
    if error is not None:
        return None, f"schema: {error.message[:DETAIL_CHARS]}"
    return value, ""


class Transient(Exception):
    """A failure worth retrying with the same seed: the server was down, slow, overloaded or broken."""

    def __init__(self, detail: str, server_down: bool):
        super().__init__(detail)
        self.detail = detail
        self.server_down = server_down


class Rejected(Exception):
    """A request the server refused (HTTP 4xx); sending it again would be refused again."""

    def __init__(self, status: int):
        super().__init__(f"HTTP {status}")
        self.detail = f"HTTP {status}"


class ServerWatch:
    """Whether the server is up, shared by a call's requests: one outage has one deadline for all of them."""

    def __init__(self, client: openai.AsyncOpenAI, wait_s: float):
        self._client = client
        self._wait_s = wait_s
        self._down_since: float | None = None
        self._lock = asyncio.Lock()  # one request probes; the others wait for its finding

    def mark_down(self) -> None:
        if self._down_since is None:
            self._down_since = time.monotonic()

    async def wait_until_up(self) -> bool:
        """True once the server answers; False if it stayed down past the outage's deadline."""
        if self._down_since is None:
            return True
        async with self._lock:
            while self._down_since is not None:
                if await self._answers():
                    self._down_since = None
                    break
                if time.monotonic() - self._down_since >= self._wait_s:
                    return False
                await asyncio.sleep(PROBE_INTERVAL_S)
        return True

    async def _answers(self) -> bool:
        try:
            await self._client.models.list(timeout=PROBE_TIMEOUT_S)
        except openai.APIStatusError:
            return True  # an HTTP error is still an answer: the server is up
        except openai.APIError:
            return False
        return True


@dataclass
class Session:
    """The shared state of one `ask` call: client, concurrency slots, server watch, schema."""

    client: openai.AsyncOpenAI
    config: EndpointConfig
    slots: asyncio.Semaphore
    watch: ServerWatch
    validator: jsonschema.Draft202012Validator
    request: dict[str, Any]
    video_kwargs: dict[str, dict]  # sent with the requests that carry a video (a server may refuse them: see TRUST_MM_FLAG)

    async def ask(self, messages: list[dict], seed: int) -> Outcome:
        """Ask until a valid answer comes back or the re-ask or retry budget is spent."""
        attempts = retries = reasks = 0
        while True:
            try:
                async with self.slots:
                    # Checked once a slot is held, so queued requests are not sent into a known outage.
                    if not await self.watch.wait_until_up():
                        return Outcome(None, attempts, "endpoint_error", "server unreachable for longer than wait_for_server_s")
                    attempts += 1
                    text = await self._send(messages, reask_seed(seed, reasks) if reasks else seed)
            except Rejected as rejected:
                return Outcome(None, attempts, "endpoint_error", rejected.detail)
            except Transient as failure:
                retries += 1
                if retries > self.config.max_retries:
                    return Outcome(None, attempts, "endpoint_error", failure.detail)
                if failure.server_down:
                    self.watch.mark_down()
                await asyncio.sleep(backoff_delay(self.config, seed, retries))
                continue
            answer, problem = parse_answer(text, self.validator)
            if answer is not None:
                return Outcome(answer, attempts)
            reasks += 1
            if reasks > self.config.max_reasks:
                return Outcome(None, attempts, "malformed_answer", problem)

    async def _send(self, messages: list[dict], seed: int) -> str | None:
        """One request's answer text; failures sorted into Transient, Rejected and EndpointError."""
        # vLLM's request fields beside the OpenAI ones; only where a video needs them, so image requests go to any server
        video = self.video_kwargs if self.video_kwargs and carries_video(messages) else None
        try:
            completion = await self.client.chat.completions.create(messages=messages, seed=seed, extra_body=video, **self.request)
        except openai.APITimeoutError:
            raise Transient(f"timed out after {self.config.timeout_s:g} s", server_down=False) from None
        except openai.APIConnectionError as error:
            raise Transient(f"connection failed ({type(error.__cause__ or error).__name__})", server_down=True) from None
        except openai.APIStatusError as error:
            raise status_failure(self.config, error.status_code, error.message, video) from None
        return completion.choices[0].message.content if completion.choices else None


def status_failure(config: EndpointConfig, status: int, message: str = "", media_kwargs: dict | None = None) -> Exception:
    """The exception an HTTP error status stands for (messages never carry the key or the server's body)."""
    if status == 400 and media_kwargs and TRUST_MM_FLAG in message:  # every request of this judge would be refused
        flags = " ".join(f"--{name.replace('_', '-')} '{json.dumps(value, separators=(',', ':'))}'"
                         for name, value in media_kwargs.items())
        return EndpointError(f"{config.base_url}: the server refuses the video judge's per-request frame timing; start it "
                             f"with {TRUST_MM_FLAG}, or with {flags} and set send_video_timing: false")
    if status in (401, 403):
        return EndpointError(f"{config.base_url}: the server refused the API key from ${config.api_key_env} (HTTP {status})")
    if status == 404:
        return EndpointError(f"{config.base_url}: the server does not serve model {config.model!r} (HTTP 404)")
    if status == 429 or status >= 500:
        return Transient(f"HTTP {status}", server_down=False)
    return Rejected(status)
