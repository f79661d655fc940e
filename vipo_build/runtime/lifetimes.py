"""Processes an engine actor starts die with it.

vLLM runs its engine core (and on CPU its model worker) in processes of its own, started by
multiprocessing's spawn. When the actor dies without running its clean-up (SIGKILL, the OOM
killer, `ray.kill`, a node whose raylet died), nothing stops the engine core: it lives on,
reparented to init and outside the run's process group, holding the accelerator's memory, and a
resumed run cannot load its model. Linux ties a child's life to its parent's with
PR_SET_PDEATHSIG, which the child has to ask for itself; so every child this process spawns
starts through a launcher that asks for SIGKILL on its parent's death and then execs the Python
that multiprocessing meant to run. The engine core's own workers already die with it (vLLM's
death pipe), and vLLM's NUMA binding wraps this launcher in turn through the same hook.
"""

from __future__ import annotations

import atexit
import ctypes
import multiprocessing.resource_tracker
import multiprocessing.spawn
import os
import shlex
import shutil
import signal
import sys
import tempfile

PR_SET_PDEATHSIG = 1
LAUNCHER_NAME = "python-dying-with-parent"


def spawned_children_die_with_this_process() -> None:
    """From now on every process multiprocessing spawns here is killed when this process dies."""
    if not sys.platform.startswith("linux"):
        return
    python = os.fsdecode(multiprocessing.spawn.get_executable())
    if os.path.basename(python) == LAUNCHER_NAME:
        return  # already set up in this process
    # The resource tracker must outlive us to unlink what a killed process leaves behind, so it
    # starts before the launcher is in place.
    multiprocessing.resource_tracker.ensure_running()
    folder = tempfile.mkdtemp(prefix="vipo-launcher-")
    atexit.register(shutil.rmtree, folder, True)
    launcher = os.path.join(folder, LAUNCHER_NAME)
    with open(launcher, "w") as f:
        f.write(f'#!/bin/sh\nexec {shlex.quote(python)} -m {__name__} {os.getpid()} "$@"\n')
    os.chmod(launcher, 0o700)
    multiprocessing.spawn.set_executable(launcher)


def die_with_parent(parent: int) -> None:
    """Ask for SIGKILL when the parent dies; exit at once if it already has."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent:  # it died before the request was in place
        os._exit(1)


if __name__ == "__main__":  # the launcher: PARENT_PID PYTHON_ARGS...
    die_with_parent(int(sys.argv[1]))
    os.execv(sys.executable, [sys.executable, *sys.argv[2:]])  # the death signal survives exec
