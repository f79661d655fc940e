"""Crash safety on the real stack: SIGKILL of the whole run at seeded points, `ray.kill` of an
actor, and an S3 root (moto's server) whose connections are cut mid-upload."""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import psutil
import pyarrow.parquet as pq
import pytest
import yaml

from tests.conftest import tiny_config, write_config
from tests.s3 import CREDENTIALS, free_port, s3_server
from tests.sessions import alive_in_session, kill_started_here, run_in_session, started_here
from vipo_build.runtime import failpoints

KILL_SEED = 20261126
# Stage order; the schedule kills once at each point. The points of the engines' stages run from an empty
# root; those of the plan and the shards from the reference root's cache, so no run of theirs loads an engine.
ENGINE_POINTS = ["prompts.part_written", "generate.batch", "candidates.written", "judge.batch", "judged.written"]
ROOT_POINTS = ["root.plan_written", "shard.tar_written", "shard.data_written", "shard.committed"]
NOT_OUTPUT = {"summary.json", "progress.json"}  # timings of one run, not dataset content (nor are logs/)
RUN_TIMEOUT_S = 600  # one run here takes under 4 minutes; below pytest's timeout, so a hang shows its stacks


def vipo(*args: str, env: dict | None = None, **failpoint_env: str) -> subprocess.CompletedProcess:
    """Run the CLI in a session of its own, so a failpoint kill takes its whole process tree.

    A kill spares vLLM's engine processes, as if they were outside the session (where an engine
    core reparented to init once was): they must die with their actor by themselves.
    """
    if "KILL" in failpoint_env:
        failpoint_env.setdefault("SPARE", failpoints.ENGINE_PROCESS_PREFIX)
    full_env = {**os.environ, **(env or {}), **{getattr(failpoints, k): v for k, v in failpoint_env.items()}}
    started = time.time()
    # what a run leaves behind is checked here, so it is not killed afterwards
    result = run_in_session([sys.executable, "-m", "vipo_build.cli", *args], full_env, RUN_TIMEOUT_S, leave_nothing=False)
    session = result.session
    killed = result.returncode == -9  # whatever the run started (Ray's services, workers) died with it
    deadline = time.monotonic() + 30
    while ((killed and alive_in_session(session)) or engines_left(started)) and time.monotonic() < deadline:
        time.sleep(0.2)  # the kernel still tears the processes down, or an engine is still shutting down
    assert not (killed and alive_in_session(session))
    assert not engines_left(started), f"vLLM processes outlived the run: {engines_left(started)}"
    return result


def engines_left(since: float) -> list[str]:
    """vLLM processes (engine cores, their workers and resource trackers) started since `since` by this
    test process's runs, wherever they were reparented, outside its own children."""
    ours = {p.pid for p in psutil.Process().children(recursive=True)}
    left = []
    for p in psutil.process_iter(["name", "cmdline", "create_time", "status"]):
        try:
            command = " ".join(p.info["cmdline"] or [])
            engine = p.info["name"].startswith(failpoints.ENGINE_PROCESS_PREFIX) or "vllm" in command
            if (engine and p.info["create_time"] >= since - 1 and p.pid not in ours and p.info["status"] != psutil.STATUS_ZOMBIE
                    and started_here(p)):
                left.append(f"{p.pid} {p.info['name']}")
        except psutil.Error:
            pass  # gone
    return left


def journal(path: Path) -> list[tuple[str, str]]:
    return [tuple(line.split(" ", 1)) for line in path.read_text().splitlines()] if path.exists() else []


def files(root: Path) -> dict[str, str]:
    """Every file of the root but the timings and the cache of units past the last one its dataset
    uses: work in flight when a category's quota filled, which a run finishes (and caches) or drops
    depending on timing."""
    last = last_units(root)
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*"))
            if p.is_file() and p.name not in NOT_OUTPUT and p.parent.name != "logs"
            and not past_dataset(str(p.relative_to(root)), last)}


def last_units(root: Path) -> dict[str, int]:
    """The last unit of each category that the root's committed pairs come from."""
    last: dict[str, int] = {}
    for key in manifest_keys(root):
        category, unit, _ = key.rsplit("-", 2)
        last[category] = max(last.get(category, 0), int(unit[1:]))
    return last


def past_dataset(path: str, last: dict[str, int]) -> bool:
    """Whether a cache path ("cache/aesthetics/u000003...") or a journal detail ("aesthetics/u000003/...") is of a
    unit past the last one the dataset uses."""
    parts = path.removeprefix("cache/").split("/")
    unit = parts[1].split(".", 1)[0] if len(parts) > 1 else ""
    return parts[0] in last and unit.startswith("u") and unit[1:].isdigit() and int(unit[1:]) > last[parts[0]]


def manifest_keys(root: Path) -> list[str]:
    return [k for p in sorted((root / "shards").glob("*.parquet")) for k in pq.read_table(p).column("key").to_pylist()]


@pytest.fixture(scope="module")
def small(tmp_path_factory, tiny_models) -> tuple[Path, Path, list[tuple[str, str]]]:
    """Two image categories, one generator, one pair per shard; and its uninterrupted run."""
    work = tmp_path_factory.mktemp("crash")
    config = tiny_config(output=str(work / "reference"))
    config["categories"] = {"aesthetics": {"pairs": 2}, "text_rendering": {"pairs": 2}}
    config["generate"]["pair_strategies"] = {"cross_seed": 1.0}
    config["generate"]["generators"] = config["generate"]["generators"][:1]
    config["generate"]["unit_size"] = 16
    config["shards"]["pairs_per_shard"] = 1
    path = write_config(work / "small.yaml", config)
    result = vipo("run", str(path), JOURNAL=str(work / "reference.journal"))
    assert result.returncode == 0, result.stdout + result.stderr
    return path, work / "reference", journal(work / "reference.journal")


def kill_at_each_then_resume(config: Path, out: Path, points: list[str], tmp_path: Path) -> list[tuple[str, str]]:
    """A run killed at each point in turn, each resuming what the last left, then one to the end; their journal."""
    rng = random.Random(KILL_SEED)
    events: list[tuple[str, str]] = []
    for i, point in enumerate(points):
        at = f"{point}:{rng.randint(1, 2) if point in ('generate.batch', 'judge.batch') else 1}"
        segment = tmp_path / f"segment{i}.journal"
        result = vipo("run", str(config), "--out", str(out), JOURNAL=str(segment), KILL=at)
        events += journal(segment)
        assert result.returncode == -9, f"{at} never came: " + result.stdout + result.stderr
        assert [name for name, _ in journal(segment)].count(point) == int(at.rsplit(":", 1)[1])  # died right there
    final = tmp_path / "final.journal"
    result = vipo("run", str(config), "--out", str(out), JOURNAL=str(final))
    assert result.returncode == 0, result.stdout + result.stderr
    return events + journal(final)


@pytest.mark.timeout(2400)  # six runs, and the reference run of the module's fixture, on 2 cores
def test_sigkill_in_the_engine_stages_then_resume_is_byte_identical(small, tmp_path):
    config, reference, reference_journal = small
    out = tmp_path / "out"
    events = kill_at_each_then_resume(config, out, ENGINE_POINTS, tmp_path)
    assert files(out) == files(reference)
    keys = manifest_keys(out)
    assert len(keys) == len(set(keys)) == 4 and keys == manifest_keys(reference)
    # each unit's candidates and verdicts entered the cache once, over all the runs together
    last = last_units(reference)
    for stage in ("candidates.written", "judged.written"):
        written = [detail for name, detail in events if name == stage]
        assert len(written) == len(set(written)), Counter(written).most_common(3)
        assert (sorted(d for d in written if not past_dataset(d, last))
                == sorted(d for name, d in reference_journal if name == stage and not past_dataset(d, last)))


def test_sigkill_at_the_plan_and_shard_writes_then_resume_is_byte_identical(small, tmp_path):
    config, reference, _ = small
    out = tmp_path / "out"
    shutil.copytree(reference, out)  # its cache, as if every unit were done when the root was started
    for started in ("run.json", "plan.parquet", "summary.json", "progress.json"):
        (out / started).unlink()
    shutil.rmtree(out / "shards")
    events = kill_at_each_then_resume(config, out, ROOT_POINTS, tmp_path)
    assert files(out) == files(reference)
    assert manifest_keys(out) == manifest_keys(reference)
    assert not {"prompts.part_written", "generate.batch", "judge.batch"} & {name for name, _ in events}  # no engine ran


def forget_units(root: Path, units: list[str], files: str = "*") -> None:
    """Drop units' cached `files` ("aesthetics/u000001"; all of them by default), and the shards: a resume makes
    them again."""
    for unit in units:
        category, name = unit.split("/")
        for cached in (root / "cache" / category).glob(f"{name}.{files}"):
            cached.unlink()
    shutil.rmtree(root / "shards")


def forget_last_units(root: Path) -> None:
    forget_units(root, [f"{c}/{sorted((root / 'cache' / c).glob('u*.judged.json'))[-1].name.split('.', 1)[0]}"
                        for c in ("aesthetics", "text_rendering")])


def test_an_engine_that_dies_is_named_in_one_line_and_its_unit_is_retried_on_a_fresh_actor(small, tmp_path):
    config, reference, _ = small
    out = tmp_path / "out"
    shutil.copytree(reference, out)
    forget_last_units(out)  # two units to judge: the engine dies after the first call
    result = vipo("run", str(config), "--out", str(out), JOURNAL=str(tmp_path / "journal"), KILL_ENGINE="judge.batch:1")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = [line for line in result.stdout.splitlines() if line.startswith("warning: judge:tiny-vlm#")]
    assert len(lines) == 1, result.stdout
    model = yaml.safe_load(config.read_text())["judge"]["engines"][0]["engine"]["model"]
    # one line for the call the dead engine failed, naming each of its units
    assert re.fullmatch(rf"warning: judge:tiny-vlm#\d+ failed on units? (aesthetics|text_rendering)/u\d+(, (aesthetics|text_rendering)/u\d+)* "
                        rf"\(attempt 1 of 3\): engine "
                        rf"{re.escape(model)}: .*engine core exited unexpectedly.* \(log: /\S+\); retrying on a fresh actor",
                        lines[0]), lines[0]
    log = Path(lines[0].rsplit("(log: ", 1)[1].split(")", 1)[0])
    assert log.is_file() and "engine core exited unexpectedly" in log.read_text()
    assert files(out) == files(reference)


def test_a_unit_a_stage_always_fails_on_is_recorded_the_rest_is_written_and_retry_failed_completes_it(small, tmp_path):
    config, reference, _ = small
    out = tmp_path / "out"
    shutil.copytree(reference, out)
    last_key = [k for k in manifest_keys(reference) if k.startswith("aesthetics-")][-1]
    unit = f"aesthetics/{last_key.split('-')[1]}"  # a unit the dataset needs
    other = f"text_rendering/{[k for k in manifest_keys(reference) if k.startswith('text_rendering-')][-1].split('-')[1]}"
    forget_units(out, [unit, other], files="*.judged.json")  # judged again, from their cached candidates
    once = yaml.safe_load(config.read_text())
    once["judge"]["engines"][0]["pool"]["retries"] = 0  # retries have their own tests; each would start an engine
    once["judge"]["engines"][0]["pool"]["units_per_call"] = 1  # without retries, a unit failing fails its call's others
    config = write_config(tmp_path / "once.yaml", once)
    result = vipo("run", str(config), "--out", str(out), RAISE=f"judge.unit@{unit}")
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr.strip() == (
        f"error: 1 unit(s) failed (recorded under {out}/failed; `vipo-build run CONFIG --retry-failed` retries them): "
        f"judge:tiny-vlm failed on unit {unit} after 1 attempt: FailpointError: failpoint judge.unit at {unit}")
    assert json.loads((out / "failed" / f"{unit}.json").read_text())["stage"] == "judge:tiny-vlm"
    # the other category's unit was judged all the same; the shards that need the failed one are not written
    assert (out / "cache" / f"{other}.tiny-vlm.judged.json").is_file() and not (out / "cache" / f"{unit}.tiny-vlm.judged.json").exists()
    assert len(list((out / "shards").glob("*.json"))) < len(list((reference / "shards").glob("*.json")))
    again = vipo("run", str(config), "--out", str(out))  # a plain resume leaves the failed unit alone
    assert again.returncode == 1 and unit in again.stderr
    retried = vipo("run", str(config), "--out", str(out), "--retry-failed")
    assert retried.returncode == 0, retried.stdout + retried.stderr
    assert files(out) == files(reference)


def test_actors_killed_mid_call_are_restarted_and_the_output_is_the_same(small, tmp_path):
    config, reference, _ = small
    out = tmp_path / "out"
    shutil.copytree(reference, out)
    forget_last_units(out)
    # two actors per pool this time: the output does not depend on how many there are
    wider = yaml.safe_load(config.read_text())
    wider["generate"]["generators"][0]["pool"]["actors"] = 2
    wider["judge"]["engines"][0]["pool"]["actors"] = 2
    wider["ray"]["num_cpus"] = 5  # every pool is up at once
    result = vipo("run", str(write_config(tmp_path / "wider.yaml", wider)), "--out", str(out),
                  JOURNAL=str(tmp_path / "journal"), KILL_ACTOR="generate.batch:1,judge.batch:1")
    assert result.returncode == 0, result.stdout + result.stderr
    events = journal(tmp_path / "journal")
    names = [name for name, _ in events]
    # a generator call is one unit: the killed one wrote nothing and went again
    assert names.count("generate.batch") == names.count("candidates.written") + 1
    # the units of the killed judge call were announced twice and, like every unit, written once
    announced = Counter(detail for name, detail in events if name == "judge.unit")
    written = [detail.rsplit("/", 1)[0] for name, detail in events if name == "judged.written"]
    assert sorted(written) == sorted(announced) and 2 in announced.values() and max(announced.values()) == 2
    assert files(out) == files(reference)


def test_s3_root_with_dropped_connections_and_a_kill(small, tmp_path):
    """The commit protocol on an object store whose connections are cut mid-upload: the root starts from the reference
    root's cache (as if every unit were done), so no engine loads and every write of the runs is a shard's or the
    root's own (the actors' cache writes to S3 are the two-node test's)."""
    config, reference, _ = small
    url = "s3://vipo-test/runs/small"
    with s3_server("vipo-test", cut_every=5, cut_after=1500) as (env, proxy, fs):
        for done in ("prompts", "cache"):
            fs.put(f"{reference / done}/", f"vipo-test/runs/small/{done}/", recursive=True)
        torn: list[str] = []
        looks = Counter()
        stop = threading.Event()

        def watch() -> None:
            """No commit record may ever be visible before its data files, whole."""
            while not stop.is_set():
                for path in fs.glob("vipo-test/runs/small/shards/*.json"):
                    record = json.loads(fs.cat_file(path))
                    looks["records"] += 1
                    for f in record["files"].values():
                        data = fs.cat_file(f"vipo-test/runs/small/shards/{f['name']}")
                        if hashlib.sha256(data).hexdigest() != f["sha256"]:
                            torn.append(f["name"])
                stop.wait(0.2)

        watcher = threading.Thread(target=watch)
        watcher.start()
        try:
            first = vipo("run", str(config), "--out", url, env=env, JOURNAL=str(tmp_path / "journal"), KILL="shard.committed:2")
            assert first.returncode == -9, first.stdout + first.stderr
            second = vipo("run", str(config), "--out", url, env=env, JOURNAL=str(tmp_path / "journal"))
            assert second.returncode == 0, second.stdout + second.stderr
            assert "2 of 4 shards already committed" in second.stdout
        finally:
            stop.set()
            watcher.join()
        assert torn == [] and looks["records"] > 0 and proxy.cuts > 0
        events = {name for name, _ in journal(tmp_path / "journal")}
        assert "shard.committed" in events and not set(ENGINE_POINTS) & events
        checked = vipo("verify", url, "--deep", env=env)
        assert checked.returncode == 0 and "4 shards good, 0 bad" in checked.stdout, checked.stdout + checked.stderr
        status = vipo("status", url, "--json", env=env)
        assert json.loads(status.stdout)["shards"]["complete"] == 4, status.stderr
        for shard in (reference / "shards").iterdir():
            assert fs.cat_file(f"vipo-test/runs/small/shards/{shard.name}") == shard.read_bytes()
        secret = CREDENTIALS["AWS_SECRET_ACCESS_KEY"].encode()
        assert not [p for p in fs.find("vipo-test") if secret in fs.cat_file(p)]
        assert all(secret.decode() not in r.stdout + r.stderr for r in (first, second, checked, status))

        missing = vipo("status", "s3://no-such-bucket/x", env=env)
        assert missing.returncode == 2
        assert missing.stderr.strip() == "error: s3://no-such-bucket/x: bucket 'no-such-bucket' does not exist (or these credentials cannot see it)"
    unreachable = vipo("status", url, env={**env, "AWS_MAX_ATTEMPTS": "1"})  # the server is gone now
    assert unreachable.returncode == 2 and len(unreachable.stderr.strip().splitlines()) == 1
    assert unreachable.stderr.startswith(f"error: {url}: cannot open the output root: "), unreachable.stderr


RAY = Path(sys.executable).with_name("ray")


def stage_actors(raylet: psutil.Process) -> list[psutil.Process]:
    """Stage actors living on a node: its raylet's worker processes titled after the actor class."""
    found = []
    for child in raylet.children(recursive=True):
        try:
            if "StageActor" in " ".join(child.cmdline()):
                found.append(child)
        except psutil.Error:
            pass
    return found


def raylet_of(node_manager_port: int) -> psutil.Process:
    for process in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if "raylet" in cmdline and f"--node_manager_port={node_manager_port}" in cmdline:
            return process
    raise AssertionError(f"no raylet on port {node_manager_port}")


@pytest.mark.timeout(900)
def test_two_node_cluster_on_s3_spreads_the_work_survives_a_lost_node_and_writes_the_same_bytes(small, tmp_path):
    config, reference, _ = small
    wider = yaml.safe_load(config.read_text())
    wider["generate"]["generators"][0]["pool"]["actors"] = 2
    wider["judge"]["engines"][0]["pool"]["actors"] = 2
    wider["ray"] = {}  # a cluster's own resources, not a local Ray's
    config = write_config(tmp_path / "cluster.yaml", wider)
    # The nodes start without the storage credentials: the driver's reach the workers through Ray's runtime env.
    # A new head turns Ray's token authentication on; the second node and the driver use its token.
    bare_env = {**{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "FSSPEC_"))}, "RAY_AUTH_MODE": "token"}
    port, second_port = free_port(), free_port()
    # The pools ask for 4.5 CPUs: Ray places some on the second node once the head is half used, and
    # the head alone can hold them all when the second node is gone.
    try:
        subprocess.run([str(RAY), "start", "--head", f"--port={port}", "--num-cpus=5", "--include-dashboard=false",
                        "--disable-usage-stats"], check=True, capture_output=True, env=bare_env, timeout=120)
        subprocess.run([str(RAY), "start", f"--address=127.0.0.1:{port}", f"--node-manager-port={second_port}",
                        "--num-cpus=3", "--disable-usage-stats"], check=True, capture_output=True, env=bare_env, timeout=120)
        address = {"RAY_ADDRESS": f"127.0.0.1:{port}", "RAY_AUTH_MODE": "token"}
        refused = vipo("run", str(config), "--out", str(tmp_path / "local"), env=address)
        assert refused.returncode == 2 and refused.stderr.strip() == (
            f"error: {tmp_path / 'local'}: a local output root on a 2-node cluster: each node's actors would write to "
            "their own disk; use a URL every node reaches (s3://, gs://, ...)")
        assert not (tmp_path / "local").exists()

        url = "s3://vipo-test/runs/two-nodes"
        with s3_server("vipo-test") as (env, _, fs):
            second = raylet_of(second_port)
            run = subprocess.Popen([sys.executable, "-m", "vipo_build.cli", "run", str(config), "--out", url],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                   env={**os.environ, **env, **address})
            deadline = time.time() + 600
            while not stage_actors(second) and run.poll() is None and time.time() < deadline:
                time.sleep(0.2)
            spread = stage_actors(second)
            assert spread, "no stage actor was placed on the second node"
            time.sleep(2)
            assert run.poll() is None, "the run ended before the node could be lost"
            second.kill()  # the node is lost mid-run, its actors with it
            stdout, stderr = run.communicate(timeout=600)
            assert run.returncode == 0, stdout + stderr
            for shard in (reference / "shards").iterdir():
                assert fs.cat_file(f"vipo-test/runs/two-nodes/shards/{shard.name}") == shard.read_bytes()
            secret = CREDENTIALS["AWS_SECRET_ACCESS_KEY"].encode()
            assert not [p for p in fs.find("vipo-test") if secret in fs.cat_file(p)]
    finally:
        kill_started_here()  # the two nodes' daemons; `ray stop` would also stop a local Ray of a test beside this one
