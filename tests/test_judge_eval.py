"""`vipo-build judge-eval`: the configured judge on human-labelled pair sets in each published
layout, written here from the tiny run's images, every figure checked against scikit-learn and scipy."""

from __future__ import annotations

import io
import json
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from rich.console import Console
from scipy.stats import binomtest
from sklearn.metrics import accuracy_score, cohen_kappa_score
from typer.testing import CliRunner

from tests.conftest import vipo
from vipo_build.cli import app
from vipo_build.config import load_config
from vipo_build.judge.actor import JudgeStage
from vipo_build.judge.evaluate import evaluate, show
from vipo_build.judge.labelled import read_pairs

HUMAN = ["A", "B", "tie", "A", "B"]  # the labels the test gives its five pairs
LABEL_0 = {"A": 1.0, "B": 0.0, "tie": 0.5}
VOTE_TYPE = {"A": "leftvote", "B": "rightvote", "tie": "tievote"}


def image_pairs(root) -> list[dict]:
    """The tiny run's kept image pairs: caption, both images and category."""
    rows = []
    for tar in sorted((root / "shards").glob("*-image-*.tar")):
        import webdataset as wds

        for sample in wds.WebDataset(str(tar), shardshuffle=False):
            meta = json.loads(sample["json"])
            rows.append({"caption": sample["prompt.txt"].decode(), "a": sample["chosen.jpg"], "b": sample["rejected.jpg"],
                         "category": meta["category"], "key": sample["__key__"]})
    return rows


def write_layouts(root, folder) -> dict[str, str]:
    """The same five labelled pairs in each layout judge-eval reads."""
    rows = image_pairs(root)
    assert len(rows) == len(HUMAN)
    pq.write_table(pa.Table.from_pylist([{"caption": r["caption"], "jpg_0": r["a"], "jpg_1": r["b"], "label_0": LABEL_0[h],
                                          "category": r["category"], "key": r["key"]} for r, h in zip(rows, HUMAN)]),
                   folder / "pickapic.parquet")
    pq.write_table(pa.Table.from_pylist([{"prompt": r["caption"], "left_image": {"bytes": r["a"], "path": None},
                                          "right_image": {"bytes": r["b"], "path": None}, "vote_type": VOTE_TYPE[h],
                                          "category": r["category"]} for r, h in zip(rows, HUMAN)]),
                   folder / "genai-bench.parquet")
    (folder / "images").mkdir()
    entries = []
    for i, (r, h) in enumerate(zip(rows, HUMAN)):  # HPD lists the preferred image first; no ties
        first, second = (r["a"], r["b"]) if h != "B" else (r["b"], r["a"])
        (folder / "images" / f"{i}-0.jpg").write_bytes(first)
        (folder / "images" / f"{i}-1.jpg").write_bytes(second)
        entries.append({"prompt": r["caption"], "image_path": [f"images/{i}-0.jpg", f"images/{i}-1.jpg"],
                        "category": r["category"]})
    (folder / "hpd.json").write_text(json.dumps(entries))
    return {"pickapic": str(folder / "pickapic.parquet"), "genai-bench": str(folder / "genai-bench.parquet"),
            "hpd": str(folder / "hpd.json")}


def test_judge_eval_in_each_layout_matches_an_independent_computation(tiny_run, tmp_path):
    config_path, root, _ = tiny_run
    files = write_layouts(root, tmp_path)
    copy = tmp_path / "root"
    shutil.copytree(root, copy)
    assert vipo("calibrate", str(copy), "--sample", "5", "--seed", "3").returncode == 0
    sample = pq.read_table(copy / "calibration" / "sample.parquet").to_pylist()
    labels = [{"key": s["key"], "rater": rater, "choice": choice} for s in sample
              for rater, choice in zip(("r1", "r2", "r3"), ("A", "A", "B") if len(s["key"]) % 2 else ("B", "skip", "B"))]
    pq.write_table(pa.Table.from_pylist(labels), copy / "calibration" / "labels.parquet")
    files["vipo"] = str(copy / "calibration" / "labels.parquet")

    config, _ = load_config(config_path)
    stages = {e.name: JudgeStage(config.judge, e, config.seed, storage=None, clips=config.generate.video) for e in config.judge.engines}
    judge = stages["tiny-vlm"]
    for layout, path in files.items():
        pairs = read_pairs(path, layout, "aesthetics")
        assert len(pairs) == 5 and all(len(p.images[0]) > 100 for p in pairs)
        if layout in ("pickapic", "genai-bench"):
            assert [p.human for p in pairs] == HUMAN
        if layout == "hpd":
            assert [p.human for p in pairs] == ["A"] * 5
        # an image pair set loads the image judge alone; the run's own sample holds a clip, for the video judge
        needed = [e.name for _, e in config.judges_at_work({p.category for p in pairs})]
        assert needed == (["tiny-vlm", "tiny-video-vlm"] if layout == "vipo" else ["tiny-vlm"])
        for name in needed:
            if not hasattr(stages[name], "engine"):
                stages[name].setup()
        judges = {name: stages[name] for name in needed}
        result = evaluate(judges, config, pairs, path, layout)
        humans, judged = [r.human for r in result.results], [r.judge for r in result.results]
        overall = result.overall
        assert overall.pairs == 5 and {r.category for r in result.results} <= set(config.quotas())
        assert overall.accuracy_with_ties == pytest.approx(accuracy_score(humans, judged))
        decided = [(h, j) for h, j in zip(humans, judged) if h != "tie"]
        assert overall.accuracy_without_ties == pytest.approx(accuracy_score(*zip(*decided)))
        if len(set(humans) | set(judged)) > 1:
            assert overall.cohen_kappa == pytest.approx(cohen_kappa_score(humans, judged))
        first, decisive = sum(r.first_shown_votes for r in result.results), sum(r.decisive_votes for r in result.results)
        assert overall.first_shown_rate == pytest.approx(first / decisive)
        assert overall.first_shown_p_value == pytest.approx(binomtest(first, decisive).pvalue)
        kept = [r for r in result.results if r.kept]
        assert overall.kept_share == len(kept) / 5
        kept_decided = [r for r in kept if r.human != "tie"]
        assert overall.accuracy_on_kept == (pytest.approx(sum(r.judge == r.human for r in kept_decided) / len(kept_decided))
                                            if kept_decided else None)
        assert sum(s.pairs for s in result.categories.values()) == 5
        sink = io.StringIO()
        show(result, Console(file=sink, width=200))
        assert "accuracy (no ties)" in sink.getvalue() and layout in sink.getvalue()

    # a panel: the same tiny VLM as a second judge (the same seeds: the same votes), every pair judged by both
    panel = config.model_copy(update={"judge": config.judge.model_copy(update={
        "engines": [config.judge.engines[0], config.judge.engines[0].model_copy(update={"name": "second"})]})})
    second = JudgeStage(panel.judge, panel.judge.engines[1], panel.seed, storage=None)
    second.setup()
    pairs = read_pairs(files["pickapic"], "pickapic", "aesthetics")
    stages = {judge.judge_engine.name: judge, "second": second}
    alone = evaluate({judge.judge_engine.name: judge}, config, pairs, files["pickapic"], "pickapic")
    for rule in ("all_agree", "pooled"):
        ruled = panel.model_copy(update={"judge": panel.judge.model_copy(update={"combine": rule})})
        both = evaluate(stages, ruled, pairs, files["pickapic"], "pickapic")
        first, other = both.per_judge
        assert first.overall == alone.overall and first.results == alone.results  # seeded: the same answers
        assert other.results == first.results  # one model, the same seeds: a copy adds nothing
        if rule == "all_agree":
            assert [r.kept for r in both.results] == [a.kept and b.kept and a.judge == b.judge
                                                      for a, b in zip(first.results, other.results)]
        [between] = both.overall.between_judges
        labels = [r.judge for r in first.results], [r.judge for r in other.results]
        assert between.agreement == pytest.approx(accuracy_score(*labels))
        if len(set(labels[0]) | set(labels[1])) > 1:
            assert between.cohen_kappa == pytest.approx(cohen_kappa_score(*labels))
    sink = io.StringIO()
    show(both, Console(file=sink, width=250))
    assert "combined by pooled" in sink.getvalue() and "all, second alone" in sink.getvalue()


def test_judge_eval_refuses_bad_input_in_one_line(tiny_run, tmp_path):
    config_path, _, _ = tiny_run
    runner = CliRunner()
    for args, message in [
        (["--pairs", str(tmp_path / "none.parquet"), "--format", "pickapic"], f"error: {tmp_path / 'none.parquet'}: not a pickapic pair set"),
        (["--pairs", "x", "--format", "csv"], "error: --format: 'csv' is not a layout; choose one of pickapic, hpd, genai-bench, vipo"),
        (["--pairs", "x", "--category", "nope"], "error: unknown category 'nope'"),
    ]:
        result = runner.invoke(app, ["judge-eval", str(config_path), *args])
        assert result.exit_code == 2 and result.output.strip().splitlines()[-1].startswith(message), result.output
