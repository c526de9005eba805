"""The sessions this broker knows of: which connection carries or acts as which peer,
looked up by id or name, and how a session goes away and ends. How a connection becomes a
session (register, resume, attach) is :mod:`slm_mesh.mesh.sessions`.

Rules:
1. A peer is ``live`` while a connection carries it (or, tied to a process, while that
   process runs); liveness is the connection, never a heartbeat or a pid guess.
2. When that connection drops, the peer is ``away`` for ``grace_s`` (a resume within it
   gives it back: sessions rule 1). After the grace it is ``gone``: its locks are released
   and ``peer_left`` is emitted.
3. On a broker restart every peer it carried is set away with a fresh grace, so MCP
   servers can reconnect and resume.
4. A session tied to its agent's process (``lifetime: process``, sessions rule 3) has no
   connection carrying it: the broker watches the pid and the session is gone the moment
   the process exits.
5. Closing a connection attached to a session (sessions rule 4) ends nothing;
   ``peer.unregister`` on it ends the session at once, for every connection.
6. A connection whose session was taken from it (resumed by another, sessions rule 5) or
   ended is told (``peer.detached``) and never acts as the person behind the agent's back:
   until it registers again it is refused, with -32001, every call but reads
   (``slm_mesh.mesh.core.DETACHED_MAY``);
   its client learns why from the ``peer.detached`` it read first.
7. The person at the shell is no session (see :mod:`slm_mesh.mesh.persons`): it is never
   away or gone, and is found by its id, its name, ``person`` or ``cli``. Anonymous
   connections that call ``message.subscribe`` get its messages pushed.
8. Several brokers may share one store (PostgreSQL): each peer row says which host and
   broker carry it. A peer is connected while its own broker carries it, as that broker
   records it (``state`` live); a broker never ends a session another one carries.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from slm_mesh.mesh.context import (
    STORAGE_RETRY_S,
    ArmTimer,
    ConnId,
    Context,
    Detach,
    DisarmTimer,
    UnwatchProcess,
    WatchProcess,
    peer_view,
)
from slm_mesh.mesh.persons import PERSON_STATE, Persons
from slm_mesh.protocol.errors import InvalidRequest, PeerNotFound
from slm_mesh.store import Row


class SessionTable:
    """The sessions and the connections that carry or act as them (see the rules); the
    calls that join them are :class:`slm_mesh.mesh.sessions.Sessions`'."""

    def __init__(self, ctx: Context, on_gone: Callable[[str, float], None]) -> None:
        self.ctx = ctx
        self.store = ctx.store
        self._on_gone = on_gone  # releases the locks of a peer that is gone
        self.conn_of: dict[str, ConnId] = {}  # live peer id → the connection carrying it
        self.peer_of: dict[
            ConnId, str
        ] = {}  # connection → the peer it acts as (carrier or attached)
        self.tied: dict[str, int] = {}  # peer id → pid of the process it lives as long as
        self.agent_sessions: dict[str, str] = {}  # agent's own session id → peer id
        # connection → why the peer it acted as was taken from it (rule 6), till it registers
        self.detached: dict[ConnId, str] = {}
        self.persons = Persons(ctx)

    # -- start-up ----------------------------------------------------------------------

    def recover(self, now: float) -> None:
        """After a broker (re)start: every live or away peer it carried is away with a
        fresh grace."""
        with self.ctx.transaction():
            self.persons.enroll(now)
            for row in self.store.peers_in(("live", "away")):
                if not self.mine(row):
                    continue
                self.store.update_peer(row["id"], state="away", away_since=now)
                self.ctx.effects.append(ArmTimer("grace", row["id"], now + self.ctx.grace_s))

    # -- lookups -----------------------------------------------------------------------

    def row(self, peer_id: str) -> Row:
        row = self.store.get_peer(peer_id)
        if row is None or row["state"] == "gone":
            raise PeerNotFound(f"peer {peer_id} is not in the mesh", {"peer": peer_id})
        return row

    def view(self, row: Row) -> dict[str, Any]:
        tied = row["id"] in self.tied
        return peer_view(row, self.connected(row), "process" if tied else "connection")

    def mine(self, row: Row) -> bool:
        """Whether this broker carries (or last carried) the peer (rule 8)."""
        return row["broker_id"] in (None, self.ctx.broker_id)

    def connected(self, row: Row) -> bool:
        """Whether the peer is live: on this broker, carried by a connection or tied to a
        running process; on another, as that broker recorded it (rule 8)."""
        if self.mine(row):
            return self.is_live(row["id"])
        return bool(row["state"] == "live")

    def live(self, peer_id: str) -> bool:
        """:meth:`connected`, by id."""
        row = self.store.get_peer(peer_id)
        return row is not None and self.connected(row)

    def is_live(self, peer_id: str) -> bool:
        """Carried by a connection of this broker, or tied to a running process."""
        return peer_id in self.conn_of or peer_id in self.tied

    def of_process(self, pid: int) -> str | None:
        """The live session of agent process ``pid`` (the latest joined, if several)."""
        found = [
            row
            for peer_id in (*self.conn_of, *self.tied)
            if (row := self.store.get_peer(peer_id)) is not None and row["pid"] == pid
        ]
        if not found:
            return None
        return str(max(found, key=lambda r: (r["joined_at"], r["id"]))["id"])

    def person(self) -> Row:
        """This machine's person at the shell, as a peer row (rule 7)."""
        return self.persons.row()

    def person_view(self, *, unread: bool = True) -> dict[str, Any]:
        """This machine's person as ``mesh.status`` shows it (``unread``: count its unread
        messages in the store; else that count is None, as when the store can't be reached)."""
        return self.persons.view(unread=unread)

    def follow_person(self, conn_id: ConnId) -> dict[str, Any]:
        """Push the person's messages to this anonymous connection from now on."""
        if conn_id in self.peer_of:
            raise InvalidRequest(
                f"this connection is peer {self.peer_of[conn_id]}, whose messages are pushed "
                "to it already; message.subscribe is for connections without a peer"
            )
        return self.persons.follow(conn_id)

    def conns_of(self, peer_id: str) -> list[ConnId]:
        """The connections of this broker a message to ``peer_id`` is pushed to: the one
        carrying the session, or those following this machine's person."""
        conn = self.conn_of.get(peer_id)
        return [conn] if conn is not None else self.persons.conns_of(peer_id)

    def resolve(self, who: str) -> Row:
        """A live or away peer, or a person, by id or by name.

        Raises:
            PeerNotFound: no such peer, or it has left; or a name several persons have.
        """
        if self.persons.means_me(who):
            return self.person()
        row = self.store.get_peer(who)
        if row is not None and row["state"] != "gone":
            return row
        rows = self.store.peers_in(("live", "away", PERSON_STATE))
        named = [candidate for candidate in rows if candidate["name"] == who]
        if named:  # a person before a session that took its name before it joined
            return max(named, key=lambda r: r["state"] == PERSON_STATE)
        person = self.persons.by_bare_name(who, rows)
        if person is not None:
            return person
        hint = " (it has left the mesh)" if row is not None else ""
        raise PeerNotFound(f"no peer named or numbered {who!r}{hint}", {"peer": who})

    # -- sessions tied to a process (rule 4) -------------------------------------------

    def _tie(self, peer_id: str, pid: int) -> None:
        self.tied[peer_id] = pid
        self.ctx.effects.append(WatchProcess(peer_id, pid))

    def _untie(self, peer_id: str) -> None:
        if self.tied.pop(peer_id, None) is not None:
            self.ctx.effects.append(UnwatchProcess(peer_id))

    def process_exited(self, peer_id: str, now: float) -> None:
        """The process a session was tied to exited: the session is gone at once."""
        if peer_id not in self.tied:
            return  # adopted by a connection meanwhile, or gone already
        try:
            self._make_gone(peer_id, "process_exited", now)
        except Exception:
            self.ctx.effects.append(ArmTimer("grace", peer_id, now + STORAGE_RETRY_S))
            raise

    # -- how a session ends ------------------------------------------------------------

    def unregister(self, conn_id: ConnId, now: float) -> dict[str, Any]:
        peer_id = self.peer_of[conn_id]
        self._make_gone(peer_id, "unregistered", now, caller=conn_id)
        return {}

    def disconnected(self, conn_id: ConnId, now: float) -> None:
        """The connection carrying a peer closed: the peer is away for the grace period.
        An attached connection closing changes nothing (rule 5)."""
        self.persons.conns.discard(conn_id)
        self.detached.pop(conn_id, None)
        peer_id = self.peer_of.get(conn_id)
        if peer_id is None:
            return
        if self.conn_of.get(peer_id) != conn_id:
            del self.peer_of[conn_id]
            return
        self._unbind(conn_id)
        # (The mesh arms the grace timer even if the store refuses to record this.)
        self._record_away(peer_id, now)

    def _emit_updated(
        self, row: Row, status: str, now: float, moved: dict[str, Any] | None = None
    ) -> None:
        """``peer_updated``; with ``moved``, the session's new workspace fields."""
        data = {"peer_id": row["id"], "name": row["name"], "summary": row["summary"]}
        self.ctx.emit("peer_updated", {**data, "status": status, **(moved or {})}, now)

    def record_away(self, peer_id: str, now: float) -> None:
        """The peer is away from ``now`` (its grace runs)."""
        self._record_away(peer_id, now)

    def _record_away(self, peer_id: str, now: float) -> None:
        with self.ctx.transaction():
            self.store.update_peer(peer_id, state="away", away_since=now, last_seen=now)
            self._emit_updated(self.row(peer_id), "away", now)

    def grace_over(self, peer_id: str, now: float) -> None:
        """The grace timer of a peer nothing of ours keeps live fired (its state may still
        read ``live`` if the store refused to record it away). A peer another broker
        carries now is that broker's (rule 8)."""
        row = self.store.get_peer(peer_id)
        if row is None or row["state"] == "gone" or self.is_live(peer_id):
            return
        if row["state"] == "live" and not self.mine(row):
            return
        self._make_gone(peer_id, "grace_expired", now)

    def _make_gone(
        self, peer_id: str, reason: str, now: float, *, caller: ConnId | None = None
    ) -> None:
        with self.ctx.transaction():
            row = self.row(peer_id)
            self.store.update_peer(peer_id, state="gone", away_since=None, last_seen=now)
            self._on_gone(peer_id, now)
            self.ctx.emit(
                "peer_left", {"peer_id": peer_id, "name": row["name"], "reason": reason}, now
            )
        # Only once committed: if the store refused, the session carries on as it was.
        self.drop(peer_id, caller=caller, cause=reason)

    def drop(
        self,
        peer_id: str,
        *,
        caller: ConnId | None = None,
        reason: str = "ended",
        cause: str | None = None,
    ) -> None:
        """Nothing here carries, ties or attaches ``peer_id`` any more: it is gone
        (``reason`` "ended", for ``cause``: the ``peer_left`` reason), or another broker
        carries it now ("resumed"). Its connections (but ``caller``'s) are detached."""
        self.ctx.effects.append(DisarmTimer("grace", peer_id))
        self._untie(peer_id)
        self.conn_of.pop(peer_id, None)
        for conn_id in [c for c, p in self.peer_of.items() if p == peer_id]:
            del self.peer_of[conn_id]
            if conn_id != caller:
                self._detach(conn_id, peer_id, reason, cause)
        for agent_session in [a for a, p in self.agent_sessions.items() if p == peer_id]:
            del self.agent_sessions[agent_session]

    def _detach(self, conn_id: ConnId, peer_id: str, reason: str, cause: str | None = None) -> None:
        """``conn_id`` no longer acts as ``peer_id``: it is told, and refused (rule 6)."""
        self.ctx.effects.append(Detach(conn_id, peer_id, reason, cause))
        self.detached[conn_id] = reason if cause is None else f"{reason}, {cause}"

    def take_back(self, row: Row, now: float) -> None:
        """A peer a connection of ours still carries, set away meanwhile (our lease
        lapsed while the store was out of reach): live here again."""
        fields: Row = {"state": "live", "away_since": None, "last_seen": now, **self._here()}
        with self.ctx.transaction():
            self.store.update_peer(row["id"], **fields)
            self.ctx.emit("peer_joined", self._event_data({**row, **fields}, resumed=True), now)
        self.ctx.effects.append(DisarmTimer("grace", row["id"]))

    def _here(self) -> Row:
        """Where a peer this broker carries is."""
        return {"host": self.ctx.host, "broker_id": self.ctx.broker_id}

    def _bind(self, conn_id: ConnId, peer_id: str) -> None:
        self.conn_of[peer_id] = conn_id
        self.peer_of[conn_id] = peer_id

    def _unbind(self, conn_id: ConnId) -> None:
        peer_id = self.peer_of.pop(conn_id)
        self.conn_of.pop(peer_id, None)

    @staticmethod
    def _event_data(row: Row, *, resumed: bool) -> dict[str, Any]:
        return {
            "peer_id": row["id"],
            "name": row["name"],
            "agent": row["agent"],
            "cwd": row["cwd"],
            "git_root": row["git_root"],
            "summary": row["summary"],
            "host": row["host"],
            "resumed": resumed,
        }
