"""End to end on the tiny models: real vLLM, diffusers and Ray, one pair per category."""

from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
import socket
import statistics
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import webdataset as wds
import yaml
from PIL import Image

from tests.conftest import TINY_MOTION_FLOOR, vipo, write_config
from vipo_build import drops

VIDEO_CATEGORIES = ["motion_quality", "visual_quality", "video_text_alignment"]
CATEGORIES = ["aesthetics", "composition", "text_image_alignment", "text_rendering", "human_quality", *VIDEO_CATEGORIES]


def snapshot(root: Path) -> dict[str, tuple[int, str]]:
    return {
        str(p.relative_to(root)): (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
        for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_counts_agree_everywhere(tiny_run):
    _, root, plan = tiny_run
    shards = root / "shards"
    assert sorted(p.name for p in shards.glob("*.json")) == [f"{plan.shard_name(s)}.json" for s in range(plan.num_shards)]
    keys: list[str] = []
    for s in range(plan.num_shards):
        name = plan.shard_name(s)
        record = json.loads((shards / f"{name}.json").read_text())
        manifest = pq.read_table(shards / f"{name}.parquet")
        samples = list(wds.WebDataset(str(shards / f"{name}.tar"), shardshuffle=False))
        assert record["pairs"] == manifest.num_rows == len(samples) == sum(plan.counts(s).values())
        assert record["categories"] == {c: n for c, n in sorted(plan.counts(s).items()) if n}
        assert [x["__key__"] for x in samples] == manifest.column("key").to_pylist()
        for f in record["files"].values():
            assert hashlib.sha256((shards / f["name"]).read_bytes()).hexdigest() == f["sha256"]
        for sample, row in zip(samples, manifest.to_pylist()):
            meta = json.loads(sample["json"])
            assert meta["category"] == row["category"] and sample["prompt.txt"].decode() == row["prompt"]
            assert meta["judge"]["vote_share"] > 0.5 and meta["judge"]["order_consistent"]
            if row["modality"] == "image":
                assert Image.open(io.BytesIO(sample["chosen.jpg"])).size == (64, 64)
                assert Image.open(io.BytesIO(sample["rejected.jpg"])).size == (64, 64)
                assert hashlib.sha256(sample["chosen.jpg"]).hexdigest() == row["chosen_sha256"]
            else:
                assert sample["chosen.mp4"][4:8] == b"ftyp" and row["frames"] == 9
            keys.append(sample["__key__"])
    assert len(keys) == len(set(keys)) == plan.total_pairs
    categories = sorted(k.rsplit("-u", 1)[0] for k in keys)
    assert categories == sorted(CATEGORIES)
    summary = json.loads((root / "summary.json").read_text())
    assert summary["shards"] == {"committed": plan.num_shards, "planned": plan.num_shards}
    for figures in summary["categories"].values():
        assert figures["written"] == figures["planned"] == 1
        assert figures["kept"] >= 1 and figures["prompts_requested"] >= figures["kept"] + sum(figures["dropped"].values())
        assert set(figures["dropped"]) <= set(drops.NAMES)  # every reason is one of the shared list
    assert set(summary["stages"]) == {"prompts", "judge:tiny-vlm", "judge:tiny-video-vlm", "generate:tiny-flux", "generate:tiny-sana",
                                  "generate:tiny-wan", "shards"}


def test_rerun_of_finished_run_writes_nothing(tiny_run):
    config, root, _ = tiny_run
    before = snapshot(root)
    result = vipo("run", str(config))
    assert result.returncode == 0, result.stderr
    assert "nothing to do" in result.stdout
    quiet = vipo("--quiet", "run", str(config))
    assert quiet.returncode == 0 and quiet.stdout == "", quiet.stdout + quiet.stderr
    assert snapshot(root) == before


def test_the_run_log_holds_every_call_with_its_actor_and_units(tiny_run):
    _, root, _ = tiny_run
    [run_log] = (root / "logs").glob("run-*.log")
    lines = run_log.read_text().splitlines()
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3} DEBUG   vipo_build\.run: vipo-build \S+, config \S+tiny1\.yaml, root ", lines[0])
    sent = [line for line in lines if re.search(r"scheduler: judge:tiny(-video)?-vlm#\d+: call of units? \w+/u\d{6}.* sent$", line)]
    done = [line for line in lines if re.search(r"scheduler: judge:tiny(-video)?-vlm#\d+: units? \w+/u\d{6}.* done in [\d.]+ s$", line)]
    assert len(sent) == len(done) > 0  # each call logged when sent and when done
    stages = json.loads((root / "summary.json").read_text())["stages"]
    judged = stages["judge:tiny-vlm"]["items"] + stages["judge:tiny-video-vlm"]["items"]
    assert sum(len(re.findall(r"\w+/u\d{6}", line)) for line in done) == judged


def copy_of_root(root: Path, tmp_path: Path, shard: str) -> tuple[Path, dict[str, bytes]]:
    """A copy of a finished root, and the bytes of one shard's files (tar, parquet, json) in it."""
    copy = tmp_path / "out"
    shutil.copytree(root, copy)
    return copy, {ext: (copy / "shards" / f"{shard}.{ext}").read_bytes() for ext in ("tar", "parquet", "json")}


def test_interrupted_run_rebuilds_missing_shards_only(tiny_run, tmp_path):
    config, root, plan = tiny_run
    victim = plan.shard_name(1)
    copy, original = copy_of_root(root, tmp_path, victim)
    # as if killed after the tar was written: no manifest, no commit record
    (copy / "shards" / f"{victim}.json").unlink()
    (copy / "shards" / f"{victim}.parquet").unlink()
    before = snapshot(copy)
    result = vipo("run", str(config), "--out", str(copy))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{plan.num_shards - 1} of {plan.num_shards} shards already committed" in result.stdout
    after = snapshot(copy)
    changed = sorted(k for k in after if before.get(k) != after[k])
    [run_log] = [k for k in changed if k.startswith("logs/")]  # this run's own, beside the first run's
    assert changed == [run_log, "progress.json", f"shards/{victim}.json", f"shards/{victim}.parquet", f"shards/{victim}.tar",
                       "summary.json"]
    assert f"Resuming {copy}: {plan.num_shards - 1} of {plan.num_shards} shards already committed." in (copy / run_log).read_text()
    summary = json.loads((copy / "summary.json").read_text())
    judged_units = sum(len(list((copy / "cache" / c).glob("*.judged.json"))) for c in CATEGORIES)
    # nothing expanded, generated or judged again; a unit judged past its category's quota (in flight when
    # the quota filled) is not even read
    assert {pool: s["items"] for pool, s in summary["stages"].items() if pool != "shards"} == dict.fromkeys(
        ["prompts", "generate:tiny-flux", "generate:tiny-sana", "generate:tiny-wan", "judge:tiny-vlm", "judge:tiny-video-vlm"], 0)
    assert summary["reused"]["prompt_parts"] == len(list((copy / "prompts").glob("*.parquet")))
    assert summary["reused"]["candidate_units"] == 0 and 0 < summary["reused"]["judged_units"] <= judged_units
    for ext, data in original.items():
        assert (copy / "shards" / f"{victim}.{ext}").read_bytes() == data


def test_changed_config_refuses_to_resume(tiny_run, tmp_path):
    config, root, _ = tiny_run
    changed = yaml.safe_load(config.read_text())
    changed["judge"]["threshold"] = 0.9
    before = snapshot(root)
    result = vipo("run", str(write_config(tmp_path / "changed.yaml", changed)))
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"error: {root}: this root was built with a different config; changed fields: judge.threshold "
        "(restore them or use another --out)"
    )
    assert snapshot(root) == before


def corrupt_copy(root: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "out"
    shutil.copytree(root, copy)
    return copy


def test_verify_passes_a_finished_run(tiny_run):
    _, root, plan = tiny_run
    result = vipo("verify", str(root), "--deep")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{plan.num_shards} shards good, 0 bad, 0 planned but not written yet" in result.stdout


def test_verify_names_each_bad_shard_and_repair_lets_run_rebuild(tiny_run, tmp_path):
    config, root, plan = tiny_run
    copy = corrupt_copy(root, tmp_path)
    shards = copy / "shards"
    names = [plan.shard_name(s) for s in range(plan.num_shards)]
    tar = (shards / f"{names[0]}.tar").read_bytes()
    (shards / f"{names[0]}.tar").write_bytes(tar[: len(tar) // 2])  # truncated
    flipped = bytearray((shards / f"{names[1]}.parquet").read_bytes())
    flipped[len(flipped) // 2] ^= 0xFF
    (shards / f"{names[1]}.parquet").write_bytes(bytes(flipped))
    (shards / f"{names[2]}.json").unlink()  # data without commit record
    result = vipo("verify", str(copy))
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert f"BAD {names[0]}: tar has {len(tar) // 2} bytes, record says {len(tar)}" in lines
    assert f"BAD {names[1]}: parquet sha256 differs from the record" in lines
    assert f"BAD {names[2]}: data files without a commit record (incomplete shard)" in lines
    assert "0 shards good, 3 bad, 0 planned but not written yet" in lines[-1]

    assert vipo("verify", str(copy), "--repair").returncode == 1
    assert sorted(p.name for p in shards.iterdir()) == []
    assert vipo("run", str(config), "--out", str(copy)).returncode == 0
    assert vipo("verify", str(copy)).returncode == 0
    for name in names:
        for ext in ("tar", "parquet", "json"):
            assert (shards / f"{name}.{ext}").read_bytes() == (root / "shards" / f"{name}.{ext}").read_bytes()


def test_verify_catches_a_manifest_missing_a_row(tiny_run, tmp_path):
    _, root, plan = tiny_run
    copy = corrupt_copy(root, tmp_path)
    name = plan.shard_name(0)
    manifest = pq.read_table(copy / "shards" / f"{name}.parquet")
    pq.write_table(manifest.slice(0, manifest.num_rows - 1), copy / "shards" / f"{name}.parquet", compression="zstd")
    record_path = copy / "shards" / f"{name}.json"
    record = json.loads(record_path.read_text())
    data = (copy / "shards" / f"{name}.parquet").read_bytes()
    record["files"]["parquet"].update(bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
    record_path.write_text(json.dumps(record))  # checksums match: only the row count betrays it
    result = vipo("verify", str(copy))
    assert result.returncode == 1
    assert f"BAD {name}: manifest has {manifest.num_rows - 1} rows, record says {manifest.num_rows}" in result.stdout


def test_status_reports_progress(tiny_run, tmp_path):
    _, root, plan = tiny_run
    copy = corrupt_copy(root, tmp_path)
    (copy / "shards" / f"{plan.shard_name(0)}.json").unlink()
    result = vipo("status", str(copy), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["shards"] == {"planned": 3, "complete": 2, "incomplete": [plan.shard_name(0)], "missing": 0}
    written = {c: figures["written"] for c, figures in report["categories"].items()}
    assert written == {c: 1 - plan.counts(0).get(c, 0) for c in CATEGORIES}
    assert all(figures["kept"] >= 1 for figures in report["categories"].values())
    # the last run's diversity of the pairs within each quota: one pair, so one subject and one combination
    assert report["diversity"] == {c: {"distinct_subjects": 1, "facet_combinations": 1} for c in CATEGORIES}
    result = vipo("status", str(tmp_path / "nowhere"))
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: {tmp_path / 'nowhere'}: no run.json: not a vipo-build dataset root (or not started yet)"


def test_second_writer_is_refused_and_a_dead_ones_lock_taken_over(tiny_run, tmp_path):
    config, root, plan = tiny_run
    copy = corrupt_copy(root, tmp_path)
    for ext in ("json", "parquet", "tar"):
        (copy / "shards" / f"{plan.shard_name(2)}.{ext}").unlink()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        owner = {"host": socket.gethostname(), "pid": sleeper.pid, "started": "2026-01-01T00:00:00+0000"}
        (copy / "lock.json").write_text(json.dumps(owner))
        result = vipo("run", str(config), "--out", str(copy))
        assert result.returncode == 2
        assert result.stderr.strip() == (
            f"error: {copy}: another run is writing this root (host {owner['host']}, pid {sleeper.pid}, "
            f"started 2026-01-01T00:00:00+0000); if that run is gone, delete {copy / 'lock.json'}"
        )
        assert not (copy / "shards" / f"{plan.shard_name(2)}.json").exists()
    finally:
        sleeper.kill()
        sleeper.wait()
    result = vipo("run", str(config), "--out", str(copy))  # the owner is dead now: its lock is stale
    assert result.returncode == 0, result.stdout + result.stderr
    assert (copy / "shards" / f"{plan.shard_name(2)}.json").read_bytes() == (root / "shards" / f"{plan.shard_name(2)}.json").read_bytes()
    assert not (copy / "lock.json").exists()


def test_audit_of_the_tiny_run_counts_what_the_manifests_hold(tiny_run):
    _, root, plan = tiny_run
    result = vipo("audit", str(root))
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((root / "reports" / "audit.json").read_text())
    manifests = pa.concat_tables(pq.read_table(p) for p in sorted((root / "shards").glob("*.parquet")))
    counted = manifests.group_by("category").aggregate([("key", "count")])
    per_category = dict(zip(counted.column("category").to_pylist(), counted.column("key_count").to_pylist()))
    assert {c["category"]: c["pairs"] for c in report["run"]["categories"]} == per_category == plan.quotas
    assert report["passed"] and report["offenders"] == []
    assert (root / "reports" / "audit.html").stat().st_size > 10_000
    # the random-weight judge as it is: over every judged pair (kept or dropped), not the kept ones only
    verdicts = [v for f in sorted((root / "cache").glob("*/u*.judged.json")) for v in json.loads(f.read_text())["verdicts"]]
    decided = [v for v in verdicts if v["chosen_side"] is not None]
    judge = report["run"]["judge"]["overall"]
    assert judge["pairs"] == len(verdicts) > plan.total_pairs
    consistency = sum(v["order_consistent"] for v in decided) / len(decided)
    assert judge["order_consistency_rate"] == pytest.approx(consistency) and consistency < 0.9
    assert all(a["order_consistent_rate"] == 1.0 for a in report["run"]["agreement"])  # kept pairs: consistent by the keep rule
    # the clip figures of the committed video pairs, as the manifests carry them
    motion = {m["category"]: m for m in report["run"]["motion"]["categories"]}
    assert sorted(motion) == sorted(VIDEO_CATEGORIES)
    for category, figures in motion.items():
        rows = [r for r in manifests.to_pylist() if r["category"] == category]
        assert figures["pairs"] == len(rows) == plan.quotas[category]
        assert figures["chosen_motion_median"] == pytest.approx(statistics.median(r["chosen_motion"] for r in rows), abs=1e-6)
        assert figures["rejected_motion_median"] == pytest.approx(statistics.median(r["rejected_motion"] for r in rows), abs=1e-6)
        assert sum(figures["chosen_histogram"]) == sum(figures["rejected_histogram"]) == len(rows)
        assert figures["motion_p10"] >= TINY_MOTION_FLOOR  # no static clip reaches a shard


def test_a_clip_below_the_motion_floor_drops_its_pair_unjudged_as_static_clip(tiny_run):
    _, root, _ = tiny_run
    static = 0
    for category in VIDEO_CATEGORIES:
        for judged in sorted((root / "cache" / category).glob("u*.tiny-video-vlm.judged.json")):
            unit = judged.name.split(".", 1)[0]
            candidates = pq.read_table(root / "cache" / category / f"{unit}.tiny-wan.candidates.parquet",
                                       columns=["prompt_id", "side", "motion"]).to_pylist()
            motion = {(c["prompt_id"], c["side"]): c["motion"] for c in candidates}
            for verdict in json.loads(judged.read_text())["verdicts"]:
                sides = [motion[verdict["pair_id"], side] for side in (0, 1)]
                below = any(s["motion"] < TINY_MOTION_FLOOR for s in sides)
                assert [s["static"] for s in sides] == [s["motion"] < TINY_MOTION_FLOOR for s in sides]
                assert (verdict["reason"] == "static_clip") == below, verdict["pair_id"]
                assert (verdict["votes"] == []) == below  # the judge was never asked about it
                static += below
    counted = sum(f["dropped"].get("static_clip", 0) for c, f in json.loads((root / "summary.json").read_text())["categories"].items())
    assert 0 < counted <= static  # the summary counts the units up to each category's last needed one


def test_the_audit_fails_a_judge_below_the_floors_naming_each_category(tiny_run, tmp_path):
    _, root, _ = tiny_run
    copy = corrupt_copy(root, tmp_path)
    recorded = json.loads((copy / "run.json").read_text())
    recorded["config"]["audit"] = {"min_order_consistency": 0.95, "min_kappa": 0.5}  # a real judge's floors
    (copy / "run.json").write_text(json.dumps(recorded))
    result = vipo("audit", str(copy))
    assert result.returncode == 1
    report = json.loads((copy / "reports" / "audit.json").read_text())
    named = {o["category"] for o in report["offenders"] if o["kind"] == "judge_quality"}
    assert named == set(CATEGORIES)
    assert "OFFENDER category aesthetics: judge order consistency" in result.stdout


def candidate_files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in (root / "cache").rglob("*.candidates.parquet")}


def test_gc_frees_only_what_no_shard_will_read_and_resume_status_verify_audit_work_after_it(tiny_run, tmp_path):
    config, root, plan = tiny_run
    victim = plan.shard_name(2)
    copy, original = copy_of_root(root, tmp_path, victim)
    for ext in original:
        (copy / "shards" / f"{victim}.{ext}").unlink()
    everything = candidate_files(copy)
    judged_files = sorted((copy / "cache").glob("*/*.judged.json"))
    judged = {f"{j.parent.name}/{j.name.split('.', 1)[0]}" for j in judged_files}
    (copy / "cache" / "aesthetics" / "u000000.judged.json.tmp-0badf00d").write_bytes(b"cut short")  # a killed write

    dry = vipo("gc", str(copy), "--dry-run")
    assert dry.returncode == 0 and dry.stdout.startswith("gc would free "), dry.stdout + dry.stderr
    assert candidate_files(copy) == everything
    freed = vipo("gc", str(copy))
    assert freed.returncode == 0, freed.stdout + freed.stderr
    kept = candidate_files(copy)
    # a unit keeps its candidates while one of its kept pairs is in no committed shard (the missing
    # one's, or past its category's quota until every shard is committed), or while it is not judged
    # (generated when its category's quota filled); judged files all stay
    committed = {k for p in (copy / "shards").glob("*.parquet") for k in pq.read_table(p).column("key").to_pylist()}
    waiting = {f"{j.parent.name}/{j.name.split('.', 1)[0]}" for j in (copy / "cache").glob("*/*.judged.json")
               if {v["pair_id"] for v in json.loads(j.read_text())["verdicts"] if v["kept"]} - committed}
    unjudged = {p.split("/", 1)[1].split(".", 1)[0] for p in everything} - judged
    assert {p.split("/", 1)[1].split(".", 1)[0] for p in kept} == waiting | unjudged
    assert len(kept) < len(everything) and not list(copy.rglob("*.tmp-*"))
    assert all(j.is_file() for j in judged_files)

    resumed = vipo("run", str(config), "--out", str(copy), "--gc")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert resumed.stdout.strip().splitlines()[-1].startswith("gc freed ")
    for ext, data in original.items():
        assert (copy / "shards" / f"{victim}.{ext}").read_bytes() == data
    assert candidate_files(copy) == set()  # every shard committed: no candidate is needed again
    for command in (("verify", str(copy)), ("status", str(copy), "--json"), ("audit", str(copy))):
        result = vipo(*command)
        assert result.returncode == 0, command + (result.stdout, result.stderr)
    assert json.loads(vipo("status", str(copy), "--json").stdout)["shards"]["complete"] == plan.num_shards
