import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from slm_mesh.config import Settings
from tests import outside, pg
from tests.wire import PERSON, make_settings, processes_under, short_tmp


def pytest_runtest_setup(item: pytest.Item) -> None:
    """``@pytest.mark.needs(tool, ...)``: skip (or under CI, fail) when a tool is missing."""
    for mark in item.iter_markers("needs"):
        for name in mark.args:
            outside.require(name)


@pytest.fixture
def tmp_short() -> Iterator[Path]:
    """A short temp dir; at the end no process may still run with a data dir inside it.

    Every fixture built on this one (brokers, agents, the CLI's) has been torn down by
    then and was to stop by pid what it started: a survivor is a leak. It is killed, and
    the test fails at teardown naming it.
    """
    with short_tmp() as d:
        yield d
        _fail_on_leftovers(d)


def _fail_on_leftovers(root: Path) -> None:
    leaked = {pid: _cmdline(pid) for pid in processes_under(root)}
    for pid in leaked:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    if leaked:
        pytest.fail(f"processes left running in the test's data dir: {leaked}")


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return "?"


@pytest.fixture
def settings(tmp_short: Path) -> Settings:
    return make_settings(tmp_short)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[pg.Cluster]:
    """One PostgreSQL cluster for the whole session (tests/pg.py); skipped with advice,
    or under CI failed, where PostgreSQL's server binaries are missing."""
    with pg.cluster(outside.require("postgresql")) as found:
        yield found


@pytest.fixture
def own_cluster() -> Iterator[pg.Cluster]:
    """A PostgreSQL cluster of the test's own, to stop and restart without disturbing the
    others (~2 s to make)."""
    with pg.cluster(outside.require("postgresql")) as found:
        yield found


@pytest.fixture
def pg_settings(tmp_short: Path, pg_cluster: pg.Cluster) -> Settings:
    """Settings of a broker on a mesh of its own in the session's PostgreSQL cluster."""
    return make_settings(tmp_short, store_url=pg_cluster.url, mesh_name=pg.mesh_name())


@pytest.fixture(autouse=True)
def _no_user_mesh(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No test may touch ~/.slm-mesh: point every default at a temp dir (and leave no
    process running there, as :func:`tmp_short` checks)."""
    default = tmp_path / "default-data-dir"
    monkeypatch.setenv("SLM_MESH_DATA_DIR", str(default))
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.delenv("SLM_MESH_SOCKET", raising=False)
    monkeypatch.setenv("SLM_MESH_PERSON", PERSON)  # not the login name of whoever runs them
    yield
    _fail_on_leftovers(default)
