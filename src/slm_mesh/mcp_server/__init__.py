"""``slm-mesh mcp``: the stdio MCP server each agent session starts (ARCHITECTURE.md §6).

Nothing is imported here at module level: ``mcp`` alone costs a large part of a second, and
only this command needs it, so the CLI and the broker never pay for it.
"""

from __future__ import annotations

import logging
import os
import sys

__all__ = ["main", "preload"]

LOG_LEVEL_ENV = "SLM_MESH_MCP_LOG"


def main(early: bytes = b"", answered: dict[int, bytes] | None = None) -> int:
    """Run the MCP server on stdin/stdout until stdin closes or a signal, then end the
    process with status 0 (it does not return). ``early``, ``answered``: what the
    launcher read from stdin and answered before this server took over."""
    level = os.environ.get(LOG_LEVEL_ENV, "WARNING").upper()
    # stderr only: stdout is the MCP wire.
    logging.basicConfig(
        level=level, format="slm-mesh mcp: %(levelname)s %(name)s: %(message)s", force=True
    )

    import functools

    import trio

    from slm_mesh.mcp_server.server import run

    code = trio.run(functools.partial(run, early=early, answered=answered))
    # Everything is closed and written. Skip the interpreter's teardown: freeing the
    # object graph of mcp and pydantic takes ~0.4 s, which would break the promise that
    # the server is gone within a second of stdin closing or SIGTERM.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def preload() -> None:
    """Import everything :func:`main` needs without starting anything, for a warm process
    that forks one ready server per agent session (``slm_mesh.zygote``)."""
    import trio  # noqa: F401

    import slm_mesh.client.aio
    import slm_mesh.client.autostart
    import slm_mesh.mcp_server.server
    import slm_mesh.mcp_server.tools  # noqa: F401
