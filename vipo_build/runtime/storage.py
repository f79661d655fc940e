"""The dataset root on any fsspec filesystem (local disk, s3://, gs://, ...), with atomic writes."""

from __future__ import annotations

import io
import os
import posixpath
import tempfile
import uuid
from contextlib import contextmanager
from typing import BinaryIO, Iterator

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

TMP_MARK = ".tmp-"  # in the name of a local write's temporary sibling


class Storage:
    """Paths are relative to the root, '/'-separated."""

    def __init__(self, root: str):
        self.url = root
        self.fs, self.root = fsspec.core.url_to_fs(root)
        self.is_local = isinstance(self.fs, LocalFileSystem)

    def __reduce__(self):  # travels to Ray workers as its URL; each side opens its own filesystem
        return (Storage, (self.url,))

    def path(self, rel: str) -> str:
        return posixpath.join(self.root, rel)

    def exists(self, rel: str) -> bool:
        return self.fs.exists(self._fresh(rel))

    def read_bytes(self, rel: str) -> bytes:
        return self.fs.cat_file(self.path(rel))

    def write_bytes(self, rel: str, data: bytes) -> None:
        """Write so that readers see the whole file or nothing.

        Local disk: as open_write. Object stores: one PUT (or a multipart upload), which becomes
        visible only once complete; no spool file needed for bytes already in memory.
        """
        if not self.is_local:
            self.fs.pipe_file(self.path(rel), data)
            return
        with self.open_write(rel) as f:
            f.write(data)

    @contextmanager
    def open_write(self, rel: str) -> Iterator[BinaryIO]:
        """A file to stream `rel` into: it appears whole when the block ends, or not at all.

        Local disk: a temporary sibling, renamed at the end. Object stores: a local spool file,
        uploaded in one (multipart) PUT at the end.
        """
        target = self.path(rel)
        if not self.is_local:
            with tempfile.NamedTemporaryFile(prefix="vipo-", suffix=".part") as spool:
                yield spool
                spool.flush()
                self.fs.put_file(spool.name, target)
            return
        self.fs.makedirs(posixpath.dirname(target), exist_ok=True)
        tmp = f"{target}{TMP_MARK}{uuid.uuid4().hex[:8]}"
        try:
            with open(tmp, "wb") as f:
                yield f
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def move(self, rel: str, to: str) -> None:
        if self.is_local:
            self.fs.makedirs(posixpath.dirname(self.path(to)), exist_ok=True)
        self.fs.mv(self.path(rel), self.path(to))

    def remove(self, rel: str) -> None:
        self.fs.rm(self.path(rel))

    def remove_many(self, rels: list[str]) -> None:
        """Delete files; object stores delete them in batched requests."""
        if rels:
            self.fs.rm([self.path(rel) for rel in rels])

    def list(self, rel_dir: str, suffix: str = "") -> list[str]:
        """Names (not paths) of the files in a folder that end with suffix; [] when it does not exist."""
        return [n for n in self.sizes(rel_dir) if n.endswith(suffix)]

    def sizes(self, rel_dir: str, unfinished: bool = False) -> dict[str, int]:
        """Name -> bytes of the files in a folder, sorted by name, from one listing; {} when it does not exist.
        Local writes a kill cut short (temporary siblings) are left out, unless `unfinished`."""
        try:
            entries = self.fs.ls(self.path(rel_dir), detail=True, refresh=True)
        except FileNotFoundError:
            return {}
        files = ((posixpath.basename(e["name"].rstrip("/")), e["size"]) for e in entries if e["type"] == "file")
        return dict(sorted((n, size) for n, size in files if unfinished or TMP_MARK not in n))

    def read_many(self, rels: list[str]) -> dict[str, bytes]:
        """rel path -> contents; object stores fetch them concurrently."""
        if not rels:
            return {}
        if self.is_local:
            return {rel: self.read_bytes(rel) for rel in rels}
        by_path = self.fs.cat([self.path(rel) for rel in rels])
        return {rel: by_path[self.path(rel)] for rel in rels}

    def size(self, rel: str) -> int:
        return self.fs.size(self._fresh(rel))

    def _fresh(self, rel: str) -> str:
        """The path, with any cached listing of it dropped: another process (a Ray worker, another
        host) may have written it since this one listed its folder."""
        path = self.path(rel)
        if not self.is_local:
            self.fs.invalidate_cache(path)
        return path

    def read_table(self, rel: str) -> pa.Table:
        return pq.read_table(io.BytesIO(self.read_bytes(rel)))

    def write_table(self, rel: str, table: pa.Table) -> bytes:
        """Write a Parquet file atomically; returns its bytes (for checksums)."""
        data = parquet_bytes(table)
        self.write_bytes(rel, data)
        return data


def parquet_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue()
