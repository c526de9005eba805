"""The PostgreSQL schema of one mesh and its migrations.

Rules:
1. One schema per mesh (``slm_mesh_<name>``). ``meta.schema_version`` says which
   migrations ran; each runs in one transaction, under the mesh's advisory lock, so brokers
   starting together migrate once.
2. A schema from a newer slm-mesh is refused, never downgraded: :class:`SchemaError` says
   what to do, as the SQLite store does.
3. The tables have the SQLite store's columns and meanings (times are seconds since the
   epoch, JSON is text), plus what several brokers need: their leases (``brokers``), the
   lock queue (``waiters``) and each event's origin broker.
"""

from __future__ import annotations

from typing import Any

import psycopg

from slm_mesh.store.errors import SchemaError

SCHEMA_VERSION = 1

_V1 = (
    """CREATE TABLE brokers (
        id TEXT PRIMARY KEY,
        host TEXT NOT NULL,
        pid INTEGER,
        started_at DOUBLE PRECISION NOT NULL,
        lease_until TIMESTAMPTZ NOT NULL,
        lapsed BOOLEAN NOT NULL DEFAULT false
    )""",
    """CREATE TABLE peers (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        agent TEXT,
        pid INTEGER,
        cwd TEXT NOT NULL,
        git_root TEXT,
        git_branch TEXT,
        summary TEXT NOT NULL,
        status TEXT NOT NULL,
        state TEXT NOT NULL,
        resume_token TEXT NOT NULL UNIQUE,
        joined_at DOUBLE PRECISION NOT NULL,
        last_seen DOUBLE PRECISION,
        away_since DOUBLE PRECISION,
        host TEXT,
        broker_id TEXT,
        repo TEXT
    )""",
    "CREATE INDEX peers_state ON peers (state)",
    """CREATE TABLE messages (
        id BIGSERIAL PRIMARY KEY,
        sender_id TEXT,
        sender_name TEXT NOT NULL,
        recipient_id TEXT NOT NULL,
        body TEXT NOT NULL,
        type TEXT NOT NULL,
        reply_to BIGINT,
        broadcast INTEGER NOT NULL DEFAULT 0,
        sent_at DOUBLE PRECISION NOT NULL,
        status TEXT NOT NULL,
        pushed_at DOUBLE PRECISION,
        read_at DOUBLE PRECISION
    )""",
    "CREATE INDEX messages_recipient ON messages (recipient_id, status, id)",
    "CREATE INDEX messages_read ON messages (status, read_at)",
    """CREATE TABLE state (
        namespace TEXT NOT NULL,
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        version INTEGER NOT NULL,
        updated_by TEXT NOT NULL,
        updated_at DOUBLE PRECISION NOT NULL,
        expires_at DOUBLE PRECISION,
        PRIMARY KEY (namespace, key)
    )""",
    """CREATE TABLE locks (
        path TEXT NOT NULL,
        peer_id TEXT NOT NULL,
        mode TEXT NOT NULL,
        reason TEXT,
        acquired_at DOUBLE PRECISION NOT NULL,
        expires_at DOUBLE PRECISION NOT NULL,
        host TEXT,
        repo TEXT,
        rel TEXT,
        PRIMARY KEY (path, peer_id)
    )""",
    """CREATE TABLE waiters (
        id BIGSERIAL PRIMARY KEY,
        broker_id TEXT NOT NULL,
        peer_id TEXT NOT NULL,
        path TEXT NOT NULL,
        host TEXT,
        repo TEXT,
        rel TEXT,
        mode TEXT NOT NULL,
        ttl DOUBLE PRECISION NOT NULL,
        reason TEXT,
        queued_at DOUBLE PRECISION NOT NULL
    )""",
    """CREATE TABLE events (
        seq BIGSERIAL PRIMARY KEY,
        type TEXT NOT NULL,
        ts DOUBLE PRECISION NOT NULL,
        data TEXT NOT NULL,
        origin TEXT
    )""",
    "CREATE INDEX events_ts ON events (ts)",
)

MIGRATIONS: dict[int, tuple[str, ...]] = {1: _V1}


def read_version(conn: psycopg.Connection[Any], schema: str) -> int:
    found = conn.execute(
        "SELECT 1 FROM information_schema.tables WHERE table_schema = %s AND table_name = 'meta'",
        (schema,),
    ).fetchone()
    if found is None:
        return 0
    row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    return int(row["value"]) if row else 0


def migrate(conn: psycopg.Connection[Any], schema: str, lock_key: int, where: str) -> int:
    """Bring the mesh's schema to :data:`SCHEMA_VERSION`; the version it had before.

    Raises:
        SchemaError: the schema is from a newer slm-mesh (rule 2).
    """
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key,))
        conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        before = read_version(conn, schema)
        if before > SCHEMA_VERSION:
            raise SchemaError(
                f"the mesh {schema} in {where} has schema version {before}, newer than this "
                f"slm-mesh understands ({SCHEMA_VERSION}): upgrade slm-mesh on this machine "
                "(every machine of a mesh runs the same version), or use another mesh name "
                "(SLM_MESH_MESH)"
            )
        if before == 0:
            conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        for version in range(before + 1, SCHEMA_VERSION + 1):
            for statement in MIGRATIONS[version]:
                conn.execute(statement)
            conn.execute(
                "INSERT INTO meta (key, value) VALUES ('schema_version', %s) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (str(version),),
            )
    return before
