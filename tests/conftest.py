"""Shared fixtures: the tiny models (built once, where `make tiny-models` puts them) and configs."""

from __future__ import annotations

import string
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from xdist.scheduler import LoadScopeScheduling

from tests.sessions import run_in_session
from vipo_build.config import load_config
from vipo_build.models.tiny import make_tiny_models
from vipo_build.shards.plan import ShardPlan

REPO = Path(__file__).resolve().parents[1]
TINY_MODELS = REPO / "build" / "tiny-models"
# the tiny run's one human_quality pair must show one hand: the judge keeps one with both first (tests/test_facet_balance.py)
LEAST_SHARE_FACET, LEAST_SHARE_VALUE = "hand_visibility", "one hand clearly visible"
# the tiny Wan's random clips move 0.22 to 0.45 frame widths a second: a floor among them makes the tiny run drop
# some video pairs as static_clip
TINY_MOTION_FLOOR = 0.26


# `make test` runs the tests on two workers (pytest-xdist, `--dist loadscope`). A scope runs on one
# worker, so the fixtures its tests share are set up once: a scope is a module, but the modules that
# read the tiny run are one scope, so the run is made once. The two longest scopes (the crash tests,
# the tiny run) go out first, one to each worker; the others fill in around them.
TINY_RUN_MODULES = ("test_export.py", "test_facet_balance.py", "test_judge_eval.py", "test_run_tiny.py")
TINY_RUN_SCOPE = "the tiny run"
LONGEST_SCOPES = ("test_crash_safety.py", TINY_RUN_SCOPE)


def scope(nodeid: str) -> str:
    module = nodeid.split("::", 1)[0].rsplit("/", 1)[-1]
    return TINY_RUN_SCOPE if module in TINY_RUN_MODULES else module


class TinyRunTogether(LoadScopeScheduling):
    def _split_scope(self, nodeid: str) -> str:
        return scope(nodeid)


def pytest_xdist_make_scheduler(config: pytest.Config, log) -> LoadScopeScheduling | None:
    return TinyRunTogether(config, log) if config.getvalue("dist") == "loadscope" else None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    strays = sorted({item.path.name for item in items if "tiny_run" in item.fixturenames} - set(TINY_RUN_MODULES))
    if strays:
        raise pytest.UsageError(f"{', '.join(strays)}: tests that read the tiny run; add the module to TINY_RUN_MODULES "
                                "in tests/conftest.py, so that the run is made once")
    rank = {name: i for i, name in enumerate(LONGEST_SCOPES)}
    items.sort(key=lambda item: rank.get(scope(item.nodeid), len(rank)))  # stable: the rest keep their order


@pytest.fixture(scope="session")
def tiny_models() -> dict[str, Path]:
    return make_tiny_models(TINY_MODELS)


def tiny_config(**overrides) -> dict:
    """pipelines/tiny.yaml as a dict with absolute model paths, top-level keys replaced by `overrides`."""
    config = yaml.safe_load((REPO / "pipelines" / "tiny.yaml").read_text())
    config["prompts"]["engine"]["model"] = str(TINY_MODELS / "llm")
    for judge in config["judge"]["engines"]:
        judge["engine"]["model"] = str(TINY_MODELS / Path(judge["engine"]["model"]).name)
    for generator in config["generate"]["generators"]:
        generator["model"] = str(TINY_MODELS / Path(generator["model"]).name)
    config.update(overrides)
    return config


def write_config(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def vipo(*args: str) -> subprocess.CompletedProcess:
    """The CLI in a session of its own: past its time it fails with its stacks, and leaves no Ray or vLLM process."""
    return run_in_session([sys.executable, "-m", "vipo_build.cli", *args])


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, tiny_models) -> tuple[Path, Path, ShardPlan]:
    """The tiny config run once at one pair per category (config path, root, shard plan); tests copy it before changing it."""
    work = tmp_path_factory.mktemp("tiny")
    config = tiny_config(output=str(work / "out"))
    for name in config["categories"]:
        config["categories"][name]["pairs"] = 1
    config["categories"]["human_quality"]["facet_shares"] = {LEAST_SHARE_FACET: {LEAST_SHARE_VALUE: 1.0}}
    config["shards"]["pairs_per_shard"] = 3
    config["generate"]["video"]["min_motion"] = TINY_MOTION_FLOOR
    path = write_config(work / "tiny1.yaml", config)
    result = vipo("run", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    plan = ShardPlan.of(load_config(path)[0])
    return path, work / "out", plan


@pytest.fixture(scope="session")
def tiny_encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight one-layer BERT with a hand-written WordPiece vocabulary, as a sentence-transformers model."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    root = tmp_path_factory.mktemp("tiny-encoder")
    words = (
        "a an the of on in at by with and red blue green old young small apple table wooden morning evening "
        "light car tree night dog river painting watercolor mountain city street running under cat mat sitting"
    ).split()
    characters = string.ascii_lowercase + string.digits
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *string.punctuation, *characters, *("##" + c for c in characters), *words]
    backend = Tokenizer(models.WordPiece({token: i for i, token in enumerate(vocab)}, unk_token="[UNK]"))
    backend.normalizer = normalizers.BertNormalizer(lowercase=True)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    backend.decoder = decoders.WordPiece()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]"
    )
    torch.manual_seed(0)
    bert = BertModel(BertConfig(vocab_size=len(vocab), hidden_size=64, num_hidden_layers=1, num_attention_heads=2,
                                intermediate_size=128, max_position_embeddings=128))
    with torch.no_grad():
        # Every token has type 0: its random embedding would be a shared offset that makes all texts alike.
        bert.embeddings.token_type_embeddings.weight.zero_()
    bert.save_pretrained(root / "bert")
    tokenizer.save_pretrained(root / "bert")
    transformer = Transformer(str(root / "bert"), max_seq_length=64)
    SentenceTransformer(modules=[transformer, Pooling(64, "mean")], device="cpu").save(str(root / "encoder"))
    return root / "encoder"
