"""A judge actor: one vLLM engine with the VLM, judging a unit's pairs in both orders, k votes each."""

from __future__ import annotations

import time
from dataclasses import dataclass

from PIL import Image

from vipo_build.config import JudgeStageConfig
from vipo_build.judge.aggregate import aggregate, to_vote
from vipo_build.judge.rubric import judge_conversation, verdict_schema
from vipo_build.prompts.categories import Category
from vipo_build.records import Verdict
from vipo_build.runtime import failpoints
from vipo_build.runtime.vllm_engine import chat_json, start_engine
from vipo_build.seeding import derive_seed

ORDERS = ("AB", "BA")


@dataclass
class JudgeItem:
    """One pair to judge: its id, prompt and the views of side 0 and side 1."""

    pair_id: str
    prompt: str
    views: tuple[Image.Image, Image.Image]
    defect: str | None = None  # a candidate failed the size checks: dropped without asking the judge


class Judge:
    """Runs as a Ray actor (see runtime/pools.py)."""

    def __init__(self, judge: JudgeStageConfig, seed: int):
        self.config = judge
        self.seed = seed
        self.engine = start_engine(judge.engine, seed, "judge.engine", limit_mm_per_prompt={"image": 2})

    def judge(self, category: Category, items: list[JudgeItem]) -> tuple[list[Verdict], float]:
        """Verdicts for one unit's pairs, asked in one engine call (a fixed batch), and the seconds spent."""
        start = time.perf_counter()
        keys, conversations = [], []
        for item in (i for i in items if not i.defect):
            for order in ORDERS:
                first, second = item.views if order == "AB" else item.views[::-1]
                for sample in range(self.config.votes):
                    keys.append((order, sample, derive_seed(self.seed, "judge", item.pair_id, order, sample)))
                    conversations.append(judge_conversation(category, item.prompt, first, second))
        schema = verdict_schema(category, self.config.reason_chars)
        answers = chat_json(self.engine, conversations, [seed for _, _, seed in keys], schema, self.config.temperature,
                            self.config.max_tokens) if conversations else []
        per_item = 2 * self.config.votes
        dims, rubric = category.rubric.dimension_names, category.rubric
        verdicts, asked = [], 0
        for item in items:
            span = range(asked * per_item, (asked + 1) * per_item) if not item.defect else range(0)
            asked += not item.defect
            votes = [to_vote(answers[j], keys[j][0], keys[j][1], keys[j][2], dims) for j in span]
            verdicts.append(aggregate(item.pair_id, votes, self.config.threshold, rubric.critical, item.defect))
        failpoints.reached("judge.batch", category.name)
        return verdicts, time.perf_counter() - start
