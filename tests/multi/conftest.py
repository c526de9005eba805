"""Several brokers sharing one mesh through the session's PostgreSQL cluster.

Each broker is a real ``slm-mesh broker`` process with a data dir (and socket) of its own
and a host name of its own (``SLM_MESH_HOST``), as if on its own machine; they share one
mesh (a schema of their own in the cluster). Leases, grace and sweeps are short so that
the tests of what a dead broker leaves behind run in seconds.
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from slm_mesh.config import Settings
from tests import pg
from tests.wire import LineClient, broker_process, make_settings

LEASE_S = 1.5
GRACE_S = 2.0
SWEEP_S = 0.2


@dataclass
class Node:
    """One broker "machine": its settings and its process."""

    settings: Settings
    proc: subprocess.Popen[bytes]

    def client(self) -> LineClient:
        return LineClient(self.settings.socket_path)


@dataclass
class Mesh:
    url: str
    name: str
    root: Path
    stack: contextlib.ExitStack

    def settings(self, host: str, **overrides: object) -> Settings:
        (self.root / host).mkdir(exist_ok=True)
        base = make_settings(self.root / host, store_url=self.url, mesh_name=self.name)
        fields = {"host": host, "lease_s": LEASE_S, "grace_s": GRACE_S, **overrides}
        return replace(base, **fields)  # type: ignore[arg-type]

    def start(self, host: str, url: str | None = None, **env: str) -> Node:
        """A broker for ``host``, running until the test ends (or it is stopped)."""
        settings = self.settings(host)
        if url is not None:
            settings = replace(settings, store_url=url)
        proc = self.stack.enter_context(
            broker_process(settings, SLM_MESH_SWEEP_S=str(SWEEP_S), **env)
        )
        return Node(settings, proc)


@pytest.fixture
def mesh(tmp_short: Path, pg_cluster: pg.Cluster) -> Iterator[Mesh]:
    with contextlib.ExitStack() as stack:
        yield Mesh(pg_cluster.url, pg.mesh_name(), tmp_short, stack)


@pytest.fixture
def nodes(mesh: Mesh) -> Callable[[int], list[Node]]:
    """``nodes(n)``: n brokers on n "machines" (host-0, host-1, ...)."""
    return lambda n: [mesh.start(f"host-{i}") for i in range(n)]
