"""The label database: one SQLite file (WAL mode) of every answer the labelling app was given.

Each answer is committed, with synchronous=FULL, before the app acknowledges it, so a server
killed at any moment keeps every acknowledged answer; WAL lets raters read while others write.
The database is tied to the sample it was made for (the sample table's digest): labels name the
A/B sides of that sample only.
"""

from __future__ import annotations

import datetime
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from vipo_build.errors import VipoError

SQLITE_MAGIC = b"SQLite format 3\x00"
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS answers (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL,
    rater TEXT NOT NULL,
    choice TEXT NOT NULL CHECK (choice IN ('A', 'B', 'skip')),
    left_side TEXT NOT NULL CHECK (left_side IN ('A', 'B')),
    seconds REAL NOT NULL CHECK (seconds >= 0),
    answered_at TEXT NOT NULL,
    UNIQUE (key, rater)
);
"""
COLUMNS = ("key", "rater", "choice", "left_side", "seconds", "answered_at")


class AlreadyAnswered(Exception):
    """This rater has answered this pair before (with the answer given)."""

    def __init__(self, choice: str):
        self.choice = choice


def is_sqlite(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(len(SQLITE_MAGIC)) == SQLITE_MAGIC
    except OSError:
        return False


class LabelStore:
    """A connection per call: sqlite3 connections do not cross threads, and opening one is cheap."""

    def __init__(self, path: str | Path, sample_digest: str):
        self.path = str(path)
        try:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            with self._connect() as db:
                db.execute("PRAGMA journal_mode=WAL")
                db.executescript(SCHEMA)
                db.execute("BEGIN IMMEDIATE")
                db.execute("INSERT OR IGNORE INTO meta VALUES ('sample', ?)", (sample_digest,))
                (recorded,) = db.execute("SELECT value FROM meta WHERE name = 'sample'").fetchone()
                db.execute("COMMIT")
        except sqlite3.DatabaseError as err:
            raise VipoError(f"{self.path}: not a label database ({err})") from None
        if recorded != sample_digest:
            raise VipoError(f"{self.path}: these labels were made for another calibration sample; "
                            "give --db a new file for this one")

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            db.execute("PRAGMA synchronous=FULL")
            yield db
        finally:
            db.close()

    def add(self, key: str, rater: str, choice: str, left_side: str, seconds: float) -> None:
        """Record an answer; returns once it is committed. Raises AlreadyAnswered when the rater
        has answered the pair before."""
        at = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")
        with self._connect() as db:
            try:
                db.execute("INSERT INTO answers (key, rater, choice, left_side, seconds, answered_at) VALUES (?, ?, ?, ?, ?, ?)",
                           (key, rater, choice, left_side, seconds, at))
            except sqlite3.IntegrityError:
                row = db.execute("SELECT choice FROM answers WHERE key = ? AND rater = ?", (key, rater)).fetchone()
                if row is None:
                    raise
                raise AlreadyAnswered(row[0]) from None

    def undo_last(self, rater: str) -> str | None:
        """Delete the rater's latest answer; returns its pair key (None when there is none)."""
        with self._connect() as db:
            row = db.execute("DELETE FROM answers WHERE seq = (SELECT MAX(seq) FROM answers WHERE rater = ?) RETURNING key",
                             (rater,)).fetchone()
        return row[0] if row else None

    def answers(self) -> list[dict]:
        """Every answer, oldest first, as {key, rater, choice, left_side, seconds, answered_at}."""
        with self._connect() as db:
            return _answers(db)


def _answers(db: sqlite3.Connection) -> list[dict]:
    rows = db.execute(f"SELECT {', '.join(COLUMNS)} FROM answers ORDER BY seq").fetchall()
    return [dict(zip(COLUMNS, row)) for row in rows]


def read_answers(path: str, sample_digest: str) -> list[dict]:
    """The answers of an existing label database, opened read-only, checked to be of this sample."""
    try:
        db = sqlite3.connect(f"{Path(path).absolute().as_uri()}?mode=ro", uri=True, timeout=30)
        try:
            recorded = db.execute("SELECT value FROM meta WHERE name = 'sample'").fetchone()
            answers = _answers(db)
        finally:
            db.close()
    except sqlite3.DatabaseError as err:
        raise VipoError(f"{path}: not a label database written by `vipo-build label` ({err})") from None
    if recorded is None or recorded[0] != sample_digest:
        raise VipoError(f"{path}: these labels were made for another calibration sample")
    return answers
