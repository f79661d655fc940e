"""The judge through a real `vllm serve` (vLLM's OpenAI-compatible server) on 127.0.0.1 with the
tiny VLM, the server killed and restarted while a unit is being judged."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request

import numpy as np
import pytest

from tests.s3 import free_port
from vipo_build.config import EngineConfig, JudgeEngineConfig, JudgeStageConfig
from vipo_build.generate.encode import encode_image
from vipo_build.judge.actor import JudgeItem, JudgeStage
from vipo_build.prompts.categories import load_category
from vipo_build.runtime.endpoint import EndpointConfig
from vipo_build.runtime.vllm_engine import cpu_scheduler_options


def start_server(model: str, port: int, log) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", model, "--served-model-name", "tiny-vlm",
         "--host", "127.0.0.1", "--port", str(port), "--max-model-len", "2048", "--enforce-eager", "--seed", "1234",
         "--kv-cache-memory-bytes", str(2**28), "--limit-mm-per-prompt", '{"image": 2}',
         "--structured-outputs-config", '{"backend": "xgrammar", "disable_any_whitespace": true}',
         *server_flags(cpu_scheduler_options(2048, {}, "server"))],  # seeded requests: no split prefill on CPU
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )


def server_flags(options: dict) -> list[str]:
    """vllm.LLM keyword arguments as `vllm serve` flags."""
    flags = []
    for key, value in options.items():
        flag = "--" + key.replace("_", "-")
        flags += [flag] if value is True else [f"--no-{flag[2:]}"] if value is False else [flag, str(value)]
    return flags


def stop(server: subprocess.Popen) -> None:
    if server.poll() is None:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()


@pytest.fixture()
def served(tiny_models, tmp_path):
    port = free_port()
    log = open(tmp_path / "server.log", "w")
    servers = [start_server(str(tiny_models["vlm"]), port, log)]
    yield port, servers, lambda: servers.append(start_server(str(tiny_models["vlm"]), port, log))
    for server in servers:
        stop(server)
    log.close()


def requests_running(port: int) -> float:
    """vLLM's own gauge of the requests it is running (Prometheus text at /metrics)."""
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    except OSError:
        return 0.0
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith("vllm:num_requests_running"))


def items(n: int) -> list[JudgeItem]:
    rng = np.random.default_rng(0)
    view = lambda: encode_image(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8), "png", 95)  # noqa: E731
    return [JudgeItem(f"aesthetics-u000000-p{i:03d}", f"a lighthouse at dusk, number {i}", (view(), view())) for i in range(n)]


def test_judge_through_vllm_serve_survives_a_server_restart(served):
    port, servers, restart = served
    endpoint = EndpointConfig(base_url=f"http://127.0.0.1:{port}/v1", model="tiny-vlm", max_concurrency=4,
                              timeout_s=120, max_retries=8, backoff_s=0.5, wait_for_server_s=300)
    engine = JudgeEngineConfig(name="served", engine=EngineConfig(model="tiny-vlm", endpoint=endpoint))
    config = JudgeStageConfig(engines=[engine], votes=2, threshold=0.51, max_tokens=256, reason_chars=0, image_size=64)
    judge = JudgeStage(config, engine, seed=1234, storage=None)
    judge.setup()  # waits until the server answers
    category = load_category("aesthetics")
    batch = items(12)
    [before] = judge.judge([(category, batch)])
    assert [v.pair_id for v in before] == [i.pair_id for i in batch]
    assert all(vote.valid for v in before for vote in v.votes)  # structured outputs: every answer parses

    cut_off: list[float] = []  # requests the server was running when it was killed

    def kill_and_restart() -> None:
        deadline = time.monotonic() + 120
        while not (running := requests_running(port)) and time.monotonic() < deadline:
            time.sleep(0.05)
        stop(servers[-1])
        cut_off.append(running)
        restart()

    restarter = threading.Thread(target=kill_and_restart)
    restarter.start()
    [after] = judge.judge([(category, batch)])
    restarter.join()
    assert cut_off and cut_off[0] > 0  # the kill came while the second call's requests were in flight
    assert [v.pair_id for v in after] == [i.pair_id for i in batch]
    assert all(vote.valid for v in after for vote in v.votes)  # no request lost to the outage
    assert all(len(v.votes) == 4 for v in after)
