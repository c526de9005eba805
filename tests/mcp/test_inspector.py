"""The MCP Inspector's CLI (the reference client) lists the tools and calls ``mesh_status``.

CI installs it (``.ci/run``); locally::

    npm install --no-save --prefix .ci/node @modelcontextprotocol/inspector

Without it the test is skipped with that advice, except under ``CI=true``, where a missing
inspector fails it: a check skipped there would let the server drift from the reference
client unnoticed (``tests/outside.py``).
"""

from __future__ import annotations

import json
import sys
from typing import Any

import pytest
import trio

from slm_mesh.config import Settings
from tests import outside
from tests.mcp.harness import Mesh

BOUND_S = 90.0


async def inspect(settings: Settings, *method: str) -> Any:
    inspector = outside.require("mcp-inspector")
    # The inspector gives the server a minimal environment: pass what it needs.
    env = {
        "SLM_MESH_DATA_DIR": str(settings.data_dir),
        "SLM_MESH_PORT": "0",
        "SLM_MESH_NO_ZYGOTE": "1",
    }
    argv = [inspector, "--cli"]
    for key, value in env.items():
        argv += ["-e", f"{key}={value}"]
    argv += [sys.executable, "-m", "slm_mesh", "mcp", "--method", *method]
    with trio.fail_after(BOUND_S):
        done = await trio.run_process(argv, capture_stdout=True, capture_stderr=True, check=False)
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-2000:]
    return json.loads(done.stdout)


@pytest.mark.needs("mcp-inspector")
async def test_the_inspector_lists_the_tools_and_calls_mesh_status(
    settings: Settings,
    mesh: Mesh,  # stops the broker the server starts (pytest-trio ignores usefixtures)
) -> None:
    listed = await inspect(settings, "tools/list")
    assert [tool["name"] for tool in listed["tools"]][:2] == ["mesh_peers", "mesh_summary"]
    assert len(listed["tools"]) == 8

    status = await inspect(settings, "tools/call", "--tool-name", "mesh_status")
    assert status.get("isError") is False
    assert status["structuredContent"]["you"]["agent"] == "mcp-inspector"
    assert status["structuredContent"]["broker"]["data_dir"] == str(settings.data_dir)
