"""The labelling app: the server run by `vipo-build label` on loopback, driven by Debian's chromium
through playwright (two raters, clicks and keys, skip, undo, reload), then its database read
with sqlite3, scored by `calibrate` and checked against a computation made here; concurrent
posts, SIGKILL, path traversal, the token and an S3 root."""

from __future__ import annotations

import http.client
import io
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import fsspec.config
import httpx
import numpy as np
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from rich.console import Console
from typer.testing import CliRunner

from tests.calibration_roots import jpeg_media, make_root, mp4_media
from tests.s3 import free_port, s3_server
from vipo_build.calibration.assign import left_slot, next_pair, open_pairs
from vipo_build.calibration.gold import degraded_copy
from vipo_build.calibration.report import calibrate
from vipo_build.calibration.sample import export_sample, read_sample
from vipo_build.calibration.server import Labelling, make_app, serve
from vipo_build.calibration.store import LabelStore
from vipo_build.cli import app
from vipo_build.errors import VipoError
from vipo_build.runtime.storage import Storage

SIZES = {"aesthetics": 10, "text_rendering": 6, "composition": 4}
SAMPLE, GOLD_SHARE, OVERLAP, GOLD_FLOOR = 12, 0.25, 2, 0.6  # 9 judged pairs and 3 gold pairs


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("label") / "root"
    make_root(path, SIZES, jpeg_media)
    export_sample(str(path), SAMPLE, seed=5, gold_share=GOLD_SHARE)
    return path


def fresh_db(tmp_path: Path) -> Path:
    return tmp_path / "labels.sqlite"


class Server:
    """`vipo-build label` in its own process group, so a test can SIGKILL it."""

    def __init__(self, root: Path, db: Path, *extra: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.args = [sys.executable, "-m", "vipo_build.cli", "label", str(root), "--port", str(self.port), "--db", str(db),
                     "--overlap", str(OVERLAP), "--gold-floor", str(GOLD_FLOOR), *extra]
        self.start()

    def start(self) -> None:
        self.process = subprocess.Popen(self.args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.process.stdout.read()
            try:
                if httpx.get(self.url + "style.css", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.2)
        raise AssertionError("the label server did not come up within 120 s")

    def kill(self) -> None:
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()


@pytest.fixture
def server(root, tmp_path):
    running = Server(root, fresh_db(tmp_path))
    try:
        yield running
    finally:
        if running.process.poll() is None:
            running.kill()


def db_rows(db: Path) -> list[tuple]:
    with sqlite3.connect(db) as connection:
        return connection.execute("SELECT key, rater, choice, left_side FROM answers ORDER BY seq").fetchall()


def screen(page) -> tuple[str, str, str]:
    """(pair key, sample slot shown left, right) of the screen once both candidates have loaded."""
    page.wait_for_selector('#screen[data-loaded="1"]')
    return (page.get_attribute("#screen", "data-key"), page.get_attribute("#left", "data-slot"),
            page.get_attribute("#right", "data-slot"))


def test_two_raters_label_in_chromium_and_calibrate_reads_the_database(root, server, tmp_path):
    from playwright.sync_api import sync_playwright

    sample = read_sample(Storage(str(root)))
    gold = sample.gold_winners
    winner = {key: sample.winner(key) for key in sample.rows}
    given: dict[tuple[str, str], str] = {}  # (key, rater) -> the sample side picked, or skip

    def label(page, rater: str, pick_for) -> None:
        """Answer every screen with pick_for(key, left, right) -> 'left', 'right' or 'skip'."""
        while not page.is_visible("#done"):
            key, left, right = screen(page)
            pick = pick_for(key, left, right)
            shown = len(given)
            if rater == "ann":
                page.click({"left": "#pick-left", "right": "#pick-right", "skip": "#skip"}[pick])
            else:
                page.keyboard.press({"left": "ArrowLeft", "right": "ArrowRight", "skip": "s"}[pick])
            given[(key, rater)] = {"left": left, "right": right, "skip": "skip"}[pick]
            page.wait_for_function("(key) => document.querySelector('#screen').dataset.key !== key"
                                   " || !document.querySelector('#done').hidden", arg=key)
            assert len(given) == shown + 1

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium")
        try:
            ann = browser.new_context(viewport={"width": 1200, "height": 800}).new_page()
            bob = browser.new_context(viewport={"width": 1200, "height": 800}).new_page()
            for page, rater in ((ann, "ann"), (bob, "bob")):
                page.goto(server.url)
                page.fill("#rater-input", rater)
                page.click("#login button")

            # The first screen shows both candidates.
            key, left, right = screen(ann)
            shot = tmp_path / "labelling.png"
            ann.screenshot(path=str(shot))
            assert np.asarray(Image.open(shot).convert("L")).std() > 10  # not blank
            for figure in ("#left", "#right"):
                assert ann.eval_on_selector(f"{figure} img", "img => img.naturalWidth") == 96
                pixels = np.asarray(Image.open(io.BytesIO(ann.locator(f"{figure} img").screenshot())).convert("L"))
                assert pixels.std() > 10  # a picture, not an empty box
            assert ann.text_content("#prompt") == sample.rows[key]["prompt"] and ann.text_content("#rubric")

            # ann answers one, undoes it with the button, and answers the same pair the other way.
            ann.click("#pick-left")
            ann.wait_for_function("(key) => document.querySelector('#screen').dataset.key !== key", arg=key)
            ann.click("#undo")
            # The page goes back to the undone pair once the server has taken the answer back.
            ann.wait_for_function("(key) => document.querySelector('#screen').dataset.key === key", arg=key)
            assert screen(ann)[0] == key
            ann.click("#pick-right")
            given[(key, "ann")] = right
            ann.wait_for_function("(key) => document.querySelector('#screen').dataset.key !== key", arg=key)

            # ann sides with the judge and gets every gold pair right; halfway through, a reload
            # comes back to the pair that was waiting.
            def ann_pick(key: str, left: str, right: str) -> str:
                if len([k for k, r in given if r == "ann"]) == 5:
                    ann.reload()
                    assert screen(ann) == (key, left, right)
                return "left" if winner[key] == left else "right"

            label(ann, "ann", ann_pick)

            # bob uses the keys, skips his first judged pair and always picks the degraded gold copy.
            def bob_pick(key: str, left: str, right: str) -> str:
                if key not in gold and "skip" not in [c for (_, r), c in given.items() if r == "bob"]:
                    return "skip"
                return "left" if (winner[key] == left) != (key in gold) else "right"

            label(bob, "bob", bob_pick)
        finally:
            browser.close()

    # Everyone saw every gold pair; the judged pairs got their labels until nothing was open.
    assert Counter(r for _, r in given) == {"ann": SAMPLE, "bob": SAMPLE}
    assert sorted(db_rows(fresh_db(tmp_path)), key=str) == sorted(
        [(k, r, c, left_slot(sample, k, r)) for (k, r), c in given.items()], key=str)

    # calibrate on the database; bob fails the gold checks and is left out, so the human majority is ann.
    db = str(fresh_db(tmp_path))
    report = calibrate(str(root), db, Console(file=io.StringIO()), gold_floor=GOLD_FLOOR)
    assert report["left_out"] == {"bob": "gold accuracy 0% (0 of 3) is below 60%"}
    assert report["gold"]["ann"]["accuracy"] == 1.0 and report["gold_pairs"] == 3
    judged = [k for k in sample.rows if k not in gold]
    assert report["overall"]["pairs"] == 9 and report["overall"]["scored"] == 9
    assert report["overall"]["judge_accuracy"] == pytest.approx(judge_accuracy(given, winner, judged, ["ann"]))
    assert (report["label_rows"], report["skips"], report["raters"]) == (2 * SAMPLE, 1, 2)
    assert httpx.get(server.url + "api/agreement").json() == report  # the live page's figures are calibrate's

    # With no floor, bob counts too.
    kept_all = calibrate(str(root), db, Console(file=io.StringIO()), gold_floor=0.0)
    assert kept_all["left_out"] == {}
    assert kept_all["overall"]["judge_accuracy"] == pytest.approx(judge_accuracy(given, winner, judged, ["ann", "bob"]))


def judge_accuracy(given: dict[tuple[str, str], str], winner: dict[str, str], keys: list[str], raters: list[str]) -> float:
    """The share of pairs with a strict human majority among `raters` where it is the judge's side."""
    agreed = []
    for key in keys:
        votes = Counter(given[(key, r)] for r in raters if given.get((key, r), "skip") != "skip")
        top = votes.most_common(2)
        if top and (len(top) == 1 or top[0][1] > top[1][1]):
            agreed.append(top[0][0] == winner[key])
    return float(np.mean(agreed))


def test_videos_loop_muted_and_start_together(tmp_path):
    from playwright.sync_api import sync_playwright

    root = make_root(tmp_path / "root", {"motion_quality": 4}, mp4_media)
    running = Server(Path(root), fresh_db(tmp_path), "--sample", "4", "--gold", "0.25")
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path="/usr/bin/chromium")
            page = browser.new_page()
            page.goto(running.url)
            page.fill("#rater-input", "vera")
            page.click("#login button")
            screen(page)
            page.wait_for_function("[...document.querySelectorAll('video')].every(v => v.currentTime > 0.5)")
            page.evaluate("[...document.querySelectorAll('video')].forEach(v => v.pause())")
            clips = page.eval_on_selector_all("video", "vs => vs.map(v => [v.muted, v.loop, v.videoWidth, v.currentTime])")
            browser.close()
    finally:
        running.kill()
    assert [c[:3] for c in clips] == [[True, True, 96], [True, True, 96]]
    assert abs(clips[0][3] - clips[1][3]) < 0.25  # started together


def test_concurrent_answers_and_sigkill_lose_nothing_acknowledged(root, server, tmp_path):
    sample = read_sample(Storage(str(root)))
    keys = list(sample.rows)

    def post(rater: str, key: str) -> bool:
        answer = {"rater": rater, "key": key, "pick": "left", "seconds": 1.5}
        try:
            return httpx.post(server.url + "api/answer", json=answer, timeout=30).status_code == 200
        except httpx.TransportError:
            return False

    # 8 threads at once, one rater each, every pair.
    with ThreadPoolExecutor(8) as pool:
        acks = list(pool.map(lambda job: post(*job), [(f"t{i}", k) for k in keys for i in range(8)]))
    assert all(acks) and len(db_rows(fresh_db(tmp_path))) == 8 * len(keys)

    # Four threads post until the server is killed mid-stream; each answer acknowledged before is kept.
    acknowledged: list[tuple[str, str]] = []
    stop = threading.Event()

    def stream(rater: str) -> None:
        for key in keys:
            if stop.is_set() or not post(rater, key):
                return
            acknowledged.append((key, rater))

    threads = [threading.Thread(target=stream, args=(f"k{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 60
    while len(acknowledged) < 10 and time.monotonic() < deadline:
        time.sleep(0.01)
    server.kill()
    stop.set()
    for thread in threads:
        thread.join()
    server.start()
    stored = {(k, r) for k, r, _, _ in db_rows(fresh_db(tmp_path))}
    assert set(acknowledged) <= stored and len(acknowledged) >= 10
    answers = httpx.get(server.url + "api/agreement").json()
    assert answers["label_rows"] == len(stored)


def test_only_sampled_media_are_served(root, server):
    sample = read_sample(Storage(str(root)))
    key = next(iter(sample.rows))
    ok = httpx.get(f"{server.url}media/{key}/A")
    assert ok.status_code == 200 and ok.headers["content-type"] == "image/jpeg"
    assert ok.content == (root / "calibration" / sample.rows[key]["a_file"]).read_bytes()
    for path in ("/../../run.json", "/..%2F..%2Frun.json", f"/media/{key}/../../sample.parquet", "/media/..%2Fsample.parquet/A",
                 f"/media/{key}/..%2F..%2Fsample.parquet", "/media/%2e%2e/%2e%2e", "/calibration/sample.parquet",
                 f"/media/{key}/C", "/static/../run.json", "/shards/train-000000.tar", "/media/../run.json/A"):
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        connection.request("GET", path)  # sent as written: no client-side normalisation of the dots
        response = connection.getresponse()
        assert response.status == 404, path
        connection.close()
    rebound = httpx.get(server.url + "api/agreement", headers={"Host": "attacker.example"})
    assert rebound.status_code == 400  # only requests to the address served, or to loopback names


def in_process(root: Path, db: Path, token: str | None = None) -> TestClient:
    storage = Storage(str(root))
    sample = read_sample(storage)
    app = make_app(Labelling(storage, sample, LabelStore(db, sample.digest), OVERLAP, GOLD_FLOOR), token)
    return TestClient(app, base_url="http://127.0.0.1")


def test_token_and_bad_requests(root, tmp_path):
    client = in_process(root, fresh_db(tmp_path), token="s3cret")
    key = next(iter(read_sample(Storage(str(root))).rows))
    for path in ("/", "/api/next?rater=ann", f"/media/{key}/A", "/api/agreement", "/?token=wrong"):
        assert client.get(path).status_code == 401, path
    assert client.post("/api/answer", json={"rater": "ann", "key": key, "pick": "left", "seconds": 1}).status_code == 401
    assert client.get("/?token=s3cret").status_code == 200
    assert client.get(f"/media/{key}/A").status_code == 200  # the token now travels in the cookie
    client.cookies.clear()
    assert client.get("/api/next?rater=ann", headers={"X-Vipo-Token": "s3cret"}).status_code == 200
    headers = {"X-Vipo-Token": "s3cret"}

    def answer(**fields):
        return client.post("/api/answer", json={"rater": "ann", "key": key, "pick": "left", "seconds": 1.0, **fields}, headers=headers)

    assert answer(rater="../etc").status_code == 422
    assert answer(rater="").status_code == 422
    assert answer(pick="middle").status_code == 422
    assert answer(seconds=-1).status_code == 422
    assert answer(key="nope").status_code == 404
    assert client.get("/api/next?rater=a%20b", headers=headers).status_code == 422
    assert answer().status_code == 200
    assert answer().status_code == 200  # a repeated request is the same answer
    conflict = answer(pick="right")
    assert conflict.status_code == 409 and "undo it first" in conflict.json()["detail"]
    assert len(db_rows(fresh_db(tmp_path))) == 1


def test_a_database_belongs_to_its_sample(root, tmp_path):
    db = fresh_db(tmp_path)
    LabelStore(db, "another sample")
    with pytest.raises(VipoError, match="these labels were made for another calibration sample"):
        in_process(root, db)
    with pytest.raises(VipoError, match=f"^{db}: these labels were made for another calibration sample$"):
        calibrate(str(root), str(db), Console(file=io.StringIO()))
    other = tmp_path / "other.sqlite"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.commit()
    with pytest.raises(VipoError, match=f"^{other}: not a label database written by `vipo-build label`"):
        calibrate(str(root), str(other), Console(file=io.StringIO()))
    with pytest.raises(VipoError, match="^--gold-floor 80.0: a gold accuracy floor is a share between 0 and 1$"):
        calibrate(str(root), str(db), Console(file=io.StringIO()), gold_floor=80.0)


def test_judge_eval_reads_the_database_without_gold_pairs_or_failing_raters(root, tmp_path):
    from vipo_build.judge.labelled import read_pairs

    sample = read_sample(Storage(str(root)))
    db = root / "calibration" / "labels.sqlite"
    store = LabelStore(db, sample.digest)
    try:
        for key in sample.rows:
            good = sample.winner(key)
            store.add(key, "good", good, "A", 1.0)  # right on every gold pair
            store.add(key, "careless", "B" if good == "A" else "A", "A", 1.0)  # wrong on every gold pair
        pairs = read_pairs(str(db), "vipo", "aesthetics")
    finally:
        db.unlink()
    assert sorted(p.pair_id for p in pairs) == sorted(k for k in sample.rows if k not in sample.gold_winners)
    assert all(p.human == sample.winner(p.pair_id) for p in pairs)  # the careless rater is left out, so no ties


def test_a_sample_written_before_gold_pairs_still_reads_and_exports_the_same(tmp_path):
    root = make_root(tmp_path / "root", {"aesthetics": 5}, jpeg_media)
    export_sample(root, 4, seed=2)
    table = pq.read_table(f"{root}/calibration/sample.parquet")
    old = table.drop_columns(["gold", "rubric"])
    pq.write_table(old, f"{root}/calibration/sample.parquet")
    sample = read_sample(Storage(root))
    assert [r["gold"] for r in sample.rows.values()] == [False] * 4 and {r["rubric"] for r in sample.rows.values()} == {""}
    export_sample(root, 4, seed=2)  # the same sample: accepted, left as it is
    assert pq.read_table(f"{root}/calibration/sample.parquet").equals(old)
    with pytest.raises(VipoError, match="a different sample is already exported"):
        export_sample(root, 4, seed=3)


def test_assignment_fills_every_pair_to_the_overlap_and_shows_gold_to_all(root):
    sample = read_sample(Storage(str(root)))
    answers: list[dict] = []
    raters = ["r1", "r2", "r3", "r4"]
    while True:
        progressed = False
        for rater in raters:  # raters take turns, so counts interleave as in a real session
            key = next_pair(sample, open_pairs(sample, answers, rater, overlap=3), rater)
            if key is not None:
                answers.append({"key": key, "rater": rater, "choice": "A"})
                progressed = True
        if not progressed:
            break
    labels = Counter(a["key"] for a in answers)
    gold = set(sample.gold_winners)
    assert {k: n for k, n in labels.items() if k not in gold} == {k: 3 for k in sample.rows if k not in gold}
    assert {k: n for k, n in labels.items() if k in gold} == dict.fromkeys(gold, 4)
    first_gold = [next(i for i, a in enumerate(a for a in answers if a["rater"] == r) if a["key"] in gold) for r in raters]
    assert max(first_gold) < 6  # gold pairs come early, not all at the end
    lefts = Counter(left_slot(sample, k, r) for k in sample.rows for r in raters)
    assert 12 <= lefts["A"] <= 36  # sides drawn per pair and rater


def test_gold_copies_are_degraded(root):
    sample = read_sample(Storage(str(root)))
    for key in sample.gold_winners:
        row = sample.rows[key]
        files = {"A": row["a_file"], "B": row["b_file"]}
        original = np.asarray(Image.open(root / "calibration" / files[sample.winner(key)]), dtype=np.float32)
        degraded = np.asarray(Image.open(root / "calibration" / files["B" if sample.winner(key) == "A" else "A"]), dtype=np.float32)
        assert original.shape == degraded.shape
        detail = [np.diff(image.mean(axis=2), axis=1).ravel() for image in (original, degraded)]
        assert np.corrcoef(*detail)[0, 1] < 0.3  # the original's detail is blurred away under noise
        assert np.abs(degraded - original).mean() > 15
        assert key.startswith("gold-") and sample.rows[key]["prompt"]
    frames = np.random.default_rng(0).integers(0, 255, (6, 32, 48, 3), dtype=np.uint8)
    from vipo_build.generate.encode import decode_video, encode_video

    frozen = decode_video(degraded_copy(encode_video(frames, 8), "mp4", seed=1))
    assert frozen.shape == (6, 32, 48, 3) and np.abs(frozen[1:].astype(int) - frozen[0]).max() <= 8  # no motion


def test_s3_root_streams_media_and_needs_a_local_database(tmp_path, monkeypatch):
    with s3_server("vipo-label") as (env, _, _fs):
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        monkeypatch.setitem(fsspec.config.conf, "s3", {"endpoint_url": env["FSSPEC_S3_ENDPOINT_URL"]})
        url = "s3://vipo-label/root"
        make_root(url, {"aesthetics": 4}, jpeg_media)
        export_sample(url, 4, seed=0, gold_share=0.25)
        storage = Storage(url)
        sample = read_sample(storage)
        app = make_app(Labelling(storage, sample, LabelStore(fresh_db(tmp_path), sample.digest), 1, 0.8), None)
        client = TestClient(app, base_url="http://127.0.0.1")
        for key, row in sample.rows.items():
            assert client.get(client.get("/api/next?rater=x").json()["screen"]["left"]["url"]).status_code == 200
            assert client.get(f"/media/{key}/B").content == storage.read_bytes(f"calibration/{row['b_file']}")
        with pytest.raises(VipoError, match=f"^{url}: SQLite cannot live in an object store; give --db PATH"):
            serve(url, "127.0.0.1", free_port(), None, None, 0.1, 0, 2, 0.8, None, Console(file=io.StringIO()))


def test_label_command_errors(tmp_path):
    def label(*args: str):
        return CliRunner().invoke(app, ["label", *args])

    empty = label(str(tmp_path), "--port", str(free_port()))
    assert empty.exit_code == 2 and empty.stderr.strip() == f"error: {tmp_path}: no committed shards: nothing to sample"
    root = make_root(tmp_path / "root", {"aesthetics": 3}, jpeg_media)
    assert label(root, "--overlap", "0").stderr.strip() == "error: --overlap 0: every pair needs at least 1 label"
    assert label(root, "--sample", "0").stderr.strip() == "error: --sample 0: the sample needs at least 1 pair"
    assert label(root, "--gold-floor", "1.5").stderr.strip() == "error: --gold-floor 1.5: a gold accuracy floor is a share between 0 and 1"
    export_sample(root, 3, seed=0)
    other = label(root, "--sample", "2", "--port", str(free_port()))
    assert other.exit_code == 2 and "a different sample is already exported" in other.stderr
    assert pq.read_table(f"{root}/calibration/sample.parquet").num_rows == 3
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        busy = label(root, "--port", str(port))
    assert busy.exit_code == 2 and busy.stderr.strip() == f"error: --port {port}: cannot listen on 127.0.0.1:{port} (Address already in use)"
