"""Peers and their sessions.

Rules:
1. A connection becomes a peer with ``register``. The peer is ``live`` while a connection
   carries it; liveness is the connection, never a heartbeat or a pid guess.
2. When that connection drops, the peer is ``away`` for ``grace_s``; ``register`` with its
   ``resume_token`` within the grace gives back the same id, inbox and locks, and pushes the
   oldest messages not pushed yet (as many as the connection's queue safely takes). After
   the grace it is ``gone``: its locks are released and ``peer_left`` is emitted.
3. Names are unique among live and away peers (an away peer keeps its name reserved); a
   taken name gets a numeric suffix (``backend-2``). ``all``, ``cli``, ``person`` and the
   persons' names are never a peer's.
4. On a broker restart every peer it carried is set away with a fresh grace, so MCP
   servers can reconnect and resume.
5. A session may instead live as long as its agent's process (``lifetime: process``: an
   agent whose hooks speak to the mesh but that runs no MCP server). No connection carries
   it; the broker watches the pid and the session is gone the moment the process exits.
   Registering so for a pid that already has a live session attaches to that session;
   if that session is tied to the process (no connection carries it), the registration's
   workspace (``cwd``, ``git_root``, ``git_branch``, ``repo``) replaces the session's when
   it changed, with ``peer_updated``: its hooks register at every call and are the only
   ones to say where it is now. A session a connection carries keeps the workspace that
   connection registered (its MCP server owns it). A
   later registration by a connection with the same ``pid`` (the agent's MCP server)
   adopts the session: same id, name, inbox and locks, carried by that connection from
   then on. A session a connection carries is never tied to a process.
6. Other connections may attach to a live session (``peer.attach``, by the agent's pid or
   its own session id, remembered once linked) and act as it: read its inbox, take its
   locks. Closing an attached connection ends nothing; ``peer.unregister`` on it ends the
   session at once, for every connection.
7. The person at the shell is no session (see :mod:`slm_mesh.mesh.persons`): it is never
   away or gone, and is found by its id, its name, ``person`` or ``cli``. Anonymous
   connections that call ``message.subscribe`` get its messages pushed.
8. A session that asks for a fixed name held by an away session of the same agent process
   (same ``pid``: the agent's MCP server crashed and the agent started another) takes that
   session back at once, as a resume would: same id, name, inbox and locks. A resume
   token does the same for any session within its grace. A live session's name is never
   taken that way; resuming a session another connection carries moves it, and that
   connection is told (``peer.detached``).
   A connection detached so never acts as the person behind the agent's back: until it
   registers again it is refused, with -32001, every call but reads
   (``slm_mesh.mesh.core.DETACHED_MAY``);
   its client learns why from the ``peer.detached`` it read first.
9. Several brokers may share one store (PostgreSQL): each peer row says which host and
   broker carry it. A peer is connected while its own broker carries it, as that broker
   records it (``state`` live); a broker never ends a session another one carries.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

from slm_mesh.mesh.context import (
    CLI_NAME,
    STORAGE_RETRY_S,
    ArmTimer,
    ConnId,
    Context,
    Deliver,
    Detach,
    DisarmTimer,
    UnwatchProcess,
    WatchProcess,
    in_scope,
    peer_view,
)
from slm_mesh.mesh.message_views import message_view, within_budget
from slm_mesh.mesh.persons import PERSON_STATE, Persons
from slm_mesh.person import PERSON_ID
from slm_mesh.protocol.errors import InvalidParams, InvalidRequest, PeerNotFound, TooLarge
from slm_mesh.store import Row

RESERVED_NAMES = frozenset({"all", CLI_NAME, PERSON_ID})
_WORKSPACE_FIELDS = ("cwd", "git_root", "git_branch", "repo")
_REGISTER_FIELDS = ("agent", "pid", *_WORKSPACE_FIELDS)


class Sessions:
    def __init__(
        self,
        ctx: Context,
        on_gone: Callable[[str, float], None],
        process_alive: Callable[[int], bool],
    ) -> None:
        self.ctx = ctx
        self.store = ctx.store
        self._on_gone = on_gone  # releases the locks of a peer that is gone
        self._process_alive = process_alive
        self.conn_of: dict[str, ConnId] = {}  # live peer id → the connection carrying it
        self.peer_of: dict[
            ConnId, str
        ] = {}  # connection → the peer it acts as (carrier or attached)
        self.tied: dict[str, int] = {}  # peer id → pid of the process it lives as long as
        self.agent_sessions: dict[str, str] = {}  # agent's own session id → peer id
        # connection → why the peer it acted as was taken from it (rule 8), till it registers
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
        """Whether this broker carries (or last carried) the peer (rule 9)."""
        return row["broker_id"] in (None, self.ctx.broker_id)

    def connected(self, row: Row) -> bool:
        """Whether the peer is live: on this broker, carried by a connection or tied to a
        running process; on another, as that broker recorded it (rule 9)."""
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

    def _unique_name(self, wanted: str) -> str:
        # "all" is the broadcast address and "cli" the shell user: never a peer's name.
        wanted = self.persons.peer_name(wanted)
        rows = self.store.peers_in(("live", "away", PERSON_STATE))
        taken = {row["name"] for row in rows} | RESERVED_NAMES | self.persons.taken(rows)
        if wanted not in taken:
            return wanted
        n = 2
        while f"{wanted}-{n}" in taken:
            n += 1
        return f"{wanted}-{n}"

    def _check_summary(self, summary: str | None) -> None:
        limit = self.ctx.limits.max_summary_chars
        if summary is not None and len(summary) > limit:
            raise TooLarge("summary", limit, "characters")

    # -- calls -------------------------------------------------------------------------

    def register(self, conn_id: ConnId, params: dict[str, Any], now: float) -> dict[str, Any]:
        joined = self._join(conn_id, params, now)
        self.detached.pop(conn_id, None)  # a session again: no longer refused (rule 8)
        return joined

    def _join(self, conn_id: ConnId, params: dict[str, Any], now: float) -> dict[str, Any]:
        if conn_id in self.peer_of:
            raise InvalidRequest(
                f"this connection is already peer {self.peer_of[conn_id]}; "
                "call peer.unregister first"
            )
        self._check_summary(params.get("summary"))
        self.persons.conns.discard(conn_id)
        token = params.get("resume")
        if token and params["lifetime"] == "process":
            raise InvalidParams("resume", "a session tied to a process is not resumed by token")
        if token:
            row = self.store.peer_by_token(token)
            if row is not None and row["state"] not in ("gone", PERSON_STATE):
                return self._resume(conn_id, row, params, now)
        pid = params.get("pid")
        if params["lifetime"] == "process":
            return self._register_for_process(conn_id, params, now)
        if pid is not None:
            tied = [p for p, tied_pid in self.tied.items() if tied_pid == pid]
            if tied:  # the agent's MCP server adopts the session its hooks started
                return self._resume(conn_id, self.row(tied[-1]), params, now)
            same_agent = self._away_of(pid, params.get("name"))
            if same_agent is not None:  # rule 8: a restarted MCP server takes its name back
                return self._resume(conn_id, same_agent, params, now)
        return self._new_peer(conn_id, params, now)

    def _away_of(self, pid: int, name: str | None) -> Row | None:
        """The away session named ``name`` of agent process ``pid``, if any (rule 8)."""
        if not name:
            return None
        for row in self.store.peers_in(("away",)):
            if row["name"] == name and row["pid"] == pid and not self.is_live(row["id"]):
                return row
        return None

    def _new_peer(
        self, conn_id: ConnId, params: dict[str, Any], now: float, *, carried: bool = True
    ) -> dict[str, Any]:
        peer_id = secrets.token_hex(4)
        while self.store.get_peer(peer_id) is not None:
            peer_id = secrets.token_hex(4)
        name = self._unique_name(params.get("name") or params.get("agent") or "peer")
        row = {
            "id": peer_id,
            "name": name,
            **{f: params.get(f) for f in _REGISTER_FIELDS},
            "summary": params.get("summary") or "",
            "status": "active",
            "state": "live",
            "resume_token": secrets.token_urlsafe(24),
            "joined_at": now,
            "last_seen": now,
            "away_since": None,
            "host": self.ctx.host,
            "broker_id": self.ctx.broker_id,
        }
        with self.ctx.transaction():
            self.store.insert_peer(row)
            self.ctx.emit("peer_joined", self._event_data(row, resumed=False), now)
        if carried:
            self._bind(conn_id, peer_id)
        else:
            self._tie(peer_id, params["pid"])
            self.peer_of[conn_id] = peer_id
        self._remember_agent_session(peer_id, params.get("agent_session"))
        return {
            "peer_id": peer_id,
            "name": name,
            "resume_token": row["resume_token"],
            "resumed": False,
            "attached": not carried,
        }

    def _register_for_process(
        self, conn_id: ConnId, params: dict[str, Any], now: float
    ) -> dict[str, Any]:
        """``lifetime: process`` (rule 5): attach to the live session of ``pid``, take back
        an away one of that pid, or start one tied to the process."""
        pid = params.get("pid")
        if pid is None:
            raise InvalidParams("pid", "lifetime=process needs the pid of the agent's process")
        live = self._find(pid, params.get("agent_session"))
        if live is None and not self._process_alive(pid):
            raise InvalidParams("pid", f"no process {pid} is running")
        if live is not None:
            self.peer_of[conn_id] = live
            self._remember_agent_session(live, params.get("agent_session"))
            row = self.row(live)
            if live in self.tied:  # no MCP server carries it: its hooks say where it is
                row = self._follow(row, params, now)
            return {
                "peer_id": live,
                "name": row["name"],
                "resume_token": row["resume_token"],
                "resumed": False,
                "attached": True,
            }
        away = [r for r in self.store.peers_in(("away",)) if r["pid"] == pid]
        if away:  # its broker restarted, or its MCP server left: the process lives on
            row = away[-1]
            fields: dict[str, Any] = {f: params[f] for f in _REGISTER_FIELDS if f in params}
            fields.update(state="live", away_since=None, last_seen=now, **self._here())
            with self.ctx.transaction():
                self.store.update_peer(row["id"], **fields)
                row = {**row, **fields}
                self.ctx.emit("peer_joined", self._event_data(row, resumed=True), now)
            self.ctx.effects.append(DisarmTimer("grace", row["id"]))
            self._tie(row["id"], pid)
            self.peer_of[conn_id] = row["id"]
            self._remember_agent_session(row["id"], params.get("agent_session"))
            return {
                "peer_id": row["id"],
                "name": row["name"],
                "resume_token": row["resume_token"],
                "resumed": True,
                "attached": True,
            }
        return self._new_peer(conn_id, params, now, carried=False)

    def _follow(self, row: Row, params: dict[str, Any], now: float) -> Row:
        """A session tied to its process is where its agent's latest hook registered
        from (rule 5): its workspace fields changed (a ``git switch``, a ``cd`` into
        another repository) are written, with ``peer_updated``; unchanged, nothing is
        written (this runs at every hook). ``repo`` is kept when the hook gives none for
        the same ``git_root`` (the broker could not name it this time)."""
        moved = {f: params.get(f) for f in _WORKSPACE_FIELDS}
        if "repo" not in params and moved["git_root"] == row["git_root"]:
            moved["repo"] = row["repo"]
        if all(row[f] == value for f, value in moved.items()):
            return row
        with self.ctx.transaction():
            self.store.update_peer(row["id"], **moved)
            row = {**row, **moved}
            self._emit_updated(row, row["status"], now, moved)
        return row

    def attach(self, conn_id: ConnId, params: dict[str, Any]) -> dict[str, Any]:
        """Act as a live session on this connection without carrying it (rule 6).

        Raises:
            InvalidParams: neither pid nor agent_session given.
            PeerNotFound: no live session of that process or agent session.
        """
        if conn_id in self.peer_of:
            raise InvalidRequest(
                f"this connection is already peer {self.peer_of[conn_id]}; "
                "call peer.unregister first"
            )
        pid, agent_session = params.get("pid"), params.get("agent_session")
        if pid is None and agent_session is None:
            raise InvalidParams("pid", "give the agent's pid or its agent_session")
        peer_id = self._find(pid, agent_session)
        if peer_id is None:
            what = f"process {pid}" if pid is not None else f"agent session {agent_session!r}"
            raise PeerNotFound(f"no live session of {what} in the mesh", {"pid": pid})
        self.persons.conns.discard(conn_id)  # it acts as that session now, not the person
        self.peer_of[conn_id] = peer_id
        self._remember_agent_session(peer_id, agent_session)
        return self.view(self.row(peer_id))

    def _find(self, pid: int | None, agent_session: str | None) -> str | None:
        if agent_session is not None:
            peer_id = self.agent_sessions.get(agent_session)
            if peer_id is not None and self.is_live(peer_id):
                return peer_id
        return self.of_process(pid) if pid is not None else None

    def _remember_agent_session(self, peer_id: str, agent_session: str | None) -> None:
        if agent_session:
            self.agent_sessions[agent_session] = peer_id

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

    def _resume(
        self, conn_id: ConnId, row: Row, params: dict[str, Any], now: float
    ) -> dict[str, Any]:
        peer_id = row["id"]
        fields: dict[str, Any] = {f: params[f] for f in _REGISTER_FIELDS if f in params}
        if params.get("summary") is not None:
            fields["summary"] = params["summary"]
        fields.update(state="live", away_since=None, last_seen=now, **self._here())
        with self.ctx.transaction():
            self.store.update_peer(peer_id, **fields)
            row = {**row, **fields}
            self.ctx.emit("peer_joined", self._event_data(row, resumed=True), now)
        old_conn = self.conn_of.get(peer_id)
        if old_conn is not None:
            # The old connection may be half-dead; the newer one wins.
            self._unbind(old_conn)
            self._detach(old_conn, peer_id, "resumed")
        self._untie(peer_id)  # a connection carries it now (rule 5)
        self.ctx.effects.append(DisarmTimer("grace", peer_id))
        self._bind(conn_id, peer_id)
        self._remember_agent_session(peer_id, params.get("agent_session"))
        for msg in self._resume_page(peer_id):
            self.ctx.effects.append(Deliver(conn_id, message_view(msg)))
        return {
            "peer_id": peer_id,
            "name": row["name"],
            "resume_token": row["resume_token"],
            "resumed": True,
            "attached": False,
        }

    def _resume_page(self, peer_id: str) -> list[Row]:
        """The queued messages to push to a resumed peer: the oldest, as many as its
        connection's outgoing queue takes with room to spare (in items and in bytes, a body
        character taking at most 6 bytes escaped). Pushing more at once would overflow the
        queue and drop the peer again, on every resume. The rest wait in the inbox
        (``unread_left`` counts them)."""
        limits = self.ctx.limits
        rows = self.store.queued_for(peer_id, limit=max(1, limits.max_outgoing_queue // 2))
        return within_budget(rows, limits.max_outgoing_bytes // 8)

    def update(self, peer_id: str, params: dict[str, Any], now: float) -> dict[str, Any]:
        self._check_summary(params.get("summary"))
        fields = {k: params[k] for k in ("summary", "status") if k in params}
        if not fields:
            raise InvalidParams("summary", "give a summary or a status to change")
        with self.ctx.transaction():
            self.store.update_peer(peer_id, last_seen=now, **fields)
            row = self.row(peer_id)
            self._emit_updated(row, row["status"], now)
        return self.view(row)

    def list(self, caller: str | None, params: dict[str, Any]) -> dict[str, Any]:
        states = ("live", "away") if params["include_away"] else ("live",)
        rows = self.store.peers_in(states)
        scope = params["scope"]
        me = self.store.get_peer(caller) if caller else None
        anchor: Row = {"host": me["host"] if me else self.ctx.host}
        for name in ("cwd", "git_root", "repo"):
            anchor[name] = params.get(name) or (me[name] if me else None)
        if scope == "directory" and not anchor["cwd"]:
            raise InvalidParams("cwd", _no_anchor(scope, me is not None))
        if scope == "repo" and not (anchor["git_root"] or anchor["repo"]):
            raise InvalidParams("git_root", _no_anchor(scope, me is not None))
        rows = [r for r in rows if in_scope(r, scope, anchor, self.ctx.host)]
        if not params["include_self"]:
            rows = [r for r in rows if r["id"] != caller]
        if params["include_unread"]:
            unread = self.store.unread_count
            return {"peers": [{**self.view(r), "unread": unread(r["id"])} for r in rows]}
        return {"peers": [self.view(r) for r in rows]}

    def unregister(self, conn_id: ConnId, now: float) -> dict[str, Any]:
        peer_id = self.peer_of[conn_id]
        self._make_gone(peer_id, "unregistered", now, caller=conn_id)
        return {}

    # -- connection lifecycle ------------------------------------------------------------

    def disconnected(self, conn_id: ConnId, now: float) -> None:
        """The connection carrying a peer closed: the peer is away for the grace period.
        An attached connection closing changes nothing (rule 6)."""
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
        carries now is that broker's (rule 9)."""
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
        """``conn_id`` no longer acts as ``peer_id``: it is told, and refused (rule 8)."""
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


def _no_anchor(scope: str, registered: bool) -> str:
    """Why ``peer.list`` can't narrow to ``scope``, and what works instead."""
    if scope == "repo" and registered:
        return (
            "scope=repo: this session is not inside a git repository (it joined with no "
            "git_root); scope=machine or scope=directory work, or give git_root"
        )
    field_name = "git_root" if scope == "repo" else "cwd"
    return (
        f"scope={scope}: this connection is no session with a {field_name}; give "
        f"{field_name}, or use scope=machine"
    )
