"""An actor's log files, and the root cause of a failure written to them.

Ray sends each worker's stdout and stderr to files in the node's session log folder, and the
processes the worker starts (vLLM's engine core and its model worker) inherit them. When an engine
dies, the exception the actor sees only says "See stack trace (above) for the root cause": the
cause is in those files, written by another process.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

TAIL_BYTES = 2**20  # a root cause is near the end; a week-long actor's log is not read whole
# "RuntimeError: CPU Generator does not use offset", bare (a traceback's last line) or after a
# logger's "(Worker pid=1) ERROR 12-01 20:30:33 [file.py:1063] " prefix.
EXCEPTION_LINE = re.compile(r"(?:^|\] )([A-Za-z_][\w.]*(?:Error|Exception|Exit)): (.+)$")
LOGGED = re.compile(r" (ERROR|CRITICAL|WARNING) \d\d-\d\d [\d:]+ \[[^\]]*\] (.+)$")
CONSEQUENCES = ("EngineDeadError", "EngineGenerateError")  # what the actor sees, not why


@dataclass(frozen=True)
class LogMark:
    """A position in one of this process's log files: what is written after it came later."""

    path: str
    offset: int

    def text_since(self) -> str:
        with open(self.path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(self.offset, size - TAIL_BYTES))
            return f.read().decode("utf-8", "replace")


def marks() -> list[LogMark]:
    """The ends of this process's stdout and stderr files as they stand now (vLLM logs to stdout,
    tracebacks go to stderr); none where they are not files (a terminal, a pipe)."""
    found: list[LogMark] = []
    for fd in (1, 2):
        try:
            path = os.readlink(f"/proc/self/fd/{fd}")
            if os.path.isfile(path) and path not in (m.path for m in found):
                found.append(LogMark(path, os.path.getsize(path)))
        except OSError:
            pass
    return found


def find_cause(since: list[LogMark]) -> tuple[str, str] | None:
    """The root cause written after the marks, and the file it is in: the first exception logged
    (the later ones are its consequences), else the last warning or error line, e.g. vLLM's
    "engine core exited unexpectedly" after its process was killed."""
    texts = [(mark.path, mark.text_since()) for mark in since]
    for finder in (first_exception, last_logged):
        for path, text in texts:
            if cause := finder(text):
                return cause, path
    return None


def first_exception(text: str) -> str | None:
    for line in text.splitlines():
        level = LOGGED.search(line)
        exception = EXCEPTION_LINE.search(line)
        warning = level is not None and level.group(1) == "WARNING"  # e.g. a fallback that names an exception
        if exception and not warning and exception.group(1).rsplit(".", 1)[-1] not in CONSEQUENCES:
            return f"{exception.group(1)}: {exception.group(2).strip()}"
    return None


def last_logged(text: str) -> str | None:
    logged = [m.group(2).strip() for m in map(LOGGED.search, text.splitlines()) if m]
    return logged[-1] if logged else None
