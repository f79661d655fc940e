"""Named points in the pipeline where crash-safety tests stop a run the hard way.

Normal runs never set the variables below and `reached` returns at once. Tests set:

    VIPO_FAILPOINT_JOURNAL=FILE     every process of the run appends "NAME DETAIL" per point reached
    VIPO_FAILPOINT_KILL=NAME:N      on the N-th NAME of this run, SIGKILL every process of the
                                    run's session (driver, Ray services and workers), as a power cut
    VIPO_FAILPOINT_KILL_ACTOR=NAME:N   on the N-th NAME, `ray.kill` the actor that reached it;
                                    Ray restarts it and retries its task
    VIPO_FAILPOINT_KILL_ENGINE=NAME:N  on the N-th NAME, SIGKILL the vLLM engine processes under the
                                    process that reached it: its next engine call fails
    VIPO_FAILPOINT_RAISE=NAME@DETAIL   raise at every NAME reached with that DETAIL (a unit a
                                    stage always fails on)
    VIPO_FAILPOINT_SPARE=PREFIX     the session kill leaves processes whose name starts with PREFIX
                                    alive, as if they were outside the session: they must die on
                                    their own (an engine with its actor)

The kills take a comma-separated list of NAME:N. N counts over all processes, through the journal (one journal per run). The run must be started
in a session of its own (`start_new_session=True`): everything in that session is killed.
"""

from __future__ import annotations

import fcntl
import os
import signal
import time

import psutil

JOURNAL = "VIPO_FAILPOINT_JOURNAL"
KILL = "VIPO_FAILPOINT_KILL"
KILL_ACTOR = "VIPO_FAILPOINT_KILL_ACTOR"
KILL_ENGINE = "VIPO_FAILPOINT_KILL_ENGINE"
RAISE = "VIPO_FAILPOINT_RAISE"
SPARE = "VIPO_FAILPOINT_SPARE"
ENV_VARS = (JOURNAL, KILL, KILL_ACTOR, KILL_ENGINE, RAISE, SPARE)


class FailpointError(RuntimeError):
    """Raised where VIPO_FAILPOINT_RAISE says."""
ENGINE_PROCESS_PREFIX = "VLLM::"  # vLLM names its engine core and model worker processes so


def reached(name: str, detail: str = "") -> None:
    if f"{name}@{detail}" in os.environ.get(RAISE, "").split(","):
        raise FailpointError(f"failpoint {name} at {detail}")
    journal = os.environ.get(JOURNAL)
    if not journal:
        return
    with open(journal, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)  # count and append as one step across processes
        f.seek(0)
        hits = 1 + sum(line.split(" ", 1)[0] == name for line in f)
        f.write(f"{name} {detail}\n")
        f.flush()
    if f"{name}:{hits}" in os.environ.get(KILL, "").split(","):
        _kill_session()
    if f"{name}:{hits}" in os.environ.get(KILL_ENGINE, "").split(","):
        for child in psutil.Process().children(recursive=True):
            if child.name().startswith(ENGINE_PROCESS_PREFIX):
                child.kill()
    if f"{name}:{hits}" in os.environ.get(KILL_ACTOR, "").split(","):
        import ray

        ray.kill(ray.get_runtime_context().current_actor, no_restart=False)
        time.sleep(600)  # the kill lands while the call is still running, as in a real crash


def _kill_session() -> None:
    session, me = os.getsid(0), os.getpid()
    spared = os.environ.get(SPARE) or None
    for _ in range(3):  # again, for any process forked while the previous pass ran
        for process in psutil.process_iter():
            try:
                if process.pid == me or os.getsid(process.pid) != session:
                    continue
                if not (spared and process.name().startswith(spared)):
                    process.kill()
            except (psutil.Error, OSError):
                pass  # already gone
    os.kill(me, signal.SIGKILL)
