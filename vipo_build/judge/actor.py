"""The judge stage of one judge: its vLLM engine per actor, judging pairs in both orders, k votes each."""

from __future__ import annotations

from dataclasses import dataclass

from vipo_build.config import JudgeEngineConfig, JudgeStageConfig, VideoOutputConfig
from vipo_build.judge.aggregate import aggregate, to_vote
from vipo_build.judge.budget import reads_video, view_kind
from vipo_build.judge.rubric import judge_conversation, verdict_schema
from vipo_build.judge.views import media_view, video_timing
from vipo_build.prompts.categories import Category
from vipo_build.records import Prompt, Verdict
from vipo_build.runtime import cache, failpoints
from vipo_build.runtime.stage import Stage
from vipo_build.runtime.storage import Storage
from vipo_build.runtime.vllm_engine import start_engine
from vipo_build.seeding import derive_seed

ORDERS = ("AB", "BA")


@dataclass
class JudgeItem:
    """One pair to judge: its id, prompt and the encoded files of side 0 and side 1 (each judge makes its own view)."""

    pair_id: str
    prompt: str
    media: tuple[bytes, bytes]
    defect: str | None = None  # a candidate failed the size checks: dropped without asking the judge


@dataclass(frozen=True)
class JudgeWork:
    """One unit for one judge: its prompts, and the generators whose cached candidates it reads."""

    category: Category
    unit: int
    prompts: list[Prompt]
    generators: list[str]
    judge: str


class JudgeStage(Stage):
    """One VLM judge: reads a batch of units' candidates from the cache, makes its own views of
    them, asks every vote of the batch in one engine call and caches each unit's verdicts."""

    def __init__(self, judge: JudgeStageConfig, engine: JudgeEngineConfig, seed: int, storage: Storage,
                 clips: VideoOutputConfig | None = None):
        """`clips`: the clips it judges, whose length and rate a native video judge's engine is told; None when it
        judges no clips."""
        self.config, self.judge_engine, self.seed, self.storage, self.clips = judge, engine, seed, storage, clips
        self.name, self.resources = f"judge:{engine.name}", engine.pool
        self.field = f"judge.engines[{judge.engines.index(engine)}].engine"  # how errors name its config

    def setup(self) -> None:
        video = {}
        if self.clips is not None and "video" in self.judge_engine.modalities and reads_video(self.judge_engine):
            video = {**video_timing(self.clips, self.config), "limit_mm_per_prompt": {"image": 2, "video": 2}}
        self.engine = start_engine(self.judge_engine.engine, self.seed, self.field,
                                   **{"limit_mm_per_prompt": {"image": 2}, **video})

    def process(self, batch: list[JudgeWork]) -> list[list[Verdict]]:
        units = [(work, self.items(work)) for work in batch]
        verdicts = self.judge([(work.category, items) for work, items in units])
        for (work, _), found in zip(units, verdicts):
            cache.write_judged(self.storage, work.category.name, work.unit, self.judge_engine.name, work.prompts, found)
            failpoints.reached("judged.written", f"{cache.unit_name(work.category.name, work.unit)}/{self.judge_engine.name}")
        return verdicts

    def items(self, work: JudgeWork) -> list[JudgeItem]:
        failpoints.reached("judge.unit", cache.unit_name(work.category.name, work.unit))
        candidates = cache.read_candidates(self.storage, work.category.name, work.unit, work.generators)
        by_side = {(c.prompt_id, c.side): c for c in candidates}
        return [JudgeItem(p.id, p.text, (by_side[p.id, 0].media, by_side[p.id, 1].media),
                          by_side[p.id, 0].defect or by_side[p.id, 1].defect)
                for p in work.prompts]

    def judge(self, units: list[tuple[Category, list[JudgeItem]]]) -> list[list[Verdict]]:
        """Verdicts for each unit's pairs; every vote of every unit goes to the engine in one call."""
        keys, conversations, schemas = [], [], []
        for category, items in units:
            schema = verdict_schema(category, self.config.reason_chars)
            kind = view_kind(self.judge_engine, category.modality)
            for item in (i for i in items if not i.defect):
                views = tuple(media_view(m, kind, self.config) for m in item.media)
                for order in ORDERS:
                    first, second = views if order == "AB" else views[::-1]
                    for sample in range(self.config.votes):
                        # a vote's sampling seed is the pair's, order's and sample's, whatever the judge: the
                        # judges' models make their votes differ, and one judge keeps its seeds in a panel
                        keys.append((order, sample, derive_seed(self.seed, "judge", item.pair_id, order, sample)))
                        conversations.append(judge_conversation(category, item.prompt, first, second, kind))
                        schemas.append(schema)
        answers = self.engine.chat_json(conversations, [seed for _, _, seed in keys], schemas, self.config.temperature,
                                        self.config.max_tokens) if conversations else []
        per_item = 2 * self.config.votes
        out, asked = [], 0
        for category, items in units:
            dims, rubric = category.rubric.dimension_names, category.rubric
            kind = view_kind(self.judge_engine, category.modality)
            verdicts = []
            for item in items:
                span = range(asked * per_item, (asked + 1) * per_item) if not item.defect else range(0)
                asked += not item.defect
                votes = [to_vote(answers[j], *keys[j], dims, self.judge_engine.name, kind) for j in span]
                verdicts.append(aggregate(item.pair_id, votes, self.config.threshold, rubric.critical, item.defect))
            out.append(verdicts)
        failpoints.reached("judge.batch", units[0][0].name)
        return out
