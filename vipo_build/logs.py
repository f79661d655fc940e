"""Python logging for every command: one line per message on the console, and a run log per run.

Messages go to the `vipo_build` logger. The console shows INFO and up as plain lines ("warning: ..."
for warnings), through the same rich console as the progress bars so the two do not tear each
other; `--verbose` adds DEBUG (each call sent to an actor, its units and time), `--quiet` keeps
warnings and errors only. A run also writes every record, DEBUG included, with time and source, to
ROOT/logs/run-{UTC start}.log: appended as it goes for a local root; for an object store, where a
file cannot be appended, beside the driver in ./vipo-build-logs/{name}/ and copied into the root
when the run ends (a driver killed outright leaves the local copy only).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console

from vipo_build.layout import LOGS_DIR
from vipo_build.runtime.storage import Storage

LOGGER = "vipo_build"
RUN_LOG_FORMAT = "%(asctime)s.%(msecs)03d %(levelname)-7s %(name)s: %(message)s"
LEVELS = {-1: logging.WARNING, 0: logging.INFO, 1: logging.DEBUG}


class ConsoleHandler(logging.Handler):
    """A record as one plain line on the rich console: the message, "warning: " or "error: " before it."""

    def __init__(self, console: Console):
        super().__init__()
        self.console = console

    def emit(self, record: logging.LogRecord) -> None:
        try:
            prefix = "" if record.levelno < logging.WARNING else f"{record.levelname.lower()}: "
            self.console.print(prefix + record.getMessage(), markup=False, highlight=False, soft_wrap=True)
        except Exception:  # a logging failure must not end the run
            self.handleError(record)


def configure(console: Console, verbosity: int = 0) -> None:
    """The console handler at the level `verbosity` picks (-1 quiet, 0 normal, 1 verbose); called
    once per command, it replaces the handler an earlier command in this process set."""
    logger = logging.getLogger(LOGGER)
    for handler in [h for h in logger.handlers if isinstance(h, ConsoleHandler)]:
        logger.removeHandler(handler)
    handler = ConsoleHandler(console)
    handler.setLevel(LEVELS[max(-1, min(1, verbosity))])
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)  # the handlers choose; the run log keeps everything


def quiet() -> bool:
    """Whether the console shows warnings only (then progress bars are off too)."""
    handlers = [h for h in logging.getLogger(LOGGER).handlers if isinstance(h, ConsoleHandler)]
    return bool(handlers) and handlers[0].level > logging.INFO


@contextmanager
def run_log(storage: Storage, name: str) -> Iterator[str]:
    """Everything logged while the block runs, in the root's logs/ (see the module doc); yields where it is written."""
    file_name = f"run-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.log"
    rel = f"{LOGS_DIR}/{file_name}"
    local = Path(storage.path(rel)) if storage.is_local else Path("vipo-build-logs") / name / file_name
    local.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(local, encoding="utf-8")
    formatter = logging.Formatter(RUN_LOG_FORMAT, datefmt="%Y-%m-%dT%H:%M:%S")
    formatter.converter = time.gmtime
    handler.setFormatter(formatter)
    logger = logging.getLogger(LOGGER)
    logger.addHandler(handler)
    try:
        yield str(local) if storage.is_local else f"{storage.url}/{rel}"
    except BaseException as err:
        logger.debug("run ended by %s", type(err).__name__, exc_info=True)
        raise
    finally:
        logger.removeHandler(handler)
        handler.close()
        if not storage.is_local:
            try:
                storage.write_bytes(rel, local.read_bytes())
            except Exception as err:  # the store is what failed: the run's own error is the one to see
                logger.warning("run log not copied to %s/%s (%s); it is in %s", storage.url, rel, type(err).__name__, local)
