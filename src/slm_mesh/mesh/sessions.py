"""How a connection becomes a session, or acts as one: register, resume, adopt, attach;
and the calls on sessions (``peer.update``, ``peer.list``). What is live, away or gone,
and how a session ends, is :mod:`slm_mesh.mesh.session_table`.

Rules:
1. A connection becomes a peer with ``register``. A peer whose connection dropped is away
   for the grace (session_table rule 2); ``register`` with its ``resume_token`` within the
   grace gives back the same id, inbox and locks, and pushes the oldest messages not
   pushed yet (as many as the connection's queue safely takes).
2. Names are unique among live and away peers (an away peer keeps its name reserved); a
   taken name gets a numeric suffix (``backend-2``). ``all``, ``cli``, ``person`` and the
   persons' names are never a peer's.
3. A session may instead live as long as its agent's process (``lifetime: process``: an
   agent whose hooks speak to the mesh but that runs no MCP server; session_table rule 4).
   Registering so for a pid that already has a live session attaches to that session;
   if that session is tied to the process (no connection carries it), the registration's
   workspace (``cwd``, ``git_root``, ``git_branch``, ``repo``) replaces the session's when
   it changed, with ``peer_updated``: its hooks register at every call and are the only
   ones to say where it is now. A session a connection carries keeps the workspace that
   connection registered (its MCP server owns it). A
   later registration by a connection with the same ``pid`` (the agent's MCP server)
   adopts the session: same id, name, inbox and locks, carried by that connection from
   then on. A session a connection carries is never tied to a process.
4. Other connections may attach to a live session (``peer.attach``, by the agent's pid or
   its own session id, remembered once linked) and act as it: read its inbox, take its
   locks (session_table rule 5: what closing one, or ``peer.unregister`` on it, does).
5. A session that asks for a fixed name held by an away session of the same agent process
   (same ``pid``: the agent's MCP server crashed and the agent started another) takes that
   session back at once, as a resume would: same id, name, inbox and locks. A resume
   token does the same for any session within its grace. A live session's name is never
   taken that way; resuming a session another connection carries moves it, and that
   connection is told (``peer.detached``, session_table rule 6).
6. A session a connection carries says where it is itself: ``peer.update`` with
   ``git_branch`` (its MCP server saw the repository switch branch) writes the branch when
   it changed, with ``peer_updated`` carrying the workspace fields as rule 3's; an
   unchanged one writes nothing and tells no one.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

from slm_mesh.mesh.context import (
    CLI_NAME,
    ConnId,
    Context,
    Deliver,
    DisarmTimer,
    in_scope,
)
from slm_mesh.mesh.message_views import message_view, within_budget
from slm_mesh.mesh.persons import PERSON_STATE
from slm_mesh.mesh.session_table import SessionTable
from slm_mesh.person import PERSON_ID
from slm_mesh.protocol.errors import InvalidParams, InvalidRequest, PeerNotFound, TooLarge
from slm_mesh.protocol.table import WORKSPACE_FIELDS
from slm_mesh.store import Row

RESERVED_NAMES = frozenset({"all", CLI_NAME, PERSON_ID})
_REGISTER_FIELDS = ("agent", "pid", *WORKSPACE_FIELDS)


class Sessions(SessionTable):
    """Peers and their sessions: the table (:class:`SessionTable`) and the calls that join
    it (see the rules)."""

    def __init__(
        self,
        ctx: Context,
        on_gone: Callable[[str, float], None],
        process_alive: Callable[[int], bool],
    ) -> None:
        super().__init__(ctx, on_gone)
        self._process_alive = process_alive

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
        # A session again: no longer refused (session_table rule 6).
        self.detached.pop(conn_id, None)
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
            if same_agent is not None:  # rule 5: a restarted MCP server takes its name back
                return self._resume(conn_id, same_agent, params, now)
        return self._new_peer(conn_id, params, now)

    def _away_of(self, pid: int, name: str | None) -> Row | None:
        """The away session named ``name`` of agent process ``pid``, if any (rule 5)."""
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
        """``lifetime: process`` (rule 3): attach to the live session of ``pid``, take back
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
        from (rule 3): its workspace fields changed (a ``git switch``, a ``cd`` into
        another repository) are written, with ``peer_updated``; unchanged, nothing is
        written (this runs at every hook). ``repo`` is kept when the hook gives none for
        the same ``git_root`` (the broker could not name it this time)."""
        moved = {f: params.get(f) for f in WORKSPACE_FIELDS}
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
        """Act as a live session on this connection without carrying it (rule 4).

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
        self._untie(peer_id)  # a connection carries it now (rule 3)
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
        """``peer.update`` (rule 6): the summary and status as given; ``git_branch`` only
        when it changed, with the session's workspace in the ``peer_updated`` as
        :meth:`_follow` gives it. Only an unchanged branch to change: nothing written."""
        self._check_summary(params.get("summary"))
        fields: dict[str, Any] = {k: params[k] for k in ("summary", "status") if k in params}
        moved: dict[str, Any] | None = None
        if "git_branch" in params:
            row = self.row(peer_id)
            if params["git_branch"] != row["git_branch"]:
                moved = {f: row[f] for f in WORKSPACE_FIELDS}
                moved["git_branch"] = fields["git_branch"] = params["git_branch"]
            elif not fields:
                return self.view(row)
        if not fields:
            raise InvalidParams("summary", "give a summary, a status or a git_branch to change")
        with self.ctx.transaction():
            self.store.update_peer(peer_id, last_seen=now, **fields)
            row = self.row(peer_id)
            self._emit_updated(row, row["status"], now, moved)
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
