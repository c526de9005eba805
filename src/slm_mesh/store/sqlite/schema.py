"""The SQLite schema and its migrations.

Rules:
1. ``meta.schema_version`` says which migrations ran. Each migration is a function from
   version N-1 to N, run in one transaction; a new database runs them all.
2. A database from a newer slm-mesh (a version above :data:`SCHEMA_VERSION`) is refused,
   never downgraded: :class:`SchemaError` says what to do.
3. Tables are created with sqlite-utils (so their shape is declared as data); queries on the
   hot path are plain SQL in :mod:`slm_mesh.store.sqlite.store`.
"""

from __future__ import annotations

from collections.abc import Callable

import sqlite_utils

from slm_mesh.store.errors import SchemaError

SCHEMA_VERSION = 2


def _v1(db: sqlite_utils.Database) -> None:
    db["peers"].create(  # type: ignore[union-attr]
        {
            "id": str,
            "name": str,
            "agent": str,
            "pid": int,
            "cwd": str,
            "git_root": str,
            "git_branch": str,
            "summary": str,
            "status": str,  # availability the peer set: active | busy | idle
            "state": str,  # live | away | gone
            "resume_token": str,
            "joined_at": float,
            "last_seen": float,
            "away_since": float,
        },
        pk="id",
        not_null={"name", "cwd", "summary", "status", "state", "resume_token", "joined_at"},
    )
    db["peers"].create_index(["state"])  # type: ignore[union-attr]
    db["peers"].create_index(["resume_token"], unique=True)  # type: ignore[union-attr]
    # One row per recipient: a broadcast to five peers is five messages, each with its own
    # id and its own queued → pushed → read lifecycle. AUTOINCREMENT (which sqlite-utils'
    # create() can't declare) so that ids are never reused after pruning.
    db.execute(
        """CREATE TABLE messages (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            sender_id TEXT,
            sender_name TEXT NOT NULL,
            recipient_id TEXT NOT NULL,
            body TEXT NOT NULL,
            type TEXT NOT NULL,
            reply_to INTEGER,
            broadcast INTEGER NOT NULL DEFAULT 0,
            sent_at FLOAT NOT NULL,
            status TEXT NOT NULL,  -- queued | pushed | read
            pushed_at FLOAT,
            read_at FLOAT
        )"""
    )
    db["messages"].create_index(["recipient_id", "status", "id"])  # type: ignore[union-attr]
    db["messages"].create_index(["status", "read_at"])  # type: ignore[union-attr]
    db["state"].create(  # type: ignore[union-attr]
        {
            "namespace": str,
            "key": str,
            "value": str,  # JSON text
            "version": int,
            "updated_by": str,
            "updated_at": float,
            "expires_at": float,
        },
        pk=("namespace", "key"),
        not_null={"value", "version", "updated_by", "updated_at"},
    )
    db["locks"].create(  # type: ignore[union-attr]
        {
            "path": str,
            "peer_id": str,
            "mode": str,
            "reason": str,
            "acquired_at": float,
            "expires_at": float,
        },
        pk=("path", "peer_id"),
        not_null={"mode", "acquired_at", "expires_at"},
    )
    # seq must grow strictly even when old events are pruned: AUTOINCREMENT again.
    db.execute(
        """CREATE TABLE events (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            type TEXT NOT NULL,
            ts FLOAT NOT NULL,
            data TEXT NOT NULL
        )"""
    )
    db["events"].create_index(["ts"])  # type: ignore[union-attr]


def _v2(db: sqlite_utils.Database) -> None:
    """Where each peer and lock is, for a mesh of several machines (issue 12): the host
    and broker carrying a peer, its repository's identity; a lock's host, and its
    repository and path inside it when it lies in one (clones on two machines collide)."""
    for table, column in (
        ("peers", "host"),
        ("peers", "broker_id"),
        ("peers", "repo"),
        ("locks", "host"),
        ("locks", "repo"),
        ("locks", "rel"),
    ):
        db.execute(f"ALTER TABLE {table} ADD COLUMN {column} TEXT")


MIGRATIONS: dict[int, Callable[[sqlite_utils.Database], None]] = {1: _v1, 2: _v2}


def read_version(db: sqlite_utils.Database) -> int:
    if "meta" not in db.table_names():
        return 0
    row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    return int(row[0]) if row else 0


def migrate(db: sqlite_utils.Database) -> int:
    """Bring ``db`` to :data:`SCHEMA_VERSION`; return the version it had before."""
    before = read_version(db)
    if before > SCHEMA_VERSION:
        raise SchemaError(
            f"database {db.conn.execute('PRAGMA database_list').fetchone()[2]} has schema "
            f"version {before}, newer than this slm-mesh understands ({SCHEMA_VERSION}); "
            "upgrade slm-mesh, or move the data dir aside to start afresh"
        )
    for version in range(before + 1, SCHEMA_VERSION + 1):
        with db.atomic():
            if version == 1:
                db.execute(
                    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
                )
            MIGRATIONS[version](db)
            db.execute(
                "INSERT INTO meta (key, value) VALUES ('schema_version', ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (str(version),),
            )
    return before
