"""What an agent must hand on to the ``slm-mesh mcp`` it starts, where it does not hand on
its whole environment.

Codex starts MCP servers with a scrubbed environment (``HOME``, ``PATH``, ``USER``,
``LANG``, ``TMPDIR``... and nothing else) unless the server's entry names more
(``env_vars``). Its hooks get the whole environment. A variable that reaches one and not
the other splits a session in two: without ``XDG_RUNTIME_DIR`` or ``SLM_MESH_DATA_DIR`` the
MCP server looks for another socket than the hooks (another broker, another mesh), and a
broker the MCP server starts without ``SLM_MESH_STORE`` runs on SQLite while the hooks'
settings name PostgreSQL. So the entry names every variable slm-mesh reads (a test keeps
the list complete), and those libpq reads to reach a shared store; never a password
(``PGPASSWORD``: libpq finds it in ``~/.pgpass`` or ``PGPASSFILE``). A name the agent's
environment does not have is skipped.
"""

from __future__ import annotations

from dataclasses import fields

from slm_mesh.config import Limits

SLM_MESH = (
    "SLM_MESH_AGENT_PID",
    "SLM_MESH_AUTOLOCK",
    "SLM_MESH_BRANCH_CHECK_S",
    "SLM_MESH_DATA_DIR",
    "SLM_MESH_GRACE_S",
    "SLM_MESH_HOOK_TIMEOUT_MS",
    "SLM_MESH_HOST",
    "SLM_MESH_IDLE_EXIT_S",
    "SLM_MESH_LAUNCHCTL",
    "SLM_MESH_LEASE_S",
    "SLM_MESH_LOCK_TTL_MIN",
    "SLM_MESH_MCP_LOG",
    "SLM_MESH_MESH",
    "SLM_MESH_NAME",
    "SLM_MESH_NO_ZYGOTE",
    "SLM_MESH_PERSON",
    "SLM_MESH_PORT",
    "SLM_MESH_SERVICE_DIR",
    "SLM_MESH_SOCKET",
    "SLM_MESH_STORE",
    "SLM_MESH_SWEEP_S",
    "SLM_MESH_SYSTEMCTL",
    "SLM_MESH_WAKE_IDLE_S",
    "SLM_MESH_ZYGOTE_IDLE_S",
)
# Where the socket is (locations.py) when SLM_MESH_DATA_DIR is not set.
SYSTEM = ("XDG_RUNTIME_DIR",)
# What libpq reads to reach a server (the URL in SLM_MESH_STORE says the rest).
LIBPQ = (
    "PGPASSFILE",
    "PGSERVICE",
    "PGSERVICEFILE",
    "PGSYSCONFDIR",
    "PGSSLMODE",
    "PGSSLROOTCERT",
    "PGSSLCERT",
    "PGSSLKEY",
    "PGSSLCRL",
    "PGCONNECT_TIMEOUT",
)


def limits() -> tuple[str, ...]:
    """``SLM_MESH_<LIMIT>`` for each of :class:`slm_mesh.config.Limits`."""
    return tuple(f"SLM_MESH_{f.name.upper()}" for f in fields(Limits))


def for_mcp_server() -> list[str]:
    """The variables an MCP server entry names (Codex's ``env_vars``), in a stable order."""
    return [*SLM_MESH, *limits(), *SYSTEM, *LIBPQ]
