"""The mesh: every rule behind the wire contract, as one synchronous object.

The broker validates params against the method table, then calls :meth:`Mesh.call` with the
connection's id and the current time; afterwards it drains :meth:`Mesh.drain` and carries
out the effects (see :mod:`slm_mesh.mesh.context`). Nothing here blocks or reads a clock, so
the whole rule set runs under test at any speed.

Every entry that may write runs in the context's call scope: where several brokers share
the store, one transaction serialised against all of them, so the rules decide on what the
store holds at that moment (see :mod:`slm_mesh.store.base`, rule 3).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from slm_mesh.config import EVENT_RETENTION_S, READ_MESSAGE_RETENTION_S, Limits
from slm_mesh.mesh.brokers import Brokers
from slm_mesh.mesh.context import (
    STORAGE_RETRY_S,
    ArmTimer,
    ConnId,
    Context,
    Effect,
    Waiter,
)
from slm_mesh.mesh.edits import Edits
from slm_mesh.mesh.locks import Locks
from slm_mesh.mesh.messages import Messages, shown_on
from slm_mesh.mesh.sessions import Sessions
from slm_mesh.mesh.shared_state import SharedState
from slm_mesh.person import PERSON_ID, identity
from slm_mesh.protocol.errors import InvalidParams, MethodNotFound, NotRegistered
from slm_mesh.protocol.table import METHODS
from slm_mesh.store import Store

# Methods whose handler wants (peer_id or None, params, now).
Handler = Callable[[ConnId, str | None, dict[str, Any], float], Any]

# Methods that only read: they need no call scope.
READ_ONLY = frozenset(
    {
        "peer.list",
        "peer.whoami",
        "state.get",
        "state.list",
        "lock.list",
        "lock.check",
        "event.read",
    }
)
# What a connection whose peer was taken from it may still call (session_table rule 6).
DETACHED_MAY = READ_ONLY | {"peer.register"}


class Mesh:
    def __init__(
        self,
        store: Store,
        limits: Limits,
        *,
        grace_s: float,
        lock_ttl_s: float,
        process_alive: Callable[[int], bool] = lambda _pid: True,
        person_name: str = PERSON_ID,
        person_login: str | None = None,
        host: str = "",
        broker_id: str = "local",
    ) -> None:
        """``process_alive(pid)`` tells whether a process runs (the broker asks the
        kernel); a session tied to a process that does not run is refused.
        ``person_name`` names the person at this machine's shell, the user
        ``person_login`` (default: the login name) whose broker this is
        (:mod:`slm_mesh.person`)."""
        person_id, shown = identity(person_name, host, shared=store.shared, login=person_login)
        self.ctx = Context(
            store,
            limits,
            grace_s=grace_s,
            lock_ttl_s=lock_ttl_s,
            person_name=shown,
            person_id=person_id,
            host=host,
            broker_id=broker_id,
        )
        self.store = store
        self._person = person_id
        self.sessions = Sessions(self.ctx, self._session_gone, process_alive)
        self.messages = Messages(self.ctx, self.sessions)
        self.state = SharedState(self.ctx)
        self.locks = Locks(self.ctx, self.sessions)
        self.edits = Edits(self.ctx, self.sessions, self.locks)
        self.brokers = Brokers(self.ctx, self.sessions, self.locks)
        self._handlers: dict[str, Handler] = {
            "peer.register": lambda c, p, a, n: self._register(c, a, n),
            "peer.attach": lambda c, p, a, n: self.sessions.attach(c, a),
            "peer.update": lambda c, p, a, n: self.sessions.update(_me(p), a, n),
            "peer.list": lambda c, p, a, n: self.sessions.list(p, a),
            "peer.whoami": lambda c, p, a, n: self.sessions.view(self.sessions.row(_me(p))),
            "peer.unregister": lambda c, p, a, n: self.sessions.unregister(c, n),
            "message.send": lambda c, p, a, n: self.messages.send(p, a, n),
            "message.inbox": lambda c, p, a, n: self.messages.inbox(p or self._person, a, n, c),
            "message.ack": lambda c, p, a, n: self.messages.ack(p or self._person, a["ids"], n, c),
            "message.subscribe": lambda c, p, a, n: self.sessions.follow_person(c),
            "state.get": lambda c, p, a, n: self.state.get(a, n),
            "state.set": lambda c, p, a, n: self.state.set(self._author(p), a, n),
            "state.delete": lambda c, p, a, n: self.state.delete(self._author(p), a, n),
            "state.list": lambda c, p, a, n: self.state.list(a, n),
            "lock.acquire": lambda c, p, a, n: self.locks.acquire(_me(p), a, n),
            "lock.release": lambda c, p, a, n: self._release(p, a, n),
            "lock.renew": lambda c, p, a, n: self.locks.renew(_me(p), a, n),
            "lock.list": lambda c, p, a, n: self.locks.list_locks(a, n),
            "lock.check": self._check,
            "file.edited": lambda c, p, a, n: self.edits.edited(_me(p), a, n),
            "event.read": lambda c, p, a, n: self.read_events(a),
        }

    @property
    def methods(self) -> frozenset[str]:
        """The methods the mesh answers; the broker answers the rest of the table."""
        return frozenset(self._handlers)

    def start(self, now: float) -> None:
        """Recover after a (re)start: live peers become away, stale locks end."""
        with self.ctx.call_scope():
            self.sessions.recover(now)
            self.locks.recover(now)
            self.edits.recover(now)

    def drain(self) -> list[Effect]:
        return self.ctx.drain()

    def call(self, conn_id: ConnId, method: str, params: dict[str, Any], now: float) -> Any:
        """Run one validated call. May return a :class:`Waiter` (``lock.acquire`` queued).

        Raises:
            MeshError: any error of the contract.
        """
        handler = self._handlers.get(method)
        if handler is None:
            raise MethodNotFound(f"method not found: {method}")
        peer_id = self.sessions.peer_of.get(conn_id)
        if peer_id is None:
            if METHODS[method].session:
                raise NotRegistered(f"{method} needs a session: call peer.register first")
            why = self.sessions.detached.get(conn_id)
            if why is not None and method not in DETACHED_MAY:
                raise NotRegistered(
                    f"{method}: this connection's session was taken from it ({why}); "
                    "call peer.register to join again (it does not act as the person)"
                )
        if method in READ_ONLY:
            return handler(conn_id, peer_id, params, now)
        with self.ctx.call_scope():
            return handler(conn_id, peer_id, params, now)

    def peer_of(self, conn_id: ConnId) -> str | None:
        return self.sessions.peer_of.get(conn_id)

    # -- things the broker's timers and connections report -------------------------------

    def disconnected(self, conn_id: ConnId, now: float) -> None:
        peer_id = self.sessions.peer_of.get(conn_id)
        carried = peer_id is not None and self.sessions.conn_of.get(peer_id) == conn_id
        try:
            with self.ctx.call_scope():
                self.sessions.disconnected(conn_id, now)
        finally:
            if carried:
                # The grace runs even if the store refused to record the peer away:
                # liveness is the connection, and the grace timer ends the session.
                self.ctx.effects.append(ArmTimer("grace", peer_id, now + self.ctx.grace_s))

    def process_exited(self, peer_id: str, now: float) -> None:
        """The process session ``peer_id`` is tied to has exited."""
        with self.ctx.call_scope():
            self.sessions.process_exited(peer_id, now)

    def timer_fired(self, kind: str, key: Any, now: float) -> None:
        """A lock's TTL or an away peer's grace ran out. If the store refuses the change,
        the timer is armed again to retry a little later."""
        try:
            with self.ctx.call_scope():
                if kind == "lock":
                    self.locks.expire(key, now)
                elif kind == "grace":
                    self.sessions.grace_over(key, now)
                else:  # pragma: no cover - the broker only arms the kinds above
                    raise ValueError(kind)
        except Exception:
            self.ctx.effects.append(ArmTimer(kind, key, now + STORAGE_RETRY_S))
            raise

    def cancel_wait(self, waiter: Waiter, now: float) -> None:
        with self.ctx.call_scope():
            self.locks.cancel_wait(waiter, now)

    # -- brokers sharing the store (see mesh/brokers.py) ----------------------------------

    def sweep(self, now: float) -> None:
        """Lapse the brokers whose lease ran out; end what their timers would have."""
        with self.ctx.call_scope():
            self.brokers.sweep(now)

    def rejoin(self, now: float) -> list[str]:
        """The link to the store is back: take back our sessions, let go of the gone."""
        with self.ctx.call_scope():
            return self.brokers.rejoin(now)

    def remote_event(self, event: dict[str, Any], now: float) -> None:
        """Another broker wrote ``event``: push, grant or let go here as it requires."""
        if event["type"] == "file_edited":
            self.edits.heard(event)  # (memory only)
            return
        if event["type"] in ("message_sent", "peer_joined") and not self.locks.mine:
            self.brokers.remote_event(event, now)  # reads only
            return
        with self.ctx.call_scope():
            self.brokers.remote_event(event, now)

    def queue_changed(self, now: float) -> None:
        """Another broker took a request out of the lock queue."""
        if self.locks.mine:
            with self.ctx.call_scope():
                self.brokers.queue_changed(now)

    def pushed(self, ids: list[int], now: float) -> None:
        self.messages.pushed(ids, now)

    def upkeep(self, now: float) -> dict[str, int]:
        """Expire state keys and prune old messages and events."""
        self.edits.prune(now)
        with self.ctx.call_scope():
            expired = self.state.expire(now)
            pruned_messages, pruned_events = self.store.prune(
                read_before=now - READ_MESSAGE_RETENTION_S,
                events_before=now - EVENT_RETENTION_S,
            )
        return {"expired_keys": expired, "messages": pruned_messages, "events": pruned_events}

    # -- events --------------------------------------------------------------------------

    def read_events(self, params: dict[str, Any]) -> dict[str, Any]:
        types = params.get("types")
        if types and "*" in types:
            types = None
        limit = params["limit"]
        rows = [self.shown(row) for row in self.store.events_after(params["after"], types, limit)]
        # A full page may have more behind it: resume from its last seq. A short page saw
        # everything there is, so the cursor can jump to the head of the log.
        last = rows[-1]["seq"] if len(rows) == limit else max(params["after"], self.last_seq())
        return {"events": rows, "last_seq": last}

    def last_seq(self) -> int:
        return self.store.last_seq()

    def shown(self, event: dict[str, Any]) -> dict[str, Any]:
        """``event`` as this machine's readers see it (see :mod:`slm_mesh.mesh.messages`,
        rule 6)."""
        return shown_on(event, self.ctx.host)

    # -- locks released by someone else ---------------------------------------------------

    def _release(self, peer_id: str | None, params: dict[str, Any], now: float) -> Any:
        if params["force"]:
            return self._release_forced(peer_id, params, now)
        if params.get("holder") is not None:
            raise InvalidParams("force", "releasing another session's lock needs force: true")
        if peer_id is None:
            raise NotRegistered(
                "lock.release needs a session: call peer.register first "
                "(or give force: true and the holder)"
            )
        return self.locks.release(peer_id, params, now)

    def _release_forced(
        self, caller: str | None, params: dict[str, Any], now: float
    ) -> dict[str, Any]:
        """Release ``holder``'s lock on ``path`` for whoever asks (the person at the shell,
        on an anonymous connection): the event names them, and the holder gets a message
        saying who released which lock, so it does not go on as if it still held it."""
        if params["all"]:
            raise InvalidParams("all", "force releases one lock: give its path and holder")
        if not params.get("path"):
            raise InvalidParams("path", "force needs the path of the lock")
        if not params.get("holder"):
            raise InvalidParams("holder", "force needs the holder (peer id or name)")
        holder = self.sessions.resolve(params["holder"])
        by = self._author(caller)
        with self.ctx.transaction():
            lock = self.locks.release_forced(caller, holder["id"], params["path"], by, now)
            if lock is None:
                return {"released": 0, "holder": holder["name"]}
            result: dict[str, Any] = {"released": 1, "holder": holder["name"]}
            if holder["id"] != caller:
                body = f"{by} released your {lock['mode']} lock on {lock['path']}"
                if params.get("reason"):
                    body += f": {params['reason']}"
                note = {"to": holder["id"], "body": body, "type": "alert"}
                result["message_id"] = self.messages.send(caller, note, now)["ids"][0]
        self.locks.grant_waiters(now)
        return result

    # -- helpers -------------------------------------------------------------------------

    def _check(
        self, conn_id: ConnId, peer_id: str | None, params: dict[str, Any], now: float
    ) -> dict[str, Any]:
        """``lock.check``, with the recent edits of other sessions when asked."""
        result = self.locks.check(peer_id, params, now)
        within = params.get("edited_within")
        if within is not None:
            held = {conflict["path"] for conflict in result["conflicts"]}
            result["edits"] = [
                edit
                for path in self.locks.checked_paths(peer_id, params)
                if path not in held
                for edit in self.edits.recent(peer_id, path, within, now)
            ]
        return result

    def _register(self, conn_id: ConnId, params: dict[str, Any], now: float) -> dict[str, Any]:
        """``peer.register``, with the event log's last seq once joined (``last_seq``): a
        session that reads events from there sees what happened since it joined."""
        return {**self.sessions.register(conn_id, params, now), "last_seq": self.last_seq()}

    def _author(self, peer_id: str | None) -> str:
        return self.sessions.row(peer_id)["name"] if peer_id else self.ctx.person_name

    def _session_gone(self, peer_id: str, now: float) -> None:
        self.locks.session_gone(peer_id, now)


def _me(peer_id: str | None) -> str:
    assert peer_id is not None  # guaranteed by the session check in Mesh.call
    return peer_id
