"""One writer per dataset root: `ROOT/lock.json` names the run that holds it."""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from contextlib import contextmanager
from typing import Iterator

from vipo_build.errors import VipoError
from vipo_build.layout import LOCK
from vipo_build.runtime.storage import Storage



def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _create_exclusive(storage: Storage, data: bytes) -> bool:
    """Create the lock only if absent. Atomic on local disk (a hard link) and on S3 (a conditional
    PUT, If-None-Match: *; an S3-compatible store that ignores the condition lets a second writer
    overwrite it). Elsewhere a write then a read-back: two runs that start at the same moment can
    both pass it."""
    if storage.is_local:
        storage.fs.makedirs(storage.root, exist_ok=True)
        tmp = f"{storage.path(LOCK)}.{uuid.uuid4().hex}"  # each writer's own, even two in one process
        with open(tmp, "wb") as f:
            f.write(data)
        try:
            os.link(tmp, storage.path(LOCK))  # atomic, and fails if the lock exists: never seen half-written
        except FileExistsError:
            return False
        finally:
            os.unlink(tmp)
        return True
    if "s3" in storage.fs.protocol:
        try:
            storage.fs.pipe_file(storage.path(LOCK), data, mode="create")
        except FileExistsError:
            return False
        return True
    if storage.exists(LOCK):
        return False
    storage.write_bytes(LOCK, data)
    return storage.read_bytes(LOCK) == data


@contextmanager
def writer_lock(storage: Storage) -> Iterator[None]:
    """Hold the root for this process; a lock left by a dead process on this host is taken over."""
    me = {"host": socket.gethostname(), "pid": os.getpid(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    data = json.dumps(me).encode()
    while not _create_exclusive(storage, data):
        try:
            owner = json.loads(storage.read_bytes(LOCK))
        except FileNotFoundError:
            continue  # released between our two looks
        if owner.get("host") == me["host"] and not _alive(int(owner.get("pid", 0))):
            storage.fs.rm(storage.path(LOCK))  # stale: its process is gone
            continue
        raise VipoError(
            f"{storage.url}: another run is writing this root (host {owner.get('host')}, pid {owner.get('pid')}, "
            f"started {owner.get('started')}); if that run is gone, delete {storage.path(LOCK)}"
        )
    try:
        yield
    finally:
        storage.fs.rm(storage.path(LOCK))
