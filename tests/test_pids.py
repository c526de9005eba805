"""slm_mesh.pids: one answer to "does this process run?" for the broker, CLI, launcher and
hooks, with a zombie (exited, not reaped yet) counted as exited."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from slm_mesh import pids

BOUND_S = 10.0


def test_a_running_process_runs_and_a_reaped_one_does_not() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert pids.alive(child.pid)
    finally:
        child.kill()
        child.wait()
    assert not pids.alive(child.pid)


@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="needs /proc (Linux)")
def test_a_process_that_exited_but_was_not_reaped_does_not_run() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        deadline = time.monotonic() + BOUND_S
        while (stat := pids.read_stat(child.pid)) is not None and b") Z" not in stat:
            assert time.monotonic() < deadline, stat
            time.sleep(0.01)
        os.kill(child.pid, 0)  # still there for kill: a zombie
        assert not pids.alive(child.pid)
    finally:
        child.wait()


def test_init_runs_whether_or_not_it_may_be_signalled() -> None:
    assert pids.alive(1)  # EPERM for a user, a plain answer for root: it runs either way
