"""A broker's lease in the shared store, and the connection that hears the others.

Each runs on a connection of its own, so that neither waits behind the mesh's calls:
- :class:`Lease` renews the broker's row in ``brokers`` and reads the store's clock;
- :class:`Listener` ``LISTEN``s on the mesh's channel and hands over what it heard
  without blocking (the broker waits for its socket to be readable).
"""

from __future__ import annotations

import contextlib
from typing import Any

import psycopg

from slm_mesh.store.errors import StoreUnreachable
from slm_mesh.store.postgresql import connect as pg
from slm_mesh.store.urls import redact


class Lease:
    def __init__(self, url: str, schema: str, broker_id: str, host: str, pid: int) -> None:
        self.url = url
        self.schema = schema
        self.broker_id = broker_id
        self.host = host
        self.pid = pid
        self.conn: psycopg.Connection[Any] | None = None

    def renew(self, lease_s: float) -> tuple[float, bool]:
        """Hold the lease ``lease_s`` seconds more (by the store's clock). Returns the
        store's time (seconds since the epoch) and whether the lease had lapsed: the
        others took this broker's sessions for away meanwhile.

        Raises:
            StoreUnreachable: the store can't be reached.
        """
        reused = self.conn is not None and not self.conn.closed
        try:
            return self._renew(lease_s)
        except StoreUnreachable:
            if not reused:
                raise
        # A connection that broke while idle (the link went, or the server restarted,
        # while the broker renewed nothing) says nothing of the store now: once more, anew.
        return self._renew(lease_s)

    def _renew(self, lease_s: float) -> tuple[float, bool]:
        try:
            if self.conn is None or self.conn.closed:
                self.conn = pg.connect(self.url, self.schema, application="slm-mesh lease")
            row = self.conn.execute(
                "WITH old AS (SELECT lapsed FROM brokers WHERE id = %(id)s FOR UPDATE), "
                "up AS (INSERT INTO brokers (id, host, pid, started_at, lease_until, lapsed) "
                "VALUES (%(id)s, %(host)s, %(pid)s, extract(epoch FROM clock_timestamp()), "
                "clock_timestamp() + make_interval(secs => %(lease)s), false) "
                "ON CONFLICT (id) DO UPDATE SET host = excluded.host, pid = excluded.pid, "
                "lease_until = excluded.lease_until, lapsed = false RETURNING 1) "
                "SELECT extract(epoch FROM clock_timestamp())::float8 AS now, "
                "coalesce((SELECT lapsed FROM old), false) AS lapsed, "
                "(SELECT count(*) FROM up) AS renewed",
                {"id": self.broker_id, "host": self.host, "pid": self.pid, "lease": lease_s},
            ).fetchone()
        except psycopg.Error as exc:
            self.close()
            raise pg.unavailable(self.url, exc) from None
        except StoreUnreachable:
            self.close()
            raise
        assert row is not None
        return float(row["now"]), bool(row["lapsed"])

    def give_up(self) -> None:
        """End the lease now (a clean stop): the others need not wait for it."""
        with contextlib.suppress(psycopg.Error, StoreUnreachable):
            if self.conn is not None and not self.conn.closed:
                self.conn.execute(
                    "UPDATE brokers SET lease_until = clock_timestamp() WHERE id = %s",
                    (self.broker_id,),
                )
        self.close()

    def close(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(Exception):
                self.conn.close()
        self.conn = None


class Listener:
    def __init__(self, url: str, schema: str) -> None:
        self.url = url
        self.schema = schema
        self.conn: psycopg.Connection[Any] | None = None

    def open(self) -> int:
        """Connect and listen; the socket to wait on for readability.

        Raises:
            StoreUnreachable: the store can't be reached.
        """
        self.close()
        conn = pg.connect(self.url, self.schema, application="slm-mesh listen")
        try:
            conn.execute(f'LISTEN "{self.schema}"')
        except psycopg.Error as exc:
            conn.close()
            raise pg.unavailable(self.url, exc) from None
        self.conn = conn
        return int(conn.pgconn.socket)

    def drain(self) -> list[str]:
        """The payloads heard so far, without blocking.

        Raises:
            StoreUnreachable: the connection was lost.
        """
        if self.conn is None:
            raise StoreUnreachable("not listening", pg.RETRY_AFTER_S)
        pgconn = self.conn.pgconn
        try:
            pgconn.consume_input()
        except psycopg.Error as exc:
            self.close()
            raise pg.unavailable(self.url, exc) from None
        heard = []
        while (note := pgconn.notifies()) is not None:
            heard.append(note.extra.decode())
        if pgconn.status != psycopg.pq.ConnStatus.OK:
            self.close()
            raise StoreUnreachable(f"the link to {redact(self.url)} was lost", 1.0)
        return heard

    def close(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(Exception):
                self.conn.close()
        self.conn = None
