"""Subprocesses of the heavy tests, each in a session of its own: a run that outlives its time is
failed with the Python stacks of its processes, and nothing it started (Ray, vLLM) is left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

RUN_TIMEOUT_S = 840  # below pytest's timeout (900 s), so a hang is reported here, with its stacks
# Every process a test starts (a run, Ray's daemons and workers, vLLM's engines) inherits this mark,
# so a test can tell what this pytest process started from what a worker beside it did.
OWNER = "VIPO_TESTS_OWNER"
os.environ[OWNER] = str(os.getpid())


class SessionRun(subprocess.CompletedProcess):
    """A finished run and the session it ran in (its first process's pid)."""

    def __init__(self, process: subprocess.Popen, stdout: str, stderr: str):
        super().__init__(process.args, process.returncode, stdout, stderr)
        self.session = process.pid


def run_in_session(command: list[str], env: dict | None = None, timeout: float = RUN_TIMEOUT_S,
                   leave_nothing: bool = True) -> SessionRun:
    """Run `command` to its end; with `leave_nothing`, whatever it started and left running is killed
    afterwards (a caller that checks what a run leaves behind passes False)."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                               start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        stacks = session_stacks(process.pid)
        kill_session(process.pid)
        stdout, stderr = process.communicate()
        pytest.fail(f"{' '.join(command[2:])} hung for {timeout:g} s\n{stdout[-4000:]}\n{stderr[-4000:]}\n{stacks}")
    except BaseException:  # pytest's own timeout, or an interrupt
        kill_session(process.pid)
        raise
    finally:
        if leave_nothing:
            kill_session(process.pid)
    return SessionRun(process, stdout, stderr)


def session_stacks(session: int) -> str:
    """The Python stacks of every process of a hung run (py-spy), to say where it waits."""
    spy = Path(sys.executable).with_name("py-spy")
    out = []
    for pid in alive_in_session(session):
        dump = subprocess.run([str(spy), "dump", "--pid", str(pid)], capture_output=True, text=True, timeout=60)
        out.append(dump.stdout or dump.stderr)
    return "\n".join(out)


def kill_session(session: int) -> None:
    for pid in alive_in_session(session):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass  # gone


def alive_in_session(session: int) -> list[int]:
    alive = []
    for p in psutil.process_iter():
        try:
            if os.getsid(p.pid) == session and p.status() != psutil.STATUS_ZOMBIE:
                alive.append(p.pid)
        except (OSError, psutil.Error):
            pass  # gone
    return alive


def started_here(process: psutil.Process) -> bool:
    """Whether this pytest process, or something it started, started `process`."""
    try:
        return process.pid != os.getpid() and process.environ().get(OWNER) == os.environ[OWNER]
    except psutil.Error:
        return False  # gone, or not ours to read


def kill_started_here() -> None:
    """Kill whatever this pytest process started and left running (daemons included)."""
    for process in psutil.process_iter():
        if started_here(process):
            try:
                process.kill()
            except psutil.Error:
                pass  # gone
