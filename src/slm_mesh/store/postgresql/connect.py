"""Connecting to the shared PostgreSQL store, the libpq way.

Rules:
1. The URL is a libpq connection string (``postgresql://user@host:port/db?sslmode=...``);
   credentials come from where libpq looks for them (``PGPASSFILE`` or ``~/.pgpass``,
   client certificates, ``PGPASSWORD``), never from our argv, unit files or logs: a URL
   is only ever shown through :func:`redact`.
2. Every connection fails fast instead of hanging: a connect timeout, TCP keepalives and a
   TCP user timeout on the client, and a statement timeout and an idle-in-transaction
   timeout on the server (so a broker cut off in the middle of a transaction never holds
   the mesh's lock for long).
3. Each mesh is one schema (``slm_mesh_<name>``), set as the connection's search path.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

import psycopg
from psycopg.rows import dict_row

from slm_mesh.store.errors import SchemaError, StoreUnreachable
from slm_mesh.store.urls import redact

CONNECT_TIMEOUT_S = 3
# A broker cut off in the middle of a transaction holds the mesh's lock until the server
# ends its session (the idle timeout); the others' statements wait for it meanwhile, so
# they are given longer than that.
IDLE_IN_TRANSACTION_TIMEOUT_MS = 2_000
STATEMENT_TIMEOUT_MS = 10_000
TCP_USER_TIMEOUT_MS = 3_000
RETRY_AFTER_S = 1.0

_MESH_NAME = re.compile(r"[a-z0-9_]{1,40}")


def schema_name(mesh: str) -> str:
    """The schema of mesh ``mesh``.

    Raises:
        SchemaError: the name is not 1-40 lower-case letters, digits or underscores.
    """
    if not _MESH_NAME.fullmatch(mesh):
        raise SchemaError(
            f"mesh name {mesh!r} is not usable: use 1-40 lower-case letters, digits or "
            "underscores (SLM_MESH_MESH)"
        )
    return f"slm_mesh_{mesh}"


def lock_key(schema: str) -> int:
    """The advisory lock that serialises the mesh's writes (a signed 64-bit integer)."""
    return int.from_bytes(hashlib.sha256(schema.encode()).digest()[:8], "big", signed=True)


def connect(url: str, schema: str, *, application: str = "slm-mesh") -> psycopg.Connection[Any]:
    """A connection in autocommit mode, rows as dicts, in the mesh's schema (rule 2, 3).

    Raises:
        StoreUnreachable: the server can't be reached or refused us (the message says why,
            without the password).
    """
    options = " ".join(
        (
            f"-c search_path={schema}",
            f"-c statement_timeout={STATEMENT_TIMEOUT_MS}",
            f"-c idle_in_transaction_session_timeout={IDLE_IN_TRANSACTION_TIMEOUT_MS}",
        )
    )
    try:
        return psycopg.connect(
            url,
            autocommit=True,
            row_factory=dict_row,
            connect_timeout=CONNECT_TIMEOUT_S,
            keepalives=1,
            keepalives_idle=2,
            keepalives_interval=1,
            keepalives_count=2,
            tcp_user_timeout=TCP_USER_TIMEOUT_MS,
            application_name=application,
            options=options,
        )
    except psycopg.Error as exc:
        raise unavailable(url, exc) from None


def unavailable(url: str, exc: BaseException) -> StoreUnreachable:
    """What to tell the user about a failed connection or a lost one."""
    reason = " ".join(str(exc).split()) or type(exc).__name__
    return StoreUnreachable(
        f"the shared store {redact(url)} can't be reached: {reason}", RETRY_AFTER_S
    )
