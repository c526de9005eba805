"""Running a test module on both stores: SQLite, and a mesh of its own in the session's
PostgreSQL cluster (tests/pg.py).

In a module (or its conftest): ``pytest_generate_tests = stores.parametrize``, and a
``settings`` fixture built with :func:`on`. Tests on virtual time (``autojump_clock``)
and tests marked ``sqlite_only`` run on SQLite only: a store behind a real socket can't
follow a clock that jumps whenever every task waits.
"""

from __future__ import annotations

import dataclasses

import pytest

from slm_mesh.config import Settings
from slm_mesh.person import identity
from tests import pg


def parametrize(metafunc: pytest.Metafunc) -> None:
    if "settings" not in metafunc.fixturenames:
        return
    stores: list[object] = ["sqlite"]
    sqlite_only = metafunc.definition.get_closest_marker("sqlite_only") is not None
    if "autojump_clock" not in metafunc.fixturenames and not sqlite_only:
        stores.append(pytest.param("postgresql", marks=pytest.mark.needs("postgresql")))
    metafunc.parametrize("store", stores, indirect=True)


def on(settings: Settings, store: str, request: pytest.FixtureRequest) -> Settings:
    """``settings`` as they are (SQLite), or on a fresh mesh of the session's cluster."""
    if store == "sqlite":
        return settings
    cluster: pg.Cluster = request.getfixturevalue("pg_cluster")
    return dataclasses.replace(settings, store_url=cluster.url, mesh_name=pg.mesh_name())


def person(settings: Settings) -> tuple[str, str]:
    """The person's peer id and the name the mesh shows for it on ``settings``' store:
    ``person`` and the bare name on SQLite, qualified by the host on a shared store
    (slm_mesh.person rule 3)."""
    return identity(settings.person, settings.host, shared=settings.store_url is not None)
