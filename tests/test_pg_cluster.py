"""The tests' PostgreSQL clusters (tests/pg.py) never outlive the test run that made them:
a run killed with SIGKILL takes its cluster with it (its watchdog stops it), and a cluster
whose watchdog died too is stopped by the next run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests import outside, pg

ROOT = Path(__file__).resolve().parents[1]

# A test run in miniature: makes a cluster, says where, and waits to be killed.
OWNER = """
import sys, time
from tests import pg
if sys.argv[2] == "no-watchdog":
    pg._watch = lambda root, bindir: None
with pg.cluster(sys.argv[1]) as found:
    print(found.root, flush=True)
    time.sleep(600)
"""


@pytest.fixture
def bindir() -> str:
    return outside.require("postgresql")


def _postmaster_pid(root: Path) -> int:
    return int((root / "data" / "postmaster.pid").read_text().split()[0])


def _running(pid: int) -> bool:
    return pg._identity(pid) is not None


def _wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        time.sleep(0.05)


def _stop(pid: int) -> None:
    """Make sure a postmaster a failed test left behind is gone."""
    if _running(pid):
        os.kill(pid, signal.SIGQUIT)  # PostgreSQL's immediate shutdown


@pytest.fixture
def killed_owner(bindir: str, request: pytest.FixtureRequest) -> Iterator[tuple[Path, int]]:
    """A process that made a cluster (with a watchdog, or not: the param), killed with
    SIGKILL: the cluster's folder and its postmaster's pid."""
    proc = subprocess.Popen(
        [sys.executable, "-c", OWNER, bindir, request.param],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    postmaster = 0
    try:
        assert proc.stdout is not None
        root = Path(proc.stdout.readline().strip())
        assert root.name.startswith(pg.PREFIX), root
        postmaster = _postmaster_pid(root)
        assert _running(postmaster)
        proc.kill()
        proc.wait()
        yield root, postmaster
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
        if postmaster:
            _stop(postmaster)


@pytest.mark.parametrize("killed_owner", ["watchdog"], indirect=True)
def test_a_cluster_stops_when_the_run_that_made_it_is_killed(
    killed_owner: tuple[Path, int],
) -> None:
    root, postmaster = killed_owner
    _wait_until(lambda: not _running(postmaster), 60, "the postmaster to stop")
    _wait_until(lambda: not root.exists(), 60, "the cluster's folder to go")


@pytest.mark.parametrize("killed_owner", ["no-watchdog"], indirect=True)
def test_a_cluster_left_without_its_watchdog_is_stopped_by_the_next_run(
    killed_owner: tuple[Path, int], bindir: str
) -> None:
    root, postmaster = killed_owner
    assert _running(postmaster)  # nothing stopped it: a leak
    assert root in pg.stop_orphans(Path(bindir))
    assert not _running(postmaster)
    assert not root.exists()


def test_the_clusters_of_a_run_still_going_are_left_alone(
    bindir: str, pg_cluster: pg.Cluster
) -> None:
    assert pg_cluster.root not in pg.stop_orphans(Path(bindir))
    assert _running(_postmaster_pid(pg_cluster.root))
