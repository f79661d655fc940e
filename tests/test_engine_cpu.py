"""The in-process vLLM engines on CPU under a full load: one call of hundreds of seeded, structured
requests to the tiny VLM (the judge) and the tiny LLM (prompt expansion), through the stages' own
engine wrapper. On CPU a seeded request whose prefill is split across scheduler steps kills the
engine ("CPU Generator does not use offset"); the wrapper's CPU settings must make that impossible
however many requests are in flight."""

from __future__ import annotations

import gc
import re
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

from tests.conftest import tiny_config
from vipo_build.config import JudgeStageConfig, PromptStageConfig, VideoOutputConfig
from vipo_build.errors import VipoError
from vipo_build.generate.encode import encode_image, encode_video
from vipo_build.judge.actor import JudgeItem, JudgeStage
from vipo_build.prompts import expand, subjects
from vipo_build.prompts.categories import load_category
from vipo_build.runtime import actor_log, failpoints
from vipo_build.runtime.vllm_engine import CPU_MAX_NUM_SEQS, EngineFailed, cpu_scheduler_options, start_engine

REQUESTS = 256
DATA = Path(__file__).parent / "data"


def test_one_judge_call_of_256_seeded_structured_requests_answers_every_one(tiny_models):
    stage = JudgeStageConfig.model_validate({**tiny_config()["judge"], "votes": 4})
    rng = np.random.default_rng(7)
    view = lambda: encode_image(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8), "png", 95)  # noqa: E731
    pairs = REQUESTS // (2 * stage.votes)
    items = [JudgeItem(f"aesthetics-u000000-p{i:03d}", f"a lighthouse at dusk, number {i}", (view(), view()))
             for i in range(pairs)]
    judge = JudgeStage(stage, stage.engines[0], seed=1234, storage=None)
    judge.setup()
    try:
        [verdicts] = judge.judge([(load_category("aesthetics"), items)])
    finally:
        del judge
        gc.collect()
    votes = [vote for verdict in verdicts for vote in verdict.votes]
    assert len(verdicts) == pairs and len(votes) == REQUESTS
    assert all(vote.valid for vote in votes)  # every answer came back and parsed against the schema


def test_the_tiny_qwen2_vl_judges_clips_given_as_video(tiny_models):
    """The native video path on vLLM-CPU: each candidate goes as its sampled frames, the engine told their timing."""
    stage = JudgeStageConfig.model_validate({**tiny_config()["judge"], "votes": 2})  # the tiny run's video judge
    clips = VideoOutputConfig(width=64, height=64, frames=9, fps=8)
    rng = np.random.default_rng(3)
    clip = lambda: encode_video(rng.integers(0, 255, (9, 64, 64, 3), dtype=np.uint8), 8)  # noqa: E731
    items = [JudgeItem(f"motion_quality-u000000-p{i:03d}", f"a fox running, take {i}", (clip(), clip())) for i in range(8)]
    [video_judge] = [e for e in stage.engines if e.modalities == ["video"]]
    judge = JudgeStage(stage, video_judge, seed=1234, storage=None, clips=clips)
    judge.setup()
    try:
        [verdicts] = judge.judge([(load_category("motion_quality"), items)])
        [again] = judge.judge([(load_category("motion_quality"), items)])
    finally:
        del judge
        gc.collect()
    votes = [vote for verdict in verdicts for vote in verdict.votes]
    assert len(votes) == 8 * 2 * 2 and all(vote.valid and vote.view == "video" for vote in votes)
    assert again == verdicts  # seeded: the same requests give the same votes


def test_one_expansion_call_of_256_seeded_structured_requests_answers_every_one(tiny_models):
    stage = PromptStageConfig.model_validate(tiny_config()["prompts"])
    category = load_category("text_rendering")  # the longest answers: prompt, constraints and a perturbation
    requests = expand.unit_requests(category, 1234, unit=0, size=REQUESTS)
    expander = expand.ExpandStage(stage, seed=1234)
    expander.setup()
    try:
        [answers] = expander.process([expand.ExpansionWork(category, requests)])
    finally:
        del expander
        gc.collect()
    assert len(answers) == REQUESTS
    assert all(isinstance(answer, dict) and "prompt" in answer for answer in answers)
    # the subject pass (tiny.yaml: half the requests): a request it skips keeps its library subject;
    # one it asks gets the LLM's subject unless that repeats the library or the unit
    asked = [subjects.writes_subject(1234, r.category, r.unit, r.index, stage.subjects.share) for r in requests]
    assert 0.35 < sum(asked) / REQUESTS < 0.65
    assert all(a["subject"] == r.seed_subject for a, r, ask in zip(answers, requests, asked) if not ask)
    written = [a["subject"] for a, r, ask in zip(answers, requests, asked) if ask and a["subject"] != r.seed_subject]
    assert len(written) > REQUESTS / 4 and len(set(written)) == len(written)
    assert not set(written) & set(category.seeds) and all(0 < len(w) <= stage.subjects.max_chars for w in written)


def test_an_engine_core_killed_mid_call_fails_the_call_in_one_line_instead_of_hanging(tiny_models):
    # vLLM alone would wait forever here: its monitor stops the output thread without an error for
    # the waiting call. The wrapper's watch must turn the death into EngineFailed.
    from vllm import SamplingParams

    stage = PromptStageConfig.model_validate(tiny_config()["prompts"])
    engine = start_engine(stage.engine, seed=1, where="prompts.engine")
    conversations = [[{"role": "user", "content": f"tell a long story, number {i}"}] for i in range(CPU_MAX_NUM_SEQS)]
    params = [SamplingParams(max_tokens=900, ignore_eos=True, seed=i) for i in range(CPU_MAX_NUM_SEQS)]
    outcome: list[BaseException | list] = []

    def call() -> None:
        try:
            outcome.append(engine.chat(conversations, params))
        except BaseException as err:  # noqa: BLE001 - the test reads it
            outcome.append(err)

    caller = threading.Thread(target=call, daemon=True)
    try:
        caller.start()
        time.sleep(3)  # the call is decoding: 64 x 900 tokens take far longer on CPU
        assert caller.is_alive(), outcome
        for child in psutil.Process().children(recursive=True):
            if child.name().startswith(failpoints.ENGINE_PROCESS_PREFIX):
                child.kill()
        caller.join(timeout=90)
        assert not caller.is_alive(), "the call still waits on a dead engine"
    finally:
        del engine
        gc.collect()
    [failure] = outcome
    assert isinstance(failure, EngineFailed), failure
    # the cause from the actor's log where stdout is a file (a Ray worker's), else vLLM's own words
    assert re.fullmatch(rf"engine {re.escape(stage.engine.model)}: (.*engine core exited unexpectedly.* \(log: /\S+\)|"
                        r"EngineDeadError: EngineCore encountered an issue\..*)", str(failure)), failure


def test_the_root_cause_of_a_dead_engine_is_found_in_its_log(tmp_path):
    # The log of an actor whose engine died of a split prefill: the exception the actor saw says only
    # "See stack trace (above) for the root cause"; the engine core and its worker wrote the cause.
    crash = (DATA / "vllm-split-prefill.log").read_text()
    killed = ("(MainProcess pid=8) WARNING 12-01 20:47:37 [core_client.py:817] [shutdown] MPClient: engine core "
              "exited unexpectedly; starting cleanup\n")
    stdout, stderr = tmp_path / "worker.out", tmp_path / "worker.err"
    stdout.write_text("(EngineCore pid=1) ERROR 12-01 20:00:00 [core.py:1] RuntimeError: before the engine started\n")
    stderr.write_text("")
    since = [actor_log.LogMark(str(p), p.stat().st_size) for p in (stdout, stderr)]
    assert actor_log.find_cause(since) is None  # what came before the marks is not looked at
    with stdout.open("a") as f:
        f.write(crash[: crash.index("(Worker pid=4949) ERROR")] + killed)
    assert actor_log.find_cause(since) == ("[shutdown] MPClient: engine core exited unexpectedly; starting cleanup", str(stdout))
    stderr.write_text("Traceback (most recent call last):\nvllm.v1.engine.exceptions.EngineDeadError: EngineCore encountered an "
                      "issue. See stack trace (above) for the root cause.\n")
    with stdout.open("a") as f:
        f.write(crash)
    assert actor_log.find_cause(since) == ("RuntimeError: CPU Generator does not use offset", str(stdout))


def test_cpu_scheduler_budget_holds_the_longest_prompt_of_every_sequence():
    assert cpu_scheduler_options(2048, {}, "judge.engine") == {
        "enable_chunked_prefill": False, "long_prefill_token_threshold": 0,
        "max_num_seqs": CPU_MAX_NUM_SEQS, "max_num_batched_tokens": 2048 * CPU_MAX_NUM_SEQS}
    # a config's own max_num_seqs sizes the budget; a budget asked for below it is raised to it
    assert cpu_scheduler_options(1024, {"max_num_seqs": 8, "max_num_batched_tokens": 512}, "x")["max_num_batched_tokens"] == 8192
    with pytest.raises(VipoError, match=r"^judge\.engine: set max_model_len: a CPU engine sizes its token budget from it$"):
        cpu_scheduler_options(None, {}, "judge.engine")
