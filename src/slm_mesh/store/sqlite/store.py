"""The SQLite store: every query of the mesh (opening the file is :mod:`.opening`, the
schema and its migrations :mod:`.schema`).

The broker is the only writer. WAL with ``synchronous=NORMAL`` makes every committed
transaction survive a crash of the process (SIGKILL); only a power loss can take the last
few. Callers group writes with :meth:`Store.transaction`; a write outside one commits at once.
Hot-path queries are plain SQL through ``conn.execute`` (sqlite-utils' table helpers
introspect the schema on every call).
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Generator, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import sqlite_utils

from slm_mesh.store.base import Row, Store
from slm_mesh.store.errors import StorageError
from slm_mesh.store.sqlite.opening import open_database, storage_error

_PEER_COLUMNS = (
    "id, name, agent, pid, cwd, git_root, git_branch, summary, status, state, resume_token, "
    "joined_at, last_seen, away_since, host, broker_id, repo"
)
_LOCK_COLUMNS = "path, peer_id, mode, reason, acquired_at, expires_at, host, repo, rel"
_MESSAGE_COLUMNS = (
    "id, sender_id, sender_name, recipient_id, body, type, reply_to, broadcast, sent_at, "
    "status, pushed_at, read_at"
)
# Not read: the statuses before "read" (queued -> pushed -> read), named rather than
# `status != 'read'`, so the (recipient_id, status, id) index seeks them instead of walking
# every message the peer has read (kept a day): 3.4 ms -> 0.06 ms with 10,000 read.
_UNREAD = "status IN ('queued', 'pushed')"
_ENCODER = json.JSONEncoder(separators=(",", ":"))  # json.dumps with options builds one per call


class SQLiteStore(Store):
    """The mesh's durable state in one SQLite file. Open with :meth:`open_file`."""

    def __init__(self, db: sqlite_utils.Database, path: Path | None) -> None:
        self.db = db
        self.path = path
        self.conn = db.conn
        # Peers are read on nearly every call and written rarely: a write-through cache
        # (the broker is the only writer). Dropped whenever a transaction rolls back.
        self._peers: dict[str, Row] | None = None
        # Locks too: read on every lock call, written by this broker only. Dropped with
        # the peers on a rollback.
        self._locks: dict[tuple[str, str], Row] | None = None
        # Waiters are tied to this broker's connections and never outlive it: kept in
        # memory only, in FIFO order, restored on a rollback (one snapshot per level).
        self._waiters: list[Row] = []
        self._waiter_ids = 0
        self._snapshots: list[list[Row]] = []
        # "pushed" marks are informational (only "read" matters for delivery), so they are
        # written in batches: see note_pushed / flush_pushed.
        self._pushed: list[tuple[float, int]] = []

    @classmethod
    def open_file(cls, path: Path | None) -> SQLiteStore:
        """Open (creating and migrating) the database at ``path``; ``None`` for in-memory.

        Raises:
            SchemaError: the file is damaged, not an slm-mesh database, or from a newer
                version. The message says what to do.
            StorageError: the file system won't let it be opened or written (disk full,
                read-only, I/O error). The message says what to do.
        """
        return cls(open_database(path), path)

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error, StorageError):
            self.flush_pushed()
        with contextlib.suppress(sqlite3.Error):
            self.conn.execute("PRAGMA optimize")
        self.db.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Group writes: all commit together or none do (nested blocks use savepoints).

        Raises:
            StorageError: the file system refused a write (disk full, read-only, I/O
                error); everything in the transaction was rolled back.
        """
        self._snapshots.append(list(self._waiters))
        try:
            with self.db.atomic():
                yield
        except BaseException as exc:
            # The caches may hold writes that were just rolled back.
            self._peers = None
            self._locks = None
            self._waiters = self._snapshots[-1]
            if isinstance(exc, sqlite3.Error) and (storage := storage_error(exc, self.path)):
                raise storage from exc
            raise
        finally:
            self._snapshots.pop()

    def size_bytes(self) -> int:
        if self.path is None:
            return 0
        total = 0
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(OSError):
                total += Path(f"{self.path}{suffix}").stat().st_size
        return total

    def wal_bytes(self) -> int:
        if self.path is None:
            return 0
        try:
            return Path(f"{self.path}-wal").stat().st_size
        except OSError:
            return 0

    def checkpoint_passive(self) -> None:
        """Copy the WAL into the database from a connection of its own, without blocking
        the writer (PRAGMA wal_checkpoint(PASSIVE)). Safe to call from a worker thread."""
        if self.path is None:
            return
        try:
            conn = sqlite3.connect(self.path, timeout=5)
            try:
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
            finally:
                conn.close()
        except sqlite3.Error as exc:
            if storage := storage_error(exc, self.path):
                raise storage from exc
            raise

    def integrity_ok(self) -> bool:
        row = self.conn.execute("PRAGMA integrity_check").fetchone()
        return bool(row) and next(iter(row.values())) == "ok"

    # -- peers -------------------------------------------------------------------------

    def _peer_rows(self) -> dict[str, Row]:
        if self._peers is None:
            rows = self.conn.execute(f"SELECT {_PEER_COLUMNS} FROM peers").fetchall()
            self._peers = {row["id"]: row for row in rows}
        return self._peers

    def insert_peer(self, peer: Row) -> None:
        cols = ", ".join(peer)
        marks = ", ".join(f":{k}" for k in peer)
        self.conn.execute(f"INSERT INTO peers ({cols}) VALUES ({marks})", peer)
        full: Row = dict.fromkeys(_PEER_COLUMNS.split(", "))
        full.update(peer)
        self._peer_rows()[peer["id"]] = full

    def update_peer(self, peer_id: str, **fields: Any) -> None:
        sets = ", ".join(f"{k} = :{k}" for k in fields)
        self.conn.execute(f"UPDATE peers SET {sets} WHERE id = :id", {**fields, "id": peer_id})
        row = self._peer_rows().get(peer_id)
        if row is not None:
            row.update(fields)

    def get_peer(self, peer_id: str) -> Row | None:
        """A copy of the peer's row (callers may change it freely)."""
        row = self._peer_rows().get(peer_id)
        return dict(row) if row is not None else None

    def peer_by_token(self, token: str) -> Row | None:
        for row in self._peer_rows().values():
            if row["resume_token"] == token:
                return dict(row)
        return None

    def peers_in(self, states: Sequence[str]) -> list[Row]:
        rows = [dict(r) for r in self._peer_rows().values() if r["state"] in states]
        rows.sort(key=lambda r: (r["joined_at"], r["id"]))
        return rows

    def delete_gone_peers(self, before: float) -> int:
        cur = self.conn.execute(
            "DELETE FROM peers WHERE state = 'gone' AND last_seen < ? "
            f"AND id NOT IN (SELECT recipient_id FROM messages WHERE {_UNREAD})",
            (before,),
        )
        self._peers = None
        return cur.rowcount

    # -- messages ----------------------------------------------------------------------

    def insert_message(self, msg: Row) -> int:
        cols = ", ".join(msg)
        marks = ", ".join(f":{k}" for k in msg)
        cur = self.conn.execute(f"INSERT INTO messages ({cols}) VALUES ({marks})", msg)
        assert cur.lastrowid is not None
        return cur.lastrowid

    def get_message(self, message_id: int) -> Row | None:
        row: Row | None = self.conn.execute(
            f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE id = ?", (message_id,)
        ).fetchone()
        return row

    def note_pushed(self, ids: Iterable[int], now: float) -> None:
        """Remember that these messages were written to their recipients; written to the
        database by :meth:`flush_pushed` (before any read of message status, and by the
        broker every few milliseconds). Lost in a crash, a mark only means the message is
        pushed once more when its recipient resumes: it is still unread either way."""
        self._pushed.extend((now, i) for i in ids)

    def flush_pushed(self) -> int:
        if not self._pushed:
            return 0
        pending, self._pushed = self._pushed, []
        try:
            with self.transaction():
                self.conn.executemany(
                    "UPDATE messages SET status = 'pushed', pushed_at = ? "
                    "WHERE id = ? AND status = 'queued'",
                    pending,
                )
        except BaseException:
            self._pushed[:0] = pending  # kept for the next flush
            raise
        return len(pending)

    def _flush_before_read(self) -> None:
        """Flush the pushed marks before a read that shows statuses; if the disk refuses
        them, read anyway (a mark only turns "queued" into "pushed")."""
        with contextlib.suppress(StorageError):
            self.flush_pushed()

    def inbox(
        self,
        recipient_id: str,
        *,
        unread_only: bool,
        sender_id: str | None,
        filter_sender: bool,
        limit: int,
    ) -> list[Row]:
        """Oldest first. With ``filter_sender``, only from ``sender_id`` (None: the CLI)."""
        self._flush_before_read()
        where = ["recipient_id = :r"]
        if unread_only:
            where.append(_UNREAD)
        if filter_sender:
            where.append("sender_id IS :s")
        return self.conn.execute(
            f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE {' AND '.join(where)} "
            "ORDER BY id LIMIT :limit",
            {"r": recipient_id, "s": sender_id, "limit": limit},
        ).fetchall()

    def unread_count(self, recipient_id: str) -> int:
        row = self.conn.execute(
            f"SELECT count(*) AS n FROM messages WHERE recipient_id = ? AND {_UNREAD}",
            (recipient_id,),
        ).fetchone()
        return int(row["n"])

    def mark_read(self, recipient_id: str, ids: Sequence[int], now: float) -> list[int]:
        # (In the caller's transaction; no RETURNING, which SQLite before 3.35 lacks.)
        marked: list[int] = []
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            marks = ", ".join("?" for _ in chunk)
            found = [
                row["id"]
                for row in self.conn.execute(
                    f"SELECT id FROM messages WHERE recipient_id = ? AND {_UNREAD} "
                    f"AND id IN ({marks})",
                    (recipient_id, *chunk),
                )
            ]
            if found:
                self.conn.execute(
                    f"UPDATE messages SET status = 'read', read_at = ? "
                    f"WHERE id IN ({', '.join('?' for _ in found)})",
                    (now, *found),
                )
                marked.extend(found)
        return marked

    def queued_for(self, recipient_id: str, limit: int = -1) -> list[Row]:
        """The oldest messages not yet pushed to ``recipient_id`` (at most ``limit``; -1: all)."""
        self._flush_before_read()
        return self.conn.execute(
            f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE recipient_id = ? AND status = 'queued' "
            "ORDER BY id LIMIT ?",
            (recipient_id, limit),
        ).fetchall()

    # -- state -------------------------------------------------------------------------

    def state_get(self, namespace: str, key: str) -> Row | None:
        row: Row | None = self.conn.execute(
            "SELECT namespace, key, value, version, updated_by, updated_at, expires_at "
            "FROM state WHERE namespace = ? AND key = ?",
            (namespace, key),
        ).fetchone()
        return row

    def state_put(self, row: Row) -> None:
        self.conn.execute(
            "INSERT INTO state (namespace, key, value, version, updated_by, updated_at, "
            "expires_at) VALUES (:namespace, :key, :value, :version, :updated_by, :updated_at, "
            ":expires_at) ON CONFLICT (namespace, key) DO UPDATE SET value = excluded.value, "
            "version = excluded.version, updated_by = excluded.updated_by, "
            "updated_at = excluded.updated_at, expires_at = excluded.expires_at",
            row,
        )

    def state_delete(self, namespace: str, key: str) -> bool:
        cur = self.conn.execute(
            "DELETE FROM state WHERE namespace = ? AND key = ?", (namespace, key)
        )
        return cur.rowcount > 0

    def state_list(
        self, namespace: str, prefix: str | None, after: str | None, now: float
    ) -> Generator[Row, None, None]:
        """Live keys of ``namespace`` in key order, those after ``after`` only; read lazily,
        so a caller that stops early never loads the rest."""
        params: dict[str, Any] = {"ns": namespace, "now": now}
        where = "namespace = :ns AND (expires_at IS NULL OR expires_at > :now)"
        if prefix:
            # substr comparison: LIKE would treat % and _ in the prefix as wildcards
            where += " AND substr(key, 1, :n) = :prefix"
            params.update(n=len(prefix), prefix=prefix)
        if after is not None:
            where += " AND key > :after"
            params["after"] = after
        cursor = self.conn.execute(
            "SELECT namespace, key, value, version, updated_by, updated_at, expires_at "
            f"FROM state WHERE {where} ORDER BY key",
            params,
        )
        try:
            yield from cursor
        finally:
            cursor.close()

    def state_expired(self, now: float) -> list[Row]:
        return self.conn.execute(
            "SELECT namespace, key, version FROM state WHERE expires_at IS NOT NULL "
            "AND expires_at <= ?",
            (now,),
        ).fetchall()

    # -- locks -------------------------------------------------------------------------

    def _lock_rows(self) -> dict[tuple[str, str], Row]:
        if self._locks is None:
            rows = self.conn.execute(f"SELECT {_LOCK_COLUMNS} FROM locks").fetchall()
            self._locks = {(row["path"], row["peer_id"]): row for row in rows}
        return self._locks

    def all_locks(self) -> list[Row]:
        return [dict(row) for row in self._lock_rows().values()]

    def get_lock(self, path: str, peer_id: str) -> Row | None:
        row = self._lock_rows().get((path, peer_id))
        return dict(row) if row is not None else None

    def locks_of(self, peer_id: str) -> list[Row]:
        return [dict(row) for key, row in self._lock_rows().items() if key[1] == peer_id]

    def put_lock(self, row: Row) -> None:
        full: Row = dict.fromkeys(_LOCK_COLUMNS.split(", "))
        full.update(row)
        self.conn.execute(
            "INSERT INTO locks (path, peer_id, mode, reason, acquired_at, expires_at, host, "
            "repo, rel) VALUES (:path, :peer_id, :mode, :reason, :acquired_at, :expires_at, "
            ":host, :repo, :rel) ON CONFLICT (path, peer_id) DO UPDATE SET mode = excluded.mode, "
            "reason = excluded.reason, expires_at = excluded.expires_at",
            full,
        )
        self._lock_rows()[(row["path"], row["peer_id"])] = full

    def delete_lock(self, path: str, peer_id: str) -> None:
        self.conn.execute("DELETE FROM locks WHERE path = ? AND peer_id = ?", (path, peer_id))
        self._lock_rows().pop((path, peer_id), None)

    # -- lock waiters --------------------------------------------------------------------

    def add_waiter(self, row: Row) -> int:
        self._waiter_ids += 1
        self._waiters.append({**row, "id": self._waiter_ids})
        return self._waiter_ids

    def waiters(self) -> list[Row]:
        return [dict(row) for row in self._waiters]

    def remove_waiter(self, waiter_id: int) -> bool:
        for i, row in enumerate(self._waiters):
            if row["id"] == waiter_id:
                del self._waiters[i]
                return True
        return False

    # -- events ------------------------------------------------------------------------

    def append_event(self, type_: str, ts: float, data: dict[str, Any]) -> int:
        cur = self.conn.execute(
            "INSERT INTO events (type, ts, data) VALUES (?, ?, ?)",
            (type_, ts, _ENCODER.encode(data)),
        )
        assert cur.lastrowid is not None
        return cur.lastrowid

    def events_after(self, after: int, types: Sequence[str] | None, limit: int) -> list[Row]:
        params: list[Any] = [after]
        where = "seq > ?"
        if types:
            where += f" AND type IN ({', '.join('?' for _ in types)})"
            params.extend(types)
        params.append(limit)
        rows = self.conn.execute(
            f"SELECT seq, type, ts, data FROM events WHERE {where} ORDER BY seq LIMIT ?", params
        ).fetchall()
        for row in rows:
            row["data"] = json.loads(row["data"])
        return rows

    def events_since(self, ts: float, types: Sequence[str]) -> list[Row]:
        marks = ", ".join("?" for _ in types)
        rows = self.conn.execute(
            f"SELECT seq, type, ts, data FROM events WHERE ts >= ? AND type IN ({marks}) "
            "ORDER BY seq",
            [ts, *types],
        ).fetchall()
        for row in rows:
            row["data"] = json.loads(row["data"])
        return rows

    def last_seq(self) -> int:
        # sqlite_sequence keeps the high-water mark even when every event was pruned.
        row = self.conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()
        return int(row["seq"]) if row else 0

    # -- upkeep ------------------------------------------------------------------------

    def prune(self, *, read_before: float, events_before: float) -> tuple[int, int]:
        """Delete messages read before ``read_before``, messages to peers gone since then
        (nobody can ever read them), those peers, and events older than ``events_before``;
        return how many messages and events went."""
        self.flush_pushed()
        with self.transaction():
            m = self.conn.execute(
                "DELETE FROM messages WHERE status = 'read' AND read_at < ?", (read_before,)
            ).rowcount
            m += self.conn.execute(
                "DELETE FROM messages WHERE recipient_id IN "
                "(SELECT id FROM peers WHERE state = 'gone' AND last_seen < ?)",
                (read_before,),
            ).rowcount
            self.delete_gone_peers(read_before)
            e = self.conn.execute("DELETE FROM events WHERE ts < ?", (events_before,)).rowcount
        return m, e

    def counts(self) -> dict[str, int]:
        self._flush_before_read()
        row = self.conn.execute(
            "SELECT "
            "(SELECT count(*) FROM peers WHERE state = 'live') AS peers, "
            "(SELECT count(*) FROM peers WHERE state = 'away') AS away, "
            "(SELECT count(*) FROM messages) AS messages, "
            f"(SELECT count(*) FROM messages WHERE {_UNREAD}) AS unread, "
            "(SELECT count(*) FROM locks) AS locks, "
            "(SELECT count(*) FROM events) AS events"
        ).fetchone()
        return {k: int(v) for k, v in row.items()}
