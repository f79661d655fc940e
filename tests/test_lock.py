"""One writer per root: the lock is created atomically on local disk and on S3 (conditional PUT),
so of two runs that start at the same moment exactly one holds it."""

from __future__ import annotations

import threading

import fsspec.config
import pytest

from tests.s3 import s3_server
from vipo_build.errors import VipoError
from vipo_build.layout import LOCK
from vipo_build.runtime.lock import _create_exclusive, writer_lock
from vipo_build.runtime.storage import Storage


def race(storage: Storage, trials: int = 20) -> list[int]:
    """How many of two writers started together created the lock, per trial."""
    winners = []
    for trial in range(trials):
        start, won = threading.Barrier(2), []

        def writer(name: str) -> None:
            start.wait()
            if _create_exclusive(storage, f'{{"trial": {trial}, "writer": "{name}"}}'.encode()):
                won.append(name)

        threads = [threading.Thread(target=writer, args=(name,)) for name in ("a", "b")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        winners.append(len(won))
        storage.fs.rm(storage.path(LOCK))
    return winners


def assert_held_root_is_refused(storage: Storage) -> None:
    with writer_lock(storage):
        with pytest.raises(VipoError, match=r"another run is writing this root \(host .*, pid \d+"):
            with writer_lock(storage):
                pass
    assert not storage.exists(LOCK)


def test_local_lock(tmp_path):
    storage = Storage(str(tmp_path / "root"))
    assert race(storage) == [1] * 20
    assert_held_root_is_refused(storage)


def test_s3_lock_is_a_conditional_put(monkeypatch):
    with s3_server("vipo-lock") as (env, _, _fs):
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        monkeypatch.setitem(fsspec.config.conf, "s3", {"endpoint_url": env["FSSPEC_S3_ENDPOINT_URL"]})
        storage = Storage("s3://vipo-lock/root")
        assert race(storage) == [1] * 20
        assert_held_root_is_refused(storage)
