"""Fixtures: a :class:`Mesh` of real MCP server processes in the test's own data dir."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from slm_mesh.config import Settings
from tests.mcp.harness import Mesh, open_mesh


@pytest.fixture
async def mesh(settings: Settings, tmp_short: Path) -> AsyncIterator[Mesh]:
    """Agents spawned in this test, stopped by pid at the end with the brokers they started."""
    async with open_mesh(settings, tmp_short) as mesh:
        yield mesh
