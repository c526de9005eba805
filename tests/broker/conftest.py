"""The broker's contract runs against both stores: every test of this folder that takes
``settings`` runs once on SQLite and once on a mesh of its own in the session's
PostgreSQL cluster.

Tests on virtual time (``autojump_clock``) run on SQLite only: a store behind a real
socket can't follow a clock that jumps whenever every task waits (it would jump past
every timeout while a query is in flight). What they check (a wait that runs out, a TTL,
a renewal, a grace) runs on PostgreSQL in real time in ``tests/multi/test_time.py``.
Tests marked ``sqlite_only`` check the SQLite file itself (a damaged file is refused);
their PostgreSQL counterparts are in ``tests/multi/``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from slm_mesh.config import Settings
from tests import stores
from tests.wire import make_settings

pytest_generate_tests = stores.parametrize


@pytest.fixture
def store(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def settings(store: str, tmp_short: Path, request: pytest.FixtureRequest) -> Settings:
    return stores.on(make_settings(tmp_short), store, request)
