"""Opening the database file, and what its errors mean for the user.

A database opens in autocommit mode with WAL and ``synchronous=NORMAL`` (every committed
transaction survives a SIGKILL of the broker), checked (``quick_check``) and migrated.
An error that blames the file system (disk full, read-only, I/O) becomes a
:class:`StorageError` saying what to do; one that blames the file, a :class:`SchemaError`.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import sqlite_utils

from slm_mesh.store.base import Row
from slm_mesh.store.errors import SchemaError, StorageError
from slm_mesh.store.sqlite.schema import migrate

AUTOCHECKPOINT_PAGES = 16_384  # 64 MiB of WAL


# Primary SQLite result codes that blame the file system, not the database, with what to
# do about each. Any other error of a database that opened is damage or a bug.
_STORAGE_ADVICE = {
    3: "permission denied: make it writable",  # SQLITE_PERM
    8: "it is read-only: make it writable",  # SQLITE_READONLY
    10: "the disk failed to read or write it: check it has free space and is sound",  # IOERR
    13: "its disk is full: free some space",  # SQLITE_FULL
    14: "it can't be opened: make its folder writable",  # SQLITE_CANTOPEN
}


def storage_error(exc: sqlite3.Error, path: Path | None) -> StorageError | None:
    """The :class:`StorageError` for ``exc`` if the file system is to blame, else None."""
    code = getattr(exc, "sqlite_errorcode", None)
    advice = _STORAGE_ADVICE.get(code & 0xFF) if isinstance(code, int) else None
    if advice is None:
        return None
    return StorageError(f"database {path} can't be written ({exc}): {advice}")


def _dict_factory(cursor: sqlite3.Cursor, row: tuple[Any, ...]) -> Row:
    return {col[0]: value for col, value in zip(cursor.description, row, strict=True)}


def open_database(path: Path | None) -> sqlite_utils.Database:
    """The database at ``path``, created and migrated; ``None`` for in-memory. Rows come
    back as dicts.

    Raises:
        SchemaError: the file is damaged, not an slm-mesh database, or from a newer
            version. The message says what to do.
        StorageError: the file system won't let it be opened or written (disk full,
            read-only, I/O error). The message says what to do.
    """
    try:
        if path is None:
            db = sqlite_utils.Database(memory=True, execute_plugins=False)
        else:
            db = sqlite_utils.Database(path, execute_plugins=False)
            db.enable_wal()
        # Autocommit mode, so that a write outside Store.transaction() commits at once.
        # Python's default would open an implicit transaction there that nothing
        # commits, and every later transaction would run inside it as a savepoint:
        # nothing written from then on would reach the disk.
        db.conn.isolation_level = None
        db.conn.execute("PRAGMA synchronous=NORMAL")
        # Checkpoints are run from another connection by the broker
        # (checkpoint_passive) so a commit never waits for one; this is the backstop.
        db.conn.execute(f"PRAGMA wal_autocheckpoint={AUTOCHECKPOINT_PAGES}")
        db.conn.execute("PRAGMA busy_timeout=5000")
        if path is not None:
            # Damage inside the file would otherwise surface call by call, as internal
            # errors, while new writes went into a damaged file.
            (verdict,) = db.conn.execute("PRAGMA quick_check(1)").fetchone()
            if verdict != "ok":
                raise sqlite3.DatabaseError(f"quick_check: {' '.join(verdict.split())}")
        migrate(db)
    except sqlite3.DatabaseError as exc:
        storage = storage_error(exc, path)
        if storage is not None:
            raise storage from exc
        raise SchemaError(
            f"database {path} can't be opened ({exc}): it is corrupt or not an slm-mesh "
            "database; stop the broker and move the file aside to start afresh"
        ) from exc
    db.conn.row_factory = _dict_factory
    return db
