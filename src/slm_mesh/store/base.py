"""The store interface: every query the mesh rules and the broker make, whatever the
database.

Rules:
1. The store is the authority. The mesh keeps no copy of peers, locks or waiters of its
   own; an implementation may cache what only it can write (SQLite: the broker is the only
   writer), never what another process writes (PostgreSQL: every broker writes).
2. :meth:`Store.transaction` groups writes: all commit together or none do (nested blocks
   use savepoints). A write outside one commits at once. On a rollback the store drops
   whatever it cached inside the transaction.
3. :meth:`Store.call_scope` is what one mesh call runs in: nothing where a single writer
   makes each rule's own transactions enough (SQLite), one transaction that serialises
   the call against every other broker where several write (PostgreSQL).
4. Failures: :class:`StorageError` (the disk refused a write), :class:`StoreUnreachable`
   (the shared database can't be reached), :class:`SchemaError` (the database is from
   a newer slm-mesh, or not ours). Each says what to do.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Generator, Iterable, Sequence
from pathlib import Path
from typing import Any

from slm_mesh.store.urls import is_url

Row = dict[str, Any]


class Store(ABC):
    """The mesh's durable state. Open one with :meth:`open`."""

    # Whether other brokers write this store too (rule 3).
    shared: bool = False

    @classmethod
    def open(cls, location: Path | str | None, *, mesh: str = "default") -> Store:
        """The store at ``location``: a ``postgresql://`` URL (the mesh named ``mesh`` in
        it), a SQLite file path, or ``None`` for an in-memory SQLite database. Created and
        migrated if needed.

        Raises:
            SchemaError: the database is damaged, not slm-mesh's, or from a newer version.
            StorageError: the file system won't let the file be opened or written.
            StoreUnreachable: the PostgreSQL server can't be reached.
        """
        if is_url(location):
            from slm_mesh.store.postgresql import PostgresStore

            return PostgresStore.open_url(str(location), mesh=mesh)
        from slm_mesh.store.sqlite import SQLiteStore

        return SQLiteStore.open_file(Path(location) if location is not None else None)

    # -- lifecycle -----------------------------------------------------------------------

    @abstractmethod
    def close(self) -> None: ...

    @abstractmethod
    def transaction(self) -> contextlib.AbstractContextManager[None]:
        """Group writes (rule 2)."""

    def call_scope(self) -> contextlib.AbstractContextManager[None]:
        """What one mesh call that may write runs in (rule 3)."""
        return contextlib.nullcontext()

    @abstractmethod
    def size_bytes(self) -> int:
        """Bytes the database takes (0 where it is not ours to measure)."""

    def wal_bytes(self) -> int:
        """Bytes of write-ahead log waiting for a checkpoint (0 where there is none)."""
        return 0

    def checkpoint_passive(self) -> None:
        """Copy the write-ahead log into the database without blocking writers. Safe to
        call from a worker thread. Nothing to do by default."""
        return None

    # -- peers ---------------------------------------------------------------------------

    @abstractmethod
    def insert_peer(self, peer: Row) -> None: ...

    @abstractmethod
    def update_peer(self, peer_id: str, **fields: Any) -> None: ...

    @abstractmethod
    def get_peer(self, peer_id: str) -> Row | None:
        """A copy of the peer's row (callers may change it freely)."""

    @abstractmethod
    def peer_by_token(self, token: str) -> Row | None: ...

    @abstractmethod
    def peers_in(self, states: Sequence[str]) -> list[Row]:
        """Peers in any of ``states``, oldest first."""

    # -- messages ------------------------------------------------------------------------

    @abstractmethod
    def insert_message(self, msg: Row) -> int:
        """Store ``msg``; its new id."""

    def insert_messages(self, rows: Sequence[Row]) -> list[int]:
        """Store the messages of one send (one row per recipient); their ids, in order."""
        return [self.insert_message(row) for row in rows]

    @abstractmethod
    def get_message(self, message_id: int) -> Row | None: ...

    def messages_for(self, ids: Sequence[int], recipients: Sequence[str]) -> list[Row]:
        """The messages among ``ids`` addressed to ``recipients``, oldest first."""
        wanted = set(recipients)
        rows = [self.get_message(i) for i in sorted(ids)]
        return [r for r in rows if r is not None and r["recipient_id"] in wanted]

    @abstractmethod
    def note_pushed(self, ids: Iterable[int], now: float) -> None:
        """Remember that these messages were written to their recipients; written by
        :meth:`flush_pushed` (before any read of message status)."""

    @abstractmethod
    def flush_pushed(self) -> int: ...

    @abstractmethod
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

    @abstractmethod
    def unread_count(self, recipient_id: str) -> int: ...

    @abstractmethod
    def mark_read(self, recipient_id: str, ids: Sequence[int], now: float) -> list[int]:
        """Mark those of ``ids`` that are ``recipient_id``'s and unread as read; their ids
        (what another call marked first is not among them)."""

    @abstractmethod
    def queued_for(self, recipient_id: str, limit: int = -1) -> list[Row]:
        """The oldest messages not yet pushed to ``recipient_id`` (at most ``limit``; -1: all)."""

    # -- state ---------------------------------------------------------------------------

    @abstractmethod
    def state_get(self, namespace: str, key: str) -> Row | None: ...

    @abstractmethod
    def state_put(self, row: Row) -> None: ...

    @abstractmethod
    def state_delete(self, namespace: str, key: str) -> bool: ...

    @abstractmethod
    def state_list(
        self, namespace: str, prefix: str | None, after: str | None, now: float
    ) -> Generator[Row, None, None]:
        """Live keys of ``namespace`` in key order, those after ``after`` only; read
        lazily, so a caller that stops early never loads the rest."""

    @abstractmethod
    def state_expired(self, now: float) -> list[Row]: ...

    # -- locks ---------------------------------------------------------------------------

    @abstractmethod
    def all_locks(self) -> list[Row]:
        """Every lock row (expired ones too, until they are ended)."""

    @abstractmethod
    def get_lock(self, path: str, peer_id: str) -> Row | None: ...

    @abstractmethod
    def locks_of(self, peer_id: str) -> list[Row]: ...

    @abstractmethod
    def put_lock(self, row: Row) -> None:
        """Insert the lock, or change the mode, reason and expiry of the same
        (path, peer_id)."""

    @abstractmethod
    def delete_lock(self, path: str, peer_id: str) -> None: ...

    # -- lock waiters --------------------------------------------------------------------

    @abstractmethod
    def add_waiter(self, row: Row) -> int:
        """Queue a ``lock.acquire`` that waits (peer_id, path, mode, ttl, reason, where
        the lock would be, and the broker that waits on it); its id, which orders the
        queue."""

    @abstractmethod
    def waiters(self) -> list[Row]:
        """Every queued request, first come first."""

    @abstractmethod
    def remove_waiter(self, waiter_id: int) -> bool:
        """Take a request out of the queue (granted, or given up); False if it was not
        there."""

    def remove_waiters_of(self, broker_id: str) -> int:
        """Take the requests a broker waits on out of the queue (it is gone)."""
        gone = [w["id"] for w in self.waiters() if w["broker_id"] == broker_id]
        for waiter_id in gone:
            self.remove_waiter(waiter_id)
        return len(gone)

    # -- brokers sharing the store -------------------------------------------------------

    def lapse_brokers(self) -> list[str]:
        """The brokers whose lease ran out since the last call (each is reported once).
        None where one broker owns the store."""
        return []

    # -- events --------------------------------------------------------------------------

    @abstractmethod
    def append_event(self, type_: str, ts: float, data: dict[str, Any]) -> int:
        """Append to the log; the event's ``seq`` (strictly above every earlier one)."""

    @abstractmethod
    def events_after(self, after: int, types: Sequence[str] | None, limit: int) -> list[Row]: ...

    @abstractmethod
    def events_since(self, ts: float, types: Sequence[str]) -> list[Row]:
        """The events of ``types`` at ``ts`` or later, in ``seq`` order."""

    @abstractmethod
    def last_seq(self) -> int:
        """The highest ``seq`` ever committed (kept when old events are pruned)."""

    # -- upkeep --------------------------------------------------------------------------

    @abstractmethod
    def prune(self, *, read_before: float, events_before: float) -> tuple[int, int]:
        """Delete messages read before ``read_before``, messages to peers gone since then,
        those peers, and events older than ``events_before``; how many messages and
        events went."""

    @abstractmethod
    def counts(self) -> dict[str, int]: ...
