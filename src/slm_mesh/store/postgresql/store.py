"""The PostgreSQL store: one mesh shared by the brokers of several machines.

Rules:
1. The database is the authority: nothing is cached, since every broker writes.
2. Every write transaction first takes the mesh's advisory lock, so the brokers' writes
   run one at a time, in the order their events get their ``seq`` (an event is visible to
   everyone before any later one commits: a reader that follows ``seq`` misses nothing).
   Nested blocks share the outermost transaction (no savepoints): a failure inside one
   fails the whole mesh call, which is what the mesh's call scope wants.
3. Each event is announced with ``NOTIFY`` on the mesh's channel, in the transaction that
   wrote it, so it is heard only once committed: ``{"b": origin broker, "s": seq}`` plus
   the event itself (``"e"``) when it fits in a notification, and for ``message_sent``
   what the messages share (``"m"``: sender, body, type...) when that fits too, so the
   recipients' brokers push them without reading them back. A waiter taken out of the
   queue is announced as ``{"b": broker, "w": 1}`` (a later waiter may be grantable).
4. A lost connection, or a server that refuses us, is :class:`StoreUnreachable`; nothing of
   the failed transaction was committed. :meth:`PostgresStore.reconnect` tries again.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Generator, Iterable, Iterator, Sequence
from typing import Any

import psycopg

from slm_mesh.store.base import Row, Store
from slm_mesh.store.errors import StoreUnreachable
from slm_mesh.store.postgresql import connect as pg
from slm_mesh.store.postgresql.schema import migrate
from slm_mesh.store.urls import redact

_PEER_COLUMNS = (
    "id, name, agent, pid, cwd, git_root, git_branch, summary, status, state, resume_token, "
    "joined_at, last_seen, away_since, host, broker_id, repo"
)
_MESSAGE_COLUMNS = (
    "id, sender_id, sender_name, recipient_id, body, type, reply_to, broadcast, sent_at, "
    "status, pushed_at, read_at"
)
_LOCK_COLUMNS = "path, peer_id, mode, reason, acquired_at, expires_at, host, repo, rel"
_STATE_COLUMNS = "namespace, key, value, version, updated_by, updated_at, expires_at"
# Room in a notification (PostgreSQL allows 8,000 bytes) for the event itself.
NOTIFY_EVENT_BYTES = 7_000
STATE_PAGE = 200
# What the messages of one send share: each recipient's adds its id and recipient.
_SHARED_BY_RECIPIENTS = (
    "sender_id",
    "sender_name",
    "body",
    "type",
    "reply_to",
    "broadcast",
    "sent_at",
)


class PostgresStore(Store):
    """One mesh in a PostgreSQL database. Open with :meth:`open_url`."""

    shared = True

    def __init__(self, url: str, schema: str, broker_id: str) -> None:
        self.url = url
        self.schema = schema
        self.channel = schema
        self.broker_id = broker_id
        self.lock_key = pg.lock_key(schema)
        self.conn: psycopg.Connection[Any] | None = None
        self._depth = 0
        self._pushed: list[tuple[float, int]] = []
        self._sent: Row | None = None  # the last message inserted, for its event (rule 3)

    @classmethod
    def open_url(
        cls, url: str, *, mesh: str = "default", broker_id: str | None = None
    ) -> PostgresStore:
        """Connect to the mesh ``mesh`` at ``url``, creating and migrating its schema.

        Raises:
            StoreUnreachable: the server can't be reached.
            SchemaError: the mesh's schema is from a newer slm-mesh, or the name is bad.
        """
        store = cls(url, pg.schema_name(mesh), broker_id or f"pid-{os.getpid()}")
        store.reconnect()
        return store

    def where(self) -> str:
        """The store, for messages (no password)."""
        return f"{redact(self.url)} (schema {self.schema})"

    # -- connection ----------------------------------------------------------------------

    def reconnect(self) -> None:
        """Open a new connection (closing a broken one) and migrate.

        Raises:
            StoreUnreachable: still unreachable.
        """
        if self.conn is not None:
            with contextlib.suppress(Exception):
                self.conn.close()
            self.conn = None
        conn = pg.connect(self.url, self.schema)
        try:
            migrate(conn, self.schema, self.lock_key, redact(self.url))
        except psycopg.Error as exc:
            conn.close()
            raise pg.unavailable(self.url, exc) from None
        except BaseException:
            conn.close()
            raise
        self.conn = conn
        self._depth = 0

    @property
    def connected(self) -> bool:
        return self.conn is not None and not self.conn.closed

    def _x(self, sql: str, params: Any = None) -> psycopg.Cursor[Any]:
        """Run one statement; a lost connection is :class:`StoreUnreachable`."""
        if self.conn is None or self.conn.closed:
            raise StoreUnreachable(f"the shared store {self.where()} is not connected", 1.0)
        try:
            return self.conn.execute(sql, params)
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            self._broken()
            raise pg.unavailable(self.url, exc) from None

    def _one(self, sql: str, params: Any = None) -> Row:
        """The one row a statement returns."""
        row: Row | None = self._x(sql, params).fetchone()
        assert row is not None, sql
        return row

    def _broken(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(Exception):
                self.conn.close()
        self.conn = None
        self._depth = 0

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.flush_pushed()
        if self.conn is not None:
            with contextlib.suppress(Exception):
                self.conn.close()
        self.conn = None

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        self._x(f"BEGIN; SELECT pg_advisory_xact_lock({self.lock_key})")
        self._depth = 1
        try:
            yield
        except BaseException:
            self._depth = 0
            if self.conn is not None and not self.conn.closed:
                with contextlib.suppress(psycopg.Error):
                    self.conn.execute("ROLLBACK")
            raise
        self._depth = 0
        self._x("COMMIT")

    def call_scope(self) -> contextlib.AbstractContextManager[None]:
        return self.transaction()

    def size_bytes(self) -> int:
        row = self._x(
            "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint AS n FROM pg_class c "
            "JOIN pg_namespace s ON s.oid = c.relnamespace WHERE s.nspname = %s "
            "AND c.relkind = 'r'",
            (self.schema,),
        ).fetchone()
        return int(row["n"]) if row else 0

    # -- peers ---------------------------------------------------------------------------

    def insert_peer(self, peer: Row) -> None:
        cols = ", ".join(peer)
        marks = ", ".join(f"%({k})s" for k in peer)
        self._x(f"INSERT INTO peers ({cols}) VALUES ({marks})", peer)

    def update_peer(self, peer_id: str, **fields: Any) -> None:
        sets = ", ".join(f"{k} = %({k})s" for k in fields)
        self._x(f"UPDATE peers SET {sets} WHERE id = %(_id)s", {**fields, "_id": peer_id})

    def get_peer(self, peer_id: str) -> Row | None:
        row: Row | None = self._x(
            f"SELECT {_PEER_COLUMNS} FROM peers WHERE id = %s", (peer_id,)
        ).fetchone()
        return row

    def peer_by_token(self, token: str) -> Row | None:
        row: Row | None = self._x(
            f"SELECT {_PEER_COLUMNS} FROM peers WHERE resume_token = %s", (token,)
        ).fetchone()
        return row

    def peers_in(self, states: Sequence[str]) -> list[Row]:
        return self._x(
            f"SELECT {_PEER_COLUMNS} FROM peers WHERE state = ANY(%s) ORDER BY joined_at, id",
            (list(states),),
        ).fetchall()

    # -- messages ------------------------------------------------------------------------

    def insert_message(self, msg: Row) -> int:
        cols = ", ".join(msg)
        marks = ", ".join(f"%({k})s" for k in msg)
        row = self._one(f"INSERT INTO messages ({cols}) VALUES ({marks}) RETURNING id", msg)
        self._sent = msg
        return int(row["id"])

    def insert_messages(self, rows: Sequence[Row]) -> list[int]:
        """One statement for all of a broadcast's rows (one round trip, not one each)."""
        if len(rows) < 2:
            return [self.insert_message(row) for row in rows]
        first = rows[0]
        found = self._x(
            "INSERT INTO messages (sender_id, sender_name, recipient_id, body, type, reply_to, "
            "broadcast, sent_at, status) SELECT %s, %s, r, %s, %s, %s, %s, %s, 'queued' "
            "FROM unnest(%s::text[]) WITH ORDINALITY AS t(r, n) ORDER BY n "
            "RETURNING id, recipient_id",
            (
                first["sender_id"],
                first["sender_name"],
                first["body"],
                first["type"],
                first["reply_to"],
                first["broadcast"],
                first["sent_at"],
                [row["recipient_id"] for row in rows],
            ),
        ).fetchall()
        self._sent = dict(first)
        ids = {row["recipient_id"]: int(row["id"]) for row in found}  # one row per recipient
        return [ids[row["recipient_id"]] for row in rows]

    def get_message(self, message_id: int) -> Row | None:
        row: Row | None = self._x(
            f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE id = %s", (message_id,)
        ).fetchone()
        return row

    def lapse_brokers(self) -> list[str]:
        rows = self._x(
            "UPDATE brokers SET lapsed = true WHERE NOT lapsed "
            "AND lease_until < clock_timestamp() RETURNING id"
        ).fetchall()
        return [row["id"] for row in rows]

    def remove_waiters_of(self, broker_id: str) -> int:
        cur = self._x(
            "WITH gone AS (DELETE FROM waiters WHERE broker_id = %s RETURNING id) "
            "SELECT pg_notify(%s, %s) FROM (SELECT count(*) AS n FROM gone) g WHERE n > 0",
            (broker_id, self.channel, json.dumps({"b": self.broker_id, "w": 1})),
        )
        return 1 if cur.fetchone() is not None else 0

    def messages_for(self, ids: Sequence[int], recipients: Sequence[str]) -> list[Row]:
        """The messages among ``ids`` addressed to ``recipients``, oldest first."""
        return self._x(
            f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE id = ANY(%s) "
            "AND recipient_id = ANY(%s) ORDER BY id",
            (list(ids), list(recipients)),
        ).fetchall()

    def note_pushed(self, ids: Iterable[int], now: float) -> None:
        self._pushed.extend((now, i) for i in ids)

    def flush_pushed(self) -> int:
        if not self._pushed:
            return 0
        pending, self._pushed = self._pushed, []
        try:
            # No mesh lock needed: a mark only turns queued into pushed.
            self._x(
                "UPDATE messages SET status = 'pushed', pushed_at = m.at FROM "
                "unnest(%s::float8[], %s::bigint[]) AS m(at, id) "
                "WHERE messages.id = m.id AND messages.status = 'queued'",
                ([at for at, _ in pending], [i for _, i in pending]),
            )
        except BaseException:
            self._pushed[:0] = pending  # kept for the next flush
            raise
        return len(pending)

    def inbox(
        self,
        recipient_id: str,
        *,
        unread_only: bool,
        sender_id: str | None,
        filter_sender: bool,
        limit: int,
    ) -> list[Row]:
        self.flush_pushed()
        where = ["recipient_id = %(r)s"]
        if unread_only:
            where.append("status IN ('queued', 'pushed')")
        if filter_sender:
            where.append("sender_id IS NOT DISTINCT FROM %(s)s")
        return self._x(
            f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE {' AND '.join(where)} "
            "ORDER BY id LIMIT %(limit)s",
            {"r": recipient_id, "s": sender_id, "limit": limit},
        ).fetchall()

    def unread_count(self, recipient_id: str) -> int:
        row = self._one(
            "SELECT count(*) AS n FROM messages WHERE recipient_id = %s "
            "AND status IN ('queued', 'pushed')",
            (recipient_id,),
        )
        return int(row["n"])

    def mark_read(self, recipient_id: str, ids: Sequence[int], now: float) -> list[int]:
        rows = self._x(
            "UPDATE messages SET status = 'read', read_at = %s WHERE recipient_id = %s "
            "AND status IN ('queued', 'pushed') AND id = ANY(%s) RETURNING id",
            (now, recipient_id, list(ids)),
        ).fetchall()
        return [row["id"] for row in rows]

    def queued_for(self, recipient_id: str, limit: int = -1) -> list[Row]:
        self.flush_pushed()
        return self._x(
            f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE recipient_id = %s "
            "AND status = 'queued' ORDER BY id LIMIT %s",
            (recipient_id, None if limit < 0 else limit),
        ).fetchall()

    # -- state ---------------------------------------------------------------------------

    def state_get(self, namespace: str, key: str) -> Row | None:
        row: Row | None = self._x(
            f"SELECT {_STATE_COLUMNS} FROM state WHERE namespace = %s AND key = %s",
            (namespace, key),
        ).fetchone()
        return row

    def state_put(self, row: Row) -> None:
        self._x(
            f"INSERT INTO state ({_STATE_COLUMNS}) VALUES (%(namespace)s, %(key)s, %(value)s, "
            "%(version)s, %(updated_by)s, %(updated_at)s, %(expires_at)s) "
            "ON CONFLICT (namespace, key) DO UPDATE SET value = excluded.value, "
            "version = excluded.version, updated_by = excluded.updated_by, "
            "updated_at = excluded.updated_at, expires_at = excluded.expires_at",
            row,
        )

    def state_delete(self, namespace: str, key: str) -> bool:
        cur = self._x("DELETE FROM state WHERE namespace = %s AND key = %s", (namespace, key))
        return cur.rowcount > 0

    def state_list(
        self, namespace: str, prefix: str | None, after: str | None, now: float
    ) -> Generator[Row, None, None]:
        """In byte order of the keys (``COLLATE "C"``, as SQLite compares them), read a
        page at a time."""
        where = "namespace = %(ns)s AND (expires_at IS NULL OR expires_at > %(now)s)"
        params: dict[str, Any] = {"ns": namespace, "now": now, "page": STATE_PAGE}
        if prefix:
            where += " AND left(key, %(n)s) = %(prefix)s"
            params.update(n=len(prefix), prefix=prefix)
        cursor_key = after
        while True:
            clause = where + (' AND key COLLATE "C" > %(after)s' if cursor_key is not None else "")
            rows = self._x(
                f"SELECT {_STATE_COLUMNS} FROM state WHERE {clause} "
                'ORDER BY key COLLATE "C" LIMIT %(page)s',
                {**params, "after": cursor_key},
            ).fetchall()
            yield from rows
            if len(rows) < STATE_PAGE:
                return
            cursor_key = rows[-1]["key"]

    def state_expired(self, now: float) -> list[Row]:
        return self._x(
            "SELECT namespace, key, version FROM state WHERE expires_at IS NOT NULL "
            "AND expires_at <= %s",
            (now,),
        ).fetchall()

    # -- locks ---------------------------------------------------------------------------

    def all_locks(self) -> list[Row]:
        return self._x(f"SELECT {_LOCK_COLUMNS} FROM locks").fetchall()

    def get_lock(self, path: str, peer_id: str) -> Row | None:
        row: Row | None = self._x(
            f"SELECT {_LOCK_COLUMNS} FROM locks WHERE path = %s AND peer_id = %s", (path, peer_id)
        ).fetchone()
        return row

    def locks_of(self, peer_id: str) -> list[Row]:
        return self._x(
            f"SELECT {_LOCK_COLUMNS} FROM locks WHERE peer_id = %s", (peer_id,)
        ).fetchall()

    def put_lock(self, row: Row) -> None:
        full: Row = dict.fromkeys(_LOCK_COLUMNS.split(", "))
        full.update(row)
        self._x(
            f"INSERT INTO locks ({_LOCK_COLUMNS}) VALUES (%(path)s, %(peer_id)s, %(mode)s, "
            "%(reason)s, %(acquired_at)s, %(expires_at)s, %(host)s, %(repo)s, %(rel)s) "
            "ON CONFLICT (path, peer_id) DO UPDATE SET mode = excluded.mode, "
            "reason = excluded.reason, expires_at = excluded.expires_at",
            full,
        )

    def delete_lock(self, path: str, peer_id: str) -> None:
        self._x("DELETE FROM locks WHERE path = %s AND peer_id = %s", (path, peer_id))

    # -- lock waiters --------------------------------------------------------------------

    def add_waiter(self, row: Row) -> int:
        cols = ("broker_id", "peer_id", "path", "host", "repo", "rel", "mode", "ttl", "reason")
        values = {c: row.get(c) for c in cols}
        values["queued_at"] = row["queued_at"]
        names = ", ".join(values)
        marks = ", ".join(f"%({k})s" for k in values)
        row = self._one(f"INSERT INTO waiters ({names}) VALUES ({marks}) RETURNING id", values)
        return int(row["id"])

    def waiters(self) -> list[Row]:
        return self._x(
            "SELECT id, broker_id, peer_id, path, host, repo, rel, mode, ttl, reason, queued_at "
            "FROM waiters ORDER BY id"
        ).fetchall()

    def remove_waiter(self, waiter_id: int) -> bool:
        cur = self._x(
            "WITH gone AS (DELETE FROM waiters WHERE id = %s RETURNING id) "
            "SELECT pg_notify(%s, %s) FROM gone",
            (waiter_id, self.channel, json.dumps({"b": self.broker_id, "w": 1})),
        )
        return cur.fetchone() is not None

    # -- events --------------------------------------------------------------------------

    def append_event(self, type_: str, ts: float, data: dict[str, Any]) -> int:
        text = json.dumps(data, separators=(",", ":"))
        head = '{"b":' + json.dumps(self.broker_id) + ',"s":'
        shared = ""
        sent, self._sent = self._sent, None
        if type_ == "message_sent" and sent is not None:
            shared = ',"m":' + json.dumps(
                {k: sent.get(k) for k in _SHARED_BY_RECIPIENTS}, separators=(",", ":")
            )
        if len(text) + len(type_) + len(shared) < NOTIFY_EVENT_BYTES:
            event = f',"e":{{"type":{json.dumps(type_)},"ts":{ts!r},"data":{text}}}{shared}}}'
        elif len(text) + len(type_) < NOTIFY_EVENT_BYTES:
            event = f',"e":{{"type":{json.dumps(type_)},"ts":{ts!r},"data":{text}}}}}'
        else:
            event = "}"
        row = self._one(
            "WITH e AS (INSERT INTO events (type, ts, data, origin) VALUES (%s, %s, %s, %s) "
            "RETURNING seq) SELECT seq, pg_notify(%s, %s || seq || %s) FROM e",
            (type_, ts, text, self.broker_id, self.channel, head, event),
        )
        return int(row["seq"])

    def events_after(self, after: int, types: Sequence[str] | None, limit: int) -> list[Row]:
        rows = self.events_with_origin(after, types, limit)
        for row in rows:
            del row["origin"]
        return rows

    def events_with_origin(self, after: int, types: Sequence[str] | None, limit: int) -> list[Row]:
        """:meth:`events_after`, each with the broker that wrote it (``origin``)."""
        where = "seq > %(after)s"
        if types:
            where += " AND type = ANY(%(types)s)"
        rows = self._x(
            f"SELECT seq, type, ts, data, origin FROM events WHERE {where} ORDER BY seq "
            "LIMIT %(limit)s",
            {"after": after, "types": list(types or ()), "limit": limit},
        ).fetchall()
        for row in rows:
            row["data"] = json.loads(row["data"])
        return rows

    def events_since(self, ts: float, types: Sequence[str]) -> list[Row]:
        rows = self._x(
            "SELECT seq, type, ts, data FROM events WHERE ts >= %(ts)s "
            "AND type = ANY(%(types)s) ORDER BY seq",
            {"ts": ts, "types": list(types)},
        ).fetchall()
        for row in rows:
            row["data"] = json.loads(row["data"])
        return rows

    def last_seq(self) -> int:
        # prune() always keeps the newest event, so this never goes back.
        row = self._one("SELECT coalesce(max(seq), 0) AS s FROM events")
        return int(row["s"])

    # -- upkeep --------------------------------------------------------------------------

    def prune(self, *, read_before: float, events_before: float) -> tuple[int, int]:
        self.flush_pushed()
        with self.transaction():
            m = self._x(
                "DELETE FROM messages WHERE status = 'read' AND read_at < %s", (read_before,)
            ).rowcount
            m += self._x(
                "DELETE FROM messages WHERE recipient_id IN "
                "(SELECT id FROM peers WHERE state = 'gone' AND last_seen < %s)",
                (read_before,),
            ).rowcount
            self._x(
                "DELETE FROM peers WHERE state = 'gone' AND last_seen < %s AND id NOT IN "
                "(SELECT recipient_id FROM messages WHERE status IN ('queued', 'pushed'))",
                (read_before,),
            )
            e = self._x(
                "DELETE FROM events WHERE ts < %s AND seq < (SELECT max(seq) FROM events)",
                (events_before,),
            ).rowcount
        return m, e

    def counts(self) -> dict[str, int]:
        self.flush_pushed()
        row = self._one(
            "SELECT "
            "(SELECT count(*) FROM peers WHERE state = 'live') AS peers, "
            "(SELECT count(*) FROM peers WHERE state = 'away') AS away, "
            "(SELECT count(*) FROM messages) AS messages, "
            "(SELECT count(*) FROM messages WHERE status IN ('queued', 'pushed')) AS unread, "
            "(SELECT count(*) FROM locks) AS locks, "
            "(SELECT count(*) FROM events) AS events"
        )
        return {k: int(v) for k, v in row.items()}
