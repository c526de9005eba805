"""What every part of the mesh shares: the store, the limits, the effects it asks the
broker to carry out, and the event log.

Rules:
1. The mesh never does I/O besides the store and never reads a clock: every call takes
   ``now`` (seconds since the epoch, as the broker computes it from trio's clock).
2. What must happen outside the store (push a message to a connection, fan an event out,
   arm or disarm a timer, wake a lock waiter) is appended to :attr:`Context.effects` as a
   plain value; the broker drains that list after every call, in order.
3. An event is written in the same transaction as the change it reports, so the log and the
   state never disagree, and its ``seq`` grows strictly.
4. A transaction that rolls back (the store refused a write: disk full, read-only) takes
   the effects appended inside it along: no event of a row that was never committed, no
   timer of a lock that was never taken. In-memory state is changed only once the store
   has committed, or mirrored from the store again (see ``Mesh``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from slm_mesh.config import Limits
from slm_mesh.person import PERSON_ID
from slm_mesh.store import Row, Store

ConnId = int

# A timer whose work the store refused (disk full) tries again this much later.
STORAGE_RETRY_S = 5.0


@dataclass(frozen=True, slots=True)
class Emit:
    """An event was appended to the log: fan it out to subscribers."""

    event: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Deliver:
    """Push ``message`` to connection ``conn_id`` (then report it pushed)."""

    conn_id: ConnId
    message: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ArmTimer:
    """Call back at ``at`` (mesh time): ``kind`` is "lock" (key = (path, peer_id)) or
    "grace" (key = peer_id). Arming an armed timer moves its deadline."""

    kind: str
    key: Any
    at: float


@dataclass(frozen=True, slots=True)
class DisarmTimer:
    kind: str
    key: Any


@dataclass(frozen=True, slots=True)
class Detach:
    """Connection ``conn_id`` no longer acts as peer ``peer_id``: another connection resumed
    it (``reason`` "resumed"), or the session ended ("ended"; ``cause`` says why, as the
    ``peer_left`` event does: "unregistered" by another connection, "grace_expired" while
    this broker was cut off from a shared store...). The broker tells the connection with a
    ``peer.detached`` notification; it carries on anonymous."""

    conn_id: ConnId
    peer_id: str = ""
    reason: str = "resumed"
    cause: str | None = None


@dataclass(frozen=True, slots=True)
class ReadElsewhere:
    """Messages of peer ``peer_id`` were marked read by a connection attached to it (a
    hook): tell ``conn_id``, the connection carrying the peer, with a ``message.read``
    notification, so a count of unread messages it keeps is not left too high."""

    conn_id: ConnId
    peer_id: str
    ids: tuple[int, ...]
    unread_left: int


@dataclass(frozen=True, slots=True)
class WatchProcess:
    """Session ``peer_id`` lives as long as process ``pid``: tell the mesh when it exits
    (:meth:`Mesh.process_exited`)."""

    peer_id: str
    pid: int


@dataclass(frozen=True, slots=True)
class UnwatchProcess:
    """Stop watching the process of session ``peer_id`` (a connection carries it now, or
    it is gone)."""

    peer_id: str


@dataclass(eq=False, slots=True)
class Waiter:
    """A queued ``lock.acquire`` (FIFO). The broker waits on it; the mesh grants it."""

    peer_id: str
    path: str
    mode: str
    ttl: float
    reason: str | None
    lock: dict[str, Any] | None = None  # set when granted
    where: dict[str, Any] = field(default_factory=dict)  # the lock asked for (path, host...)
    id: int = 0  # its place in the store's queue


@dataclass(frozen=True, slots=True)
class Granted:
    waiter: Waiter


Effect = (
    Emit
    | Deliver
    | ArmTimer
    | DisarmTimer
    | Detach
    | Granted
    | WatchProcess
    | UnwatchProcess
    | ReadElsewhere
)


@dataclass
class Context:
    store: Store
    limits: Limits
    grace_s: float
    lock_ttl_s: float
    person_name: str = PERSON_ID
    """The name the mesh shows for the person at this machine's shell (:mod:`slm_mesh.person`)."""
    person_id: str = PERSON_ID
    """That person's peer id: ``person``, or per machine where several share the store."""
    host: str = ""  # the machine this mesh's broker runs on
    broker_id: str = "local"  # this broker, among those sharing the store
    effects: list[Effect] = field(default_factory=list)

    def emit(self, type_: str, data: dict[str, Any], now: float) -> None:
        seq = self.store.append_event(type_, now, data)
        self.effects.append(Emit({"seq": seq, "type": type_, "ts": now, "data": data}))

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """A store transaction whose effects go with it (rule 4)."""
        mark = len(self.effects)
        try:
            with self.store.transaction():
                yield
        except BaseException:
            del self.effects[mark:]
            raise

    @contextlib.contextmanager
    def call_scope(self) -> Iterator[None]:
        """What one mesh entry that may write runs in: one transaction serialised against
        every other broker where several share the store, nothing where this broker is
        the only writer (its rules' own transactions are enough)."""
        if not self.store.shared:
            yield
            return
        with self.transaction():
            yield

    def drain(self) -> list[Effect]:
        out, self.effects = self.effects, []
        return out


CLI_NAME = "cli"  # what anonymous connections were called before the person: an alias


def person_row(name: str, peer_id: str = PERSON_ID, host: str | None = None) -> Row:
    """A person at a shell as a peer row (never away or gone; its messages are keyed by
    its fixed id)."""
    return {
        "id": peer_id,
        "name": name,
        "agent": "person",
        "pid": None,
        "cwd": "",
        "git_root": None,
        "git_branch": None,
        "summary": "",
        "status": "active",
        "state": "person",
        "host": host,
        "broker_id": None,
        "repo": None,
    }


def peer_view(row: Row, connected: bool, lifetime: str = "connection") -> dict[str, Any]:
    """A peer as the wire shows it (``connected``: live on this machine, by a connection
    or, for ``lifetime`` "process", by its agent's process)."""
    return {
        "peer_id": row["id"],
        "name": row["name"],
        "agent": row["agent"],
        "pid": row["pid"],
        "cwd": row["cwd"],
        "git_root": row["git_root"],
        "git_branch": row["git_branch"],
        "repo": row["repo"],
        "summary": row["summary"],
        "status": "away" if row["state"] == "away" else row["status"],
        "connected": connected,
        "joined_at": row["joined_at"],
        "last_seen": row["last_seen"],
        "lifetime": lifetime,
        "host": row["host"],
    }


def in_scope(row: Row, scope: str | None, anchor: Row | None, host: str) -> bool:
    """Whether peer ``row`` is in ``scope`` around ``anchor`` (cwd, git_root, repo, host:
    the caller or what it asked for). ``mesh`` (or None) is every machine, ``machine``
    the anchor's host; ``directory`` the same directory of the same host; ``repo`` the
    same repository, on any machine when both know its identity, else the same root."""
    if scope in (None, "mesh"):
        return True
    same_host = (row["host"] or host) == ((anchor or {}).get("host") or host)
    if scope == "machine" or anchor is None:
        return same_host
    if scope == "directory":
        return same_host and row["cwd"] == anchor.get("cwd")
    if anchor.get("repo") and row["repo"]:
        return bool(row["repo"] == anchor["repo"])
    return same_host and bool(anchor.get("git_root")) and row["git_root"] == anchor["git_root"]
