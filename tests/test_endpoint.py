"""The endpoint client against a scripted loopback /v1 server: order, re-asks, retries, restarts, limits, keys."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from PIL import Image

from vipo_build.runtime import endpoint
from vipo_build.runtime.endpoint import (
    EndpointClient,
    EndpointConfig,
    EndpointError,
    backoff_delay,
    reask_seed,
    start_endpoint,
)

SCHEMA = {
    "type": "object",
    "properties": {"n": {"type": "integer", "minimum": 0}, "winner": {"enum": ["A", "B", "tie"]}},
    "required": ["n", "winner"],
    "additionalProperties": False,
}
SECRET = "sk-test-never-shown-0123456789"

# A script answers one request: (request number, attempt at it, request body) -> (HTTP status, answer text).
Script = Callable[[int, int, dict], tuple[int, str]]


def good(n: int, attempt: int, body: dict) -> tuple[int, str]:
    return 200, json.dumps({"n": n, "winner": "A"})


class ScriptedState:
    """What the server saw, kept across restarts of the server."""

    def __init__(self, script: Script, delay_s: float):
        self.script = script
        self.delay_s = delay_s
        self.lock = threading.Lock()
        self.attempts: dict[int, int] = defaultdict(int)
        self.seeds: dict[int, list[int]] = defaultdict(list)
        self.bodies: list[dict] = []
        self.auth: set[str | None] = set()
        self.in_flight = 0
        self.max_in_flight = 0


class FakeServer:
    """A ThreadingHTTPServer on 127.0.0.1 mimicking /v1/models and /v1/chat/completions; `kill` drops in-flight answers."""

    def __init__(self, script: Script = good, delay_s: float = 0.0, port: int = 0, state: ScriptedState | None = None):
        self.state = state or ScriptedState(script, delay_s)
        self.killed = threading.Event()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def kill(self) -> None:
        self.killed.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                if self.path == "/v1/models":
                    self._send(200, {"object": "list", "data": [{"id": "judge", "object": "model", "created": 0, "owned_by": "test"}]})
                else:
                    self._send(404, {"error": "not found"})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                state = server.state
                n = int(body["messages"][-1]["content"][0]["text"].removeprefix("request "))
                with state.lock:
                    state.auth.add(self.headers.get("Authorization"))
                    state.bodies.append(body)
                    state.seeds[n].append(body["seed"])
                    state.attempts[n] += 1
                    attempt = state.attempts[n]
                    state.in_flight += 1
                    state.max_in_flight = max(state.max_in_flight, state.in_flight)
                try:
                    time.sleep(state.delay_s)
                    if server.killed.is_set():
                        return  # the process died: the connection closes without an answer
                    status, text = state.script(n, attempt, body)
                finally:
                    with state.lock:
                        state.in_flight -= 1
                if status != 200:
                    self._send(status, {"error": {"message": text}})
                    return
                choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
                self._send(200, {"id": f"c{n}", "object": "chat.completion", "created": 0, "model": "judge", "choices": [choice]})

            def _send(self, status: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler


def config(server: FakeServer, **overrides) -> EndpointConfig:
    fields = dict(base_url=server.base_url, model="judge", max_concurrency=8, timeout_s=5, max_retries=3, max_reasks=2,
                  backoff_s=0.05, max_backoff_s=0.2, wait_for_server_s=5)
    return EndpointConfig(**(fields | overrides))


def conversations(count: int) -> list[list[dict]]:
    return [[{"role": "user", "content": [{"type": "text", "text": f"request {n}"}]}] for n in range(count)]


def ask(client: EndpointClient, count: int, seeds: list[int] | None = None):
    return client.ask(conversations(count), seeds or [1000 + n for n in range(count)], SCHEMA, 1.0, 64)


@pytest.fixture
def server():
    running = FakeServer(delay_s=0.01)
    yield running
    running.kill()


def test_answers_come_back_parsed_in_request_order(server: FakeServer) -> None:
    # Later requests answer first: order must come from the request list, not from completion.
    server.state.script = lambda n, attempt, body: (time.sleep(0.02 * (5 - n % 5)), good(n, attempt, body))[1]
    client = EndpointClient(config(server))
    answers = client.chat_json(conversations(20), list(range(20)), SCHEMA, 0.7, 64)
    assert answers == [{"n": n, "winner": "A"} for n in range(20)]
    body = server.state.bodies[0]
    assert body["model"] == "judge" and body["temperature"] == 0.7 and body["max_tokens"] == 64
    assert body["response_format"] == {"type": "json_schema", "json_schema": {"name": "answer", "schema": SCHEMA}}
    assert sorted(s for seeds in server.state.seeds.values() for s in seeds) == list(range(20))


def test_schema_is_left_out_when_send_schema_is_off(server: FakeServer) -> None:
    ask(EndpointClient(config(server, send_schema=False)), 1)
    assert "response_format" not in server.state.bodies[0]


def test_images_travel_as_png_data_urls(server: FakeServer) -> None:
    image = Image.new("RGB", (12, 7), (200, 10, 30))
    conversation = [{"role": "user", "content": [{"type": "text", "text": "request 0"}, {"type": "image_pil", "image_pil": image}]}]
    EndpointClient(config(server)).ask([conversation], [5], SCHEMA, 1.0, 64)
    part = server.state.bodies[0]["messages"][0]["content"][1]
    prefix = "data:image/png;base64,"
    assert part["type"] == "image_url" and part["image_url"]["url"].startswith(prefix)
    decoded = Image.open(io.BytesIO(base64.b64decode(part["image_url"]["url"].removeprefix(prefix))))
    assert decoded.size == (12, 7) and decoded.getpixel((3, 3)) == (200, 10, 30)


def test_malformed_answers_are_reasked_with_derived_seeds_then_dropped(server: FakeServer) -> None:
    def script(n: int, attempt: int, body: dict) -> tuple[int, str]:
        if n == 0 and attempt == 1:
            return 200, "{not json"
        if n == 1 and attempt <= 2:
            return 200, json.dumps({"n": n, "winner": "C"})  # JSON, but outside the schema
        if n == 2:
            return 200, "never JSON"
        return good(n, attempt, body)

    server.state.script = script
    outcomes = ask(EndpointClient(config(server, max_reasks=2)), 4, seeds=[10, 11, 12, 13])
    assert [(o.answer, o.attempts, o.reason) for o in outcomes] == [
        ({"n": 0, "winner": "A"}, 2, None),
        ({"n": 1, "winner": "A"}, 3, None),
        (None, 3, "malformed_answer"),
        ({"n": 3, "winner": "A"}, 1, None),
    ]
    assert outcomes[2].detail.startswith("not JSON")
    assert server.state.seeds[2] == [12, reask_seed(12, 1), reask_seed(12, 2)]
    assert len(set(server.state.seeds[2])) == 3


def test_server_errors_are_retried_with_the_same_seed(server: FakeServer, monkeypatch) -> None:
    def script(n: int, attempt: int, body: dict) -> tuple[int, str]:
        if n == 0 and attempt == 1:
            return 500, "boom"
        if n == 0 and attempt == 2:
            return 429, "slow down"
        if n == 1:
            return 503, "down for good"
        if n == 2:
            return 400, "prompt too long"
        return good(n, attempt, body)

    server.state.script = script
    waits = []
    monkeypatch.setattr(endpoint, "backoff_delay", lambda settings, seed, retry: waits.append((seed, retry)) or 0.0)
    outcomes = ask(EndpointClient(config(server, max_retries=2, backoff_s=0.1, max_backoff_s=1)), 3)
    assert [(o.answer, o.attempts, o.reason, o.detail) for o in outcomes] == [
        ({"n": 0, "winner": "A"}, 3, None, ""),
        (None, 3, "endpoint_error", "HTTP 503"),
        (None, 1, "endpoint_error", "HTTP 400"),
    ]
    assert server.state.seeds[0] == [1000, 1000, 1000]
    # Requests 0 and 1 each waited out a first and a second backoff before asking again; 2 none.
    assert sorted(waits) == sorted([(1000, 1), (1000, 2), (server.state.seeds[1][0], 1), (server.state.seeds[1][0], 2)])


def test_timed_out_requests_are_retried(server: FakeServer) -> None:
    server.state.script = lambda n, attempt, body: (time.sleep(1.0 if attempt == 1 else 0), good(n, attempt, body))[1]
    outcome = ask(EndpointClient(config(server, timeout_s=0.5, max_retries=3)), 1)[0]
    assert outcome.answer == {"n": 0, "winner": "A"} and outcome.attempts >= 2
    assert set(server.state.seeds[0]) == {1000}


def test_backoff_is_deterministic_exponential_and_capped() -> None:
    settings = EndpointConfig(base_url="http://x/v1", model="m", backoff_s=1, max_backoff_s=5)
    delays = [backoff_delay(settings, 42, retry) for retry in range(1, 6)]
    assert delays == [backoff_delay(settings, 42, retry) for retry in range(1, 6)]
    assert delays != [backoff_delay(settings, 43, retry) for retry in range(1, 6)]
    for retry, delay in enumerate(delays, 1):
        ceiling = min(5, 2 ** (retry - 1))
        assert ceiling / 2 <= delay < ceiling


def test_a_server_restart_mid_stage_loses_no_request() -> None:
    first = FakeServer(delay_s=0.1)
    client = EndpointClient(config(first, max_concurrency=4, max_retries=2))
    restarted: list[FakeServer] = []

    def restart() -> None:
        while sum(first.state.attempts.values()) < 10:  # mid-stage: some answered, some in flight
            time.sleep(0.01)
        first.kill()
        time.sleep(1.0)
        restarted.append(FakeServer(port=first.port, state=first.state))

    threading.Thread(target=restart, daemon=True).start()
    outcomes = ask(client, 40)
    restarted[0].kill()
    assert [o.answer for o in outcomes] == [{"n": n, "winner": "A"} for n in range(40)]
    assert sum(o.attempts == 1 for o in outcomes[:10]) >= 6  # all 10 were sent before the kill, at most 4 in flight
    assert any(o.attempts > 1 for o in outcomes)  # cut off by the kill and asked again
    assert all(seeds == [seeds[0]] * len(seeds) for seeds in first.state.seeds.values())


def test_requests_are_dropped_when_the_server_stays_down() -> None:
    gone = FakeServer()
    gone.kill()
    outcomes = ask(EndpointClient(config(gone, wait_for_server_s=0.6, max_retries=5)), 3)
    assert all(o.answer is None and o.reason == "endpoint_error" for o in outcomes)
    with pytest.raises(EndpointError, match="no answer within"):
        start_endpoint(config(gone, wait_for_server_s=0.3))


def test_concurrency_never_exceeds_the_limit() -> None:
    busy = FakeServer(delay_s=0.05)
    try:
        outcomes = ask(EndpointClient(config(busy, max_concurrency=3)), 24)
    finally:
        busy.kill()
    assert all(o.answer is not None for o in outcomes)
    assert busy.state.max_in_flight == 3


def test_works_when_called_inside_a_running_event_loop(server: FakeServer) -> None:
    client = EndpointClient(config(server))

    async def from_async_code() -> list[dict | None]:
        return client.chat_json(conversations(3), [1, 2, 3], SCHEMA, 1.0, 64)

    assert asyncio.run(from_async_code()) == [{"n": n, "winner": "A"} for n in range(3)]


def test_api_key_comes_from_the_named_variable_and_is_never_shown(server: FakeServer, monkeypatch) -> None:
    monkeypatch.setenv("VIPO_TEST_KEY", SECRET)
    settings = config(server, api_key_env="VIPO_TEST_KEY")
    client = start_endpoint(settings)
    assert ask(client, 1)[0].answer is not None
    assert server.state.auth == {f"Bearer {SECRET}"}
    shown = [repr(client), str(client), repr(settings), settings.model_dump_json()]

    server.state.script = lambda n, attempt, body: (401, f"bad key {body}")
    with pytest.raises(EndpointError) as refused:
        ask(client, 1)
    server.state.script = lambda n, attempt, body: (500, "boom")
    dropped = ask(EndpointClient(config(server, api_key_env="VIPO_TEST_KEY", max_retries=1)), 1)[0]
    shown += [str(refused.value), repr(refused.value), repr(dropped)]
    assert "VIPO_TEST_KEY" in str(refused.value)
    assert not any(SECRET in text for text in shown)

    monkeypatch.delenv("VIPO_TEST_KEY")
    with pytest.raises(EndpointError, match="VIPO_TEST_KEY is not set"):
        EndpointClient(settings)


def test_config_rejects_unknown_keys_and_key_values() -> None:
    with pytest.raises(ValueError, match="extra"):
        EndpointConfig(base_url="http://x/v1", model="m", api_key="sk-1")
    with pytest.raises(ValueError, match="api_key_env"):
        EndpointConfig(base_url="http://x/v1", model="m", api_key_env="sk-live-123")
    with pytest.raises(ValueError, match="max_backoff_s"):
        EndpointConfig(base_url="http://x/v1", model="m", backoff_s=5, max_backoff_s=1)


VLLM_REFUSAL = ("Per-request media_io_kwargs are disabled by default because they can change multimodal media loading "
                "resource usage. Start the server with --trust-request-mm-kwargs only when clients are trusted.")


def video_judge_stage(server: FakeServer, **endpoint_settings):
    """A native video judge (a registered Qwen2.5-VL) served by `server`, set up as its stage actor sets it up."""
    from tests.conftest import tiny_config
    from vipo_build.config import JudgeStageConfig, VideoOutputConfig
    from vipo_build.judge.actor import JudgeStage

    raw = tiny_config()["judge"]
    raw["engines"] = [{"name": "qwen", "modalities": ["video"], "engine": {
        "model": "Qwen/Qwen2.5-VL-7B-Instruct", "endpoint": config(server, **endpoint_settings).model_dump()}}]
    judge = JudgeStageConfig.model_validate(raw | {"video_fps": 2.0})
    stage = JudgeStage(judge, judge.engines[0], seed=1, storage=None, clips=VideoOutputConfig(width=64, height=64, frames=9, fps=8))
    stage.setup()
    return stage


def with_clips(count: int) -> list[list[dict]]:
    """Requests carrying two clips each, as a native video judge sends them."""
    clip = {"type": "video_url", "video_url": {"url": "data:video/jpeg;base64,AAAA,AAAA"}}
    return [[{"role": "user", "content": [*c[0]["content"], clip, clip]}] for c in conversations(count)]


def test_a_video_judges_frame_timing_rides_each_video_request_and_a_refusal_names_the_server_flags(server: FakeServer) -> None:
    from vipo_build.judge.views import video_timing

    stage = video_judge_stage(server)
    timing = video_timing(stage.clips, stage.config)
    assert all(o.answer is not None for o in stage.engine.ask(with_clips(2), [1, 2], SCHEMA, 1.0, 64))
    for body in server.state.bodies:  # what an in-process engine is started with, less the server's own limits
        assert body["media_io_kwargs"] == timing["media_io_kwargs"] and body["mm_processor_kwargs"] == timing["mm_processor_kwargs"]
        assert "limit_mm_per_prompt" not in body
    server.state.bodies.clear()
    assert ask(stage.engine, 1)[0].answer is not None  # an image or text request goes to any server as it is
    assert not {"media_io_kwargs", "mm_processor_kwargs"} & set(server.state.bodies[0])

    server.state.script = lambda n, attempt, body: (400, VLLM_REFUSAL)  # vLLM started without the flag
    with pytest.raises(EndpointError) as refused:
        stage.engine.ask(with_clips(1), [1], SCHEMA, 1.0, 64)
    io_flags = json.dumps(timing["media_io_kwargs"], separators=(",", ":"))
    assert str(refused.value) == (
        f"{server.base_url}: the server refuses the video judge's per-request frame timing; start it with "
        f"--trust-request-mm-kwargs, or with --media-io-kwargs '{io_flags}' --mm-processor-kwargs "
        f"'{{\"fps\":{timing['mm_processor_kwargs']['fps']}}}' and set send_video_timing: false")

    server.state.bodies.clear()
    server.state.script = good
    assert video_judge_stage(server, send_video_timing=False).engine.ask(with_clips(1), [1], SCHEMA, 1.0, 64)[0].answer  # the server has them
    assert not {"media_io_kwargs", "mm_processor_kwargs"} & set(server.state.bodies[0])
