"""`vipo-build audit` on synthetic roots written by the real shard writer: counts against a
pyarrow query over the manifests, a hand-unbalanced shard, a commit record that disagrees with
its manifest, the HTML in headless chromium, --compare, bad roots and an S3 root."""

from __future__ import annotations

import io
import json
from pathlib import Path

import fsspec.config
import jsonschema
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import yaml
from PIL import Image
from rich.console import Console

from tests.s3 import CREDENTIALS, s3_server
from vipo_build.audit.command import audit
from vipo_build.audit.model import AuditReport
from vipo_build.config import PipelineConfig
from vipo_build.errors import VipoError
from vipo_build.judge import panel
from vipo_build.layout import LOCK, RUN_JSON, SHARDS_DIR
from vipo_build.records import Candidate, Pair, Prompt, Verdict, Vote
from vipo_build.run import category_files
from vipo_build.runtime import cache
from vipo_build.runtime.storage import Storage
from vipo_build.schemas import render
from vipo_build.shards.plan import ShardPlan
from vipo_build.shards.writer import write_shard
from vipo_build.status import root_status
from vipo_build.status import show as show_status

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "schemas" / "audit.schema.json"
TOLERANCE = 1.0
UNIT = 16


def tiny_pipeline() -> PipelineConfig:
    """pipelines/tiny.yaml: 8 categories of 5 pairs, 10 pairs per shard, so 4 shards."""
    return PipelineConfig.model_validate(yaml.safe_load((REPO / "pipelines" / "tiny.yaml").read_text()))


def make_pair(config: PipelineConfig, category: str, ordinal: int) -> Pair:
    """The ordinal-th kept pair of a category; generators, scores and agreement vary with it."""
    spec = config.category(category)
    unit, index = divmod(ordinal, UNIT)
    prompt = Prompt(id=f"{category}-u{unit:06d}-p{index:03d}", category=category, modality=spec.modality, unit=unit,
                    index=index, round=0, seed_subject="a lighthouse", text=f"{category} prompt {ordinal}",
                    expansion_model="llm")
    generators = [g.name for g in config.generators_for(spec.modality)]
    video = spec.modality == "video"
    sides = [
        Candidate(prompt_id=prompt.id, side=s, generator=generators[(ordinal + s) % len(generators)], seed=2 * ordinal + s,
                  width=64 if video else 64 + 32 * (ordinal % 2), height=64, frames=9 if video else 1,
                  fps=8 if video else None, format="mp4" if video else "jpg", media=f"{prompt.id}/{s}".encode())
        for s in (0, 1)
    ]
    dimensions = spec.rubric.dimension_names
    scores = [{d: 4 + ordinal % 2 for d in dimensions}, {d: 2 + ordinal % 3 for d in dimensions}]
    votes = [Vote(judge="j", order=o, view="image", sample=0, seed=k, winner_side=0 if k or ordinal % 3 else 1, scores=scores)
             for k, o in enumerate(("AB", "BA"))]
    consistent = votes[0].winner_side == votes[1].winner_side
    verdict = Verdict(pair_id=prompt.id, kept=True, reason="kept", chosen_side=0, vote_share=1.0 if consistent else 0.5,
                      order_consistent=consistent, votes_for=[2 if consistent else 1, 0 if consistent else 1, 0],
                      mean_scores=[{d: float(v) for d, v in s.items()} for s in scores], votes=votes)
    return Pair(key=prompt.id, prompt=prompt, chosen=sides[0], rejected=sides[1], verdict=verdict)


def write_caches(storage: Storage, config: PipelineConfig, category: str, kept: int) -> None:
    """One expansion round of one unit and its verdicts: `kept` kept, the rest dropped."""
    pairs = [make_pair(config, category, i) for i in range(UNIT)]
    prompts = [p.prompt for p in pairs]
    verdicts = [p.verdict if i < kept else p.verdict.model_copy(update={"kept": False, "reason": ("tie", "low_agreement")[i % 2]})
                for i, p in enumerate(pairs)]
    cache.write_prompts(storage, category, 0, prompts, [0], {})
    for judge in panel.judge_names(config.judge, config.category(category)):  # each judge's file, as a run writes them
        cache.write_judged(storage, category, 0, judge, prompts, verdicts)


def make_root(directory: Path, shards: int | None = None) -> Storage:
    """A root as `run` leaves it after committing its first `shards` shards (default: all)."""
    config = tiny_pipeline()
    plan = ShardPlan.of(config)
    storage = Storage(str(directory))
    storage.write_table("plan.parquet", plan.table())
    storage.write_bytes(RUN_JSON, json.dumps({"config": config.model_dump(mode="json"), "config_hash": config.output_hash(),
                                              "category_files": category_files(config), "version": "test"}).encode())
    for category, quota in plan.quotas.items():
        write_caches(storage, config, category, kept=quota + 2)
    for s in range(plan.num_shards if shards is None else shards):
        write_shard(storage, plan.shard_name(s), [make_pair(config, c, o) for c, o in plan.slots(s)])
    return storage


def run_audit(root: str, compare: str | None = None, width: int = 240) -> tuple[int, str, AuditReport]:
    sink = io.StringIO()
    code = audit(root, TOLERANCE, compare, Console(file=sink, width=width))
    report = AuditReport.model_validate_json(Storage(root).read_bytes("reports/audit.json"))
    return code, sink.getvalue(), report


def committed_manifests(directory: Path) -> pa.Table:
    names = [p.stem for p in sorted((directory / SHARDS_DIR).glob("*.json"))]
    return pq.read_table([str(directory / SHARDS_DIR / f"{n}.parquet") for n in names])


def test_counts_equal_a_query_over_the_manifests(tmp_path):
    root = tmp_path / "root"
    storage = make_root(root, shards=3)
    # the run goes on: a shard it is writing has data files but no commit record yet, never audited
    storage.write_bytes(LOCK, b"{}")
    config = tiny_pipeline()
    plan = ShardPlan.of(config)
    write_shard(storage, plan.shard_name(3), [make_pair(config, c, o) for c, o in plan.slots(3)])
    (root / SHARDS_DIR / f"{plan.shard_name(3)}.json").unlink()

    code, out, report = run_audit(str(root))

    assert code == 0, out
    manifests = committed_manifests(root)
    by_category = dict(zip(*manifests.group_by("category").aggregate([([], "count_all")]).to_pydict().values()))
    # the first three shards are image shards: the video categories have none yet
    assert {c.category: c.pairs for c in report.run.categories if c.pairs} == by_category
    assert {c.category for c in report.run.categories if not c.pairs} == {"motion_quality", "video_text_alignment", "visual_quality"}
    cells = manifests.group_by(["shard", "category"]).aggregate([([], "count_all")]).to_pylist()
    assert {(r["shard"], r["category"]): r["count_all"] for r in cells} == {
        (s.shard, name): c.pairs for s in report.run.shard_balance for name, c in s.categories.items() if c.pairs
    }
    planned = pq.read_table(root / "plan.parquet")
    committed = planned.filter(pc.is_in(planned["shard"], pa.array(sorted({r["shard"] for r in cells}))))
    targets = dict(zip(*committed.group_by("category").aggregate([("pairs", "sum")]).to_pydict().values()))
    assert {c.category: c.target for c in report.run.categories if c.target} == targets
    assert {c.category: c.quota for c in report.run.categories} == plan.quotas
    assert report.run.shards.committed == 3 and report.run.shards.incomplete == [plan.shard_name(3)]
    assert report.run.pairs.committed == manifests.num_rows == 25 and report.run.pairs.planned == 40
    matchups = manifests.group_by(["chosen_generator", "rejected_generator"]).aggregate([([], "count_all")]).to_pylist()
    assert sorted((m.chosen, m.rejected, m.pairs) for m in report.run.generators.matchups) == sorted(
        (r["chosen_generator"], r["rejected_generator"], r["count_all"]) for r in matchups)
    consistent = {r["category"]: r["order_consistent_mean"]
                  for r in manifests.group_by("category").aggregate([("order_consistent", "mean")]).to_pylist()}
    assert {a.category: a.order_consistent_rate for a in report.run.agreement if a.category in consistent} == pytest.approx(consistent)
    assert sum(r.pairs for r in report.run.media.resolutions) == sum(c.pairs for c in report.run.media.clip_lengths) == 25
    assert report.run.funnel.kept == 8 * 7 and report.run.funnel.judged == 8 * UNIT and report.run.funnel.written == 25
    assert report.run.funnel.dropped == {"low_agreement": 5 * 8, "tie": 4 * 8}  # units of 16: 7 kept, then alternating
    assert report.passed and not report.offenders
    assert "OFFENDER" not in out and "PASS" in out
    jsonschema.validate(json.loads((root / "reports" / "audit.json").read_text()), json.loads(SCHEMA.read_text()))
    assert {p.name for p in (root / "reports" / "plots").iterdir()} >= {"shard-mix.png", "funnel.png", "scores.png"}
    assert "](plots/shard-mix.png)" in (root / "reports" / "audit.md").read_text()


def test_unbalanced_shard_fails_naming_shard_and_category(tmp_path):
    root = tmp_path / "root"
    storage = make_root(root)
    config = tiny_pipeline()
    plan = ShardPlan.of(config)
    # shard 1 written by hand with one aesthetics pair replaced by an extra composition pair
    pairs = [make_pair(config, c, o) for c, o in plan.slots(1)]
    swapped = next(i for i, p in enumerate(pairs) if p.prompt.category == "aesthetics")
    pairs[swapped] = make_pair(config, "composition", 99)
    write_shard(storage, plan.shard_name(1), pairs)

    code, out, report = run_audit(str(root))

    assert code == 1
    assert "OFFENDER shard tiny-image-000001 category aesthetics:" in out
    assert "OFFENDER shard tiny-image-000001 category composition:" in out
    assert "OFFENDER category aesthetics:" in out and "OFFENDER category composition:" in out
    assert {(o.kind, o.shard, o.category) for o in report.offenders} == {
        ("category", None, "aesthetics"), ("category", None, "composition"),
        ("shard_mix", "tiny-image-000001", "aesthetics"), ("shard_mix", "tiny-image-000001", "composition"),
    }
    assert not report.passed and "FAIL" in (root / "reports" / "audit.md").read_text()


def test_commit_record_that_disagrees_with_its_manifest_is_an_offender(tmp_path):
    root = tmp_path / "root"
    make_root(root)
    record_path = root / SHARDS_DIR / "tiny-image-000002.json"
    record = json.loads(record_path.read_text())
    record["categories"]["aesthetics"] += 1
    record["categories"]["composition"] -= 1
    record_path.write_text(json.dumps(record))

    code, out, report = run_audit(str(root))

    assert code == 1
    assert "shard tiny-image-000002 category aesthetics: commit record says" in out
    assert {(o.kind, o.shard, o.category) for o in report.offenders} == {
        ("record_mismatch", "tiny-image-000002", "aesthetics"), ("record_mismatch", "tiny-image-000002", "composition"),
    }


def test_a_shard_corrupted_after_the_run_is_named_and_fails_the_audit(tmp_path):
    root = tmp_path / "root"
    storage = make_root(root)
    tar = root / SHARDS_DIR / "tiny-image-000001.tar"
    tar.write_bytes(tar.read_bytes()[:-512])  # a truncated tar: its size no longer matches the commit record

    code, out, report = run_audit(str(root))

    assert code == 1
    assert ("OFFENDER shard tiny-image-000001: data files without a valid commit record (corrupt or half-written; not "
            "audited); `vipo-build verify ROOT` names the file, `--repair` lets a run rebuild it") in out
    assert [(o.kind, o.shard) for o in report.offenders] == [("bad_shard", "tiny-image-000001")]
    # while a run holds the lock, an incomplete shard is one being written: not an offender
    storage.write_bytes(LOCK, b"{}")
    code, _, report = run_audit(str(root))
    assert report.run.shards.incomplete == ["tiny-image-000001"] and "bad_shard" not in {o.kind for o in report.offenders}


def test_status_and_audit_fit_80_columns_with_every_figure_whole(tmp_path):
    root = tmp_path / "root"
    storage = make_root(root)
    sink = io.StringIO()
    show_status(root_status(storage), Console(file=sink, width=80))
    code, audit_out, _ = run_audit(str(root), width=80)
    for out in (sink.getvalue(), audit_out):
        lines = out.splitlines()  # titles and the verdict may be longer: they name roots and are not wrapped
        assert all(len(line) <= 80 for line in lines if line[:1] in "┏┃┡│└") and "…" not in out, out
        table_rows = [line for line in lines if line.startswith("│ aesthetics ")]
        assert table_rows and all(line.endswith("│") for line in table_rows), out  # one line per row, every cell on it
    assert "dropped: #1 tie, #2 low_agreement" in sink.getvalue()  # in the order the judge checks them


def test_html_renders_in_headless_chromium(tmp_path):
    from playwright.sync_api import sync_playwright

    root = tmp_path / "root"
    make_root(root, shards=2)
    assert run_audit(str(root))[0] == 0
    page_html = (root / "reports" / "audit.html").read_text()
    assert "src=\"http" not in page_html and "<script" not in page_html  # self-contained

    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium")
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto((root / "reports" / "audit.html").as_uri())
            images = page.evaluate("Array.from(document.images).map(i => [i.alt, i.complete && i.naturalWidth > 0])")
            shot = page.screenshot(full_page=True)
        finally:
            browser.close()
    assert errors == []
    # counts, shard mix, win rates, agreement, funnel, media, scores, motion: each drawn
    assert len(images) == 8 and all(shown for _, shown in images), images
    assert "Clip motion per video category" in [alt for alt, _ in images]
    extrema = Image.open(io.BytesIO(shot)).convert("RGB").getextrema()
    assert any(low != high for low, high in extrema), "blank screenshot"


def test_compare_shows_both_runs(tmp_path):
    full, partial = tmp_path / "full", tmp_path / "partial"
    make_root(full)
    make_root(partial, shards=1)

    code, out, report = run_audit(str(full), compare=str(partial))

    assert code == 0, out
    assert report.compare is not None and report.compare.root == str(partial) and report.compare.shards.committed == 1
    assert [r.category for r in report.comparison] == [c.category for c in report.run.categories]
    assert {r.category: (r.pairs, r.other_pairs) for r in report.comparison} == {
        c.category: (c.pairs, o.pairs) for c, o in zip(report.run.categories, report.compare.categories)
    }
    assert f"side by side: A = tiny ({full}), B = tiny ({partial})" in out
    for name in ("audit.md", "audit.html"):
        text = (full / "reports" / name).read_text()
        assert "side by side" in text and str(partial) in text
    assert not (partial / "reports").exists()  # the compared root is only read


def test_root_without_committed_shards_passes(tmp_path):
    root = tmp_path / "root"
    make_root(root, shards=0)

    code, out, report = run_audit(str(root))

    assert code == 0, out
    assert report.run.shards.committed == 0 and report.run.pairs.committed == 0 and report.run.pairs.planned == 40
    assert all(c.pairs == c.target == 0 for c in report.run.categories)
    assert report.run.funnel.kept == 8 * 7  # kept in the caches, no shard written yet


def test_bad_roots_are_one_line_errors(tmp_path):
    console = Console(file=io.StringIO())
    missing = tmp_path / "nothing-here"
    with pytest.raises(VipoError, match=f"^{missing}: no run.json"):
        audit(str(missing), TOLERANCE, None, console)
    good = tmp_path / "good"
    make_root(good, shards=1)
    with pytest.raises(VipoError, match=f"^{missing}: no run.json"):
        audit(str(good), TOLERANCE, str(missing), console)
    manifest = good / SHARDS_DIR / "tiny-image-000000.parquet"
    manifest.write_bytes(bytes(manifest.stat().st_size))  # same size, so still committed; not Parquet
    with pytest.raises(VipoError, match=f"^{good}/shards/tiny-image-000000.parquet: unreadable manifest"):
        audit(str(good), TOLERANCE, None, console)
    (good / "plan.parquet").unlink()
    with pytest.raises(VipoError, match=f"^{good}: no plan.parquet"):
        audit(str(good), TOLERANCE, None, console)
    with pytest.raises(VipoError, match="^--tolerance: must be >= 0"):
        audit(str(good), -1, None, console)


def test_s3_root(tmp_path, monkeypatch):
    local = tmp_path / "root"
    make_root(local, shards=2)
    with s3_server("vipo-audit") as (env, _, fs):
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        monkeypatch.setitem(fsspec.config.conf, "s3", {"endpoint_url": env["FSSPEC_S3_ENDPOINT_URL"]})
        fs.put(f"{local}/", "vipo-audit/root/", recursive=True)
        url = "s3://vipo-audit/root"

        code, out, report = run_audit(url)

        assert code == 0, out
        assert report.run.root == url and report.run.pairs.committed == 20
        counts = pc.value_counts(committed_manifests(local)["category"]).to_pylist()
        assert {c.category: c.pairs for c in report.run.categories if c.pairs} == {r["values"]: r["counts"] for r in counts}
        assert fs.exists("vipo-audit/root/reports/audit.html") and fs.exists("vipo-audit/root/reports/plots/funnel.png")
        assert CREDENTIALS["AWS_SECRET_ACCESS_KEY"] not in fs.cat_file("vipo-audit/root/reports/audit.json").decode()


def test_schema_file_is_current():
    assert SCHEMA.read_text() == render(AuditReport.model_json_schema()), "regenerate schemas/audit.schema.json"


def test_judge_quality_covers_every_judged_pair_and_its_floors_fail_the_audit(tmp_path):
    from scipy.stats import binomtest
    from statsmodels.stats.inter_rater import fleiss_kappa

    root = tmp_path / "root"
    storage, config = make_root(root), tiny_pipeline()
    code, out, report = run_audit(str(root))
    assert code == 0, out
    # the same figures computed independently from the judged caches: every verdict, kept or dropped
    for category, figures in report.run.judge.categories.items():
        verdicts = json.loads(storage.read_bytes(cache.judged_path(category, 0, panel.judge_names(config.judge, config.category(category))[0])))["verdicts"]
        decided = [v for v in verdicts if v["chosen_side"] is not None]
        votes = [vote for v in verdicts for vote in v["votes"] if vote["valid"]]
        table = [[sum(vote["winner_side"] == side for vote in v["votes"] if vote["valid"]) for side in (0, 1, None)]
                 for v in verdicts]
        first = sum(vote["winner_side"] == (0 if vote["order"] == "AB" else 1) for vote in votes)
        decisive = sum(vote["winner_side"] is not None for vote in votes)
        assert figures.pairs == len(verdicts) == UNIT and figures.decided == len(decided)
        assert figures.order_consistency_rate == pytest.approx(sum(v["order_consistent"] for v in decided) / len(decided))
        assert figures.fleiss_kappa == pytest.approx(fleiss_kappa(table, method="fleiss"))
        assert figures.tie_rate == sum(vote["winner_side"] is None for vote in votes) / len(votes)
        assert figures.first_shown_rate == pytest.approx(first / decisive)
        assert figures.first_shown_p_value == pytest.approx(binomtest(first, decisive).pvalue)
        assert figures.funnel["kept"] < figures.pairs  # dropped pairs count too, unlike the kept-pair table
    assert "judge quality over every judged pair, kept or dropped (floors: order consistency 0, Fleiss' kappa -1)" in out

    raw = json.loads(storage.read_bytes(RUN_JSON))
    consistency = report.run.judge.categories["aesthetics"].order_consistency_rate
    raw["config"]["audit"] = {"min_order_consistency": round(consistency + 0.01, 3), "min_kappa": None}
    storage.write_bytes(RUN_JSON, json.dumps(raw).encode())
    code, out, report = run_audit(str(root))
    assert code == 1 and not report.passed
    assert {(o.kind, o.category) for o in report.offenders} == {("judge_quality", c) for c in report.run.judge.categories}
    assert (f"OFFENDER category aesthetics: judge order consistency {consistency:.3f} below audit.min_order_consistency "
            f"{consistency + 0.01:.3g} (over {UNIT} judged pairs)") in out


def test_the_audit_shows_the_judge_against_human_labels_once_calibrate_has_scored_them(tmp_path):
    from vipo_build.calibration.report import calibrate
    from vipo_build.calibration.sample import export_sample

    root = tmp_path / "root"
    make_root(root)
    code, out, report = run_audit(str(root))
    assert report.run.calibration is None and "judge against human labels" not in out
    export_sample(str(root), 12, seed=1)
    sample = pq.read_table(root / "calibration" / "sample.parquet").to_pylist()
    # three raters; the first two prefer the judge's chosen side, the third the other one on every other pair
    labels = [{"key": s["key"], "rater": r, "choice": "A" if (s["a_side"] == "chosen") != flip else "B"}
              for i, s in enumerate(sample) for r, flip in (("r1", False), ("r2", False), ("r3", i % 2 == 1))]
    pq.write_table(pa.Table.from_pylist(labels), tmp_path / "labels.parquet")
    calibrated = calibrate(str(root), str(tmp_path / "labels.parquet"), Console(file=io.StringIO()))
    code, out, report = run_audit(str(root))
    assert code == 0, out
    assert report.run.calibration.model_dump(mode="json") == calibrated
    assert report.run.calibration.overall.judge_accuracy == 1.0  # the majority always sides with the judge
    assert "judge against human labels (3 raters, 36 labels, 0 skips" in out
