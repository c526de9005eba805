"""A test bench for the mesh rules: the broker's part played synchronously.

:class:`Bench` holds a :class:`Mesh` on an in-memory store, a virtual clock (``now``) and a
record of every effect the mesh asked for. Calls go through the method table exactly as the
broker sends them (``validate`` fills the defaults), so a test reads like a session on the
wire. Timers are kept the way the broker keeps them (one per kind and key; arming again
moves the deadline; disarming drops it), and :meth:`Bench.advance` fires the due ones in
deadline order, as the broker's cancel scopes would.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from slm_mesh.config import Limits
from slm_mesh.mesh import (
    ArmTimer,
    Deliver,
    Detach,
    DisarmTimer,
    Effect,
    Emit,
    Granted,
    Mesh,
    UnwatchProcess,
    Waiter,
    WatchProcess,
)
from slm_mesh.protocol.methods import validate
from slm_mesh.protocol.table import METHODS
from slm_mesh.store import Store

GRACE_S = 30.0
LOCK_TTL_S = 600.0
T0 = 1_000_000.0
PERSON = "dave"  # the person at the shell in these tests


@dataclass(frozen=True)
class Peer:
    conn: int
    peer_id: str
    name: str
    token: str


class Bench:
    def __init__(
        self,
        store: Store | None = None,
        *,
        limits: Limits | None = None,
        grace_s: float = GRACE_S,
        lock_ttl_s: float = LOCK_TTL_S,
        now: float = T0,
        host: str = "",
        broker_id: str = "local",
    ) -> None:
        self.store = store if store is not None else Store.open(None)
        self.exited: set[int] = set()  # pids the bench's "kernel" says are not running
        self.mesh = Mesh(
            self.store,
            limits or Limits(),
            grace_s=grace_s,
            lock_ttl_s=lock_ttl_s,
            process_alive=lambda pid: pid not in self.exited,
            person_name=PERSON,
            host=host,
            broker_id=broker_id,
        )
        self.watched: dict[str, int] = {}  # peer id → pid, as the broker would watch them
        self.now = now
        self.log: list[Effect] = []  # every effect since the last take()
        self.timers: dict[tuple[str, Any], float] = {}
        self._conns = 0

    # -- driving the mesh ----------------------------------------------------------------

    def call(self, conn: int, method: str, **params: Any) -> Any:
        """One call as the broker makes it: validated params, the bench's time."""
        try:
            return self.mesh.call(conn, method, validate(METHODS[method], params), self.now)
        finally:
            self._collect()

    def new_conn(self) -> int:
        self._conns += 1
        return self._conns

    def register(self, name: str | None = None, *, cwd: str = "/r", **params: Any) -> Peer:
        conn = self.new_conn()
        if name is not None:
            params["name"] = name
        out = self.call(conn, "peer.register", cwd=cwd, **params)
        return Peer(conn, out["peer_id"], out["name"], out["resume_token"])

    def resume(self, peer: Peer, **params: Any) -> Peer:
        """Register on a fresh connection with ``peer``'s resume token."""
        conn = self.new_conn()
        params.setdefault("cwd", "/r")
        out = self.call(conn, "peer.register", resume=peer.token, **params)
        return Peer(conn, out["peer_id"], out["name"], out["resume_token"])

    def disconnect(self, conn: int) -> None:
        self.mesh.disconnected(conn, self.now)
        self._collect()

    def fire(self, kind: str, key: Any) -> None:
        """The broker's timer for ``(kind, key)`` fired now."""
        self.timers.pop((kind, key), None)
        self.mesh.timer_fired(kind, key, self.now)
        self._collect()

    def advance(self, seconds: float) -> None:
        """Let ``seconds`` pass, firing each due timer at its deadline, earliest first."""
        until = self.now + seconds
        while True:
            due = [(at, tk) for tk, at in self.timers.items() if at <= until]
            if not due:
                break
            at, (kind, key) = min(due, key=lambda d: d[0])
            self.now = max(self.now, at)
            self.fire(kind, key)
        self.now = until

    def exit_process(self, pid: int) -> None:
        """Process ``pid`` exits: the broker tells the mesh for each session tied to it."""
        self.exited.add(pid)
        for peer_id in [p for p, watched in self.watched.items() if watched == pid]:
            del self.watched[peer_id]
            self.mesh.process_exited(peer_id, self.now)
            self._collect()

    def cancel_wait(self, waiter: Waiter) -> None:
        self.mesh.cancel_wait(waiter, self.now)
        self._collect()

    def _collect(self) -> None:
        for effect in self.mesh.drain():
            self.log.append(effect)
            if isinstance(effect, ArmTimer):
                self.timers[(effect.kind, effect.key)] = effect.at
            elif isinstance(effect, DisarmTimer):
                self.timers.pop((effect.kind, effect.key), None)
            elif isinstance(effect, WatchProcess):
                self.watched[effect.peer_id] = effect.pid
            elif isinstance(effect, UnwatchProcess):
                self.watched.pop(effect.peer_id, None)

    # -- reading what happened -----------------------------------------------------------

    def peer_writes(self) -> list[dict[str, Any]]:
        """From now on, the fields of every ``update_peer`` the store is asked for."""
        writes: list[dict[str, Any]] = []
        update_peer = self.store.update_peer

        def counting(peer_id: str, **fields: Any) -> None:
            writes.append(fields)
            update_peer(peer_id, **fields)

        self.store.update_peer = counting  # type: ignore[method-assign]
        return writes

    def take(self) -> list[Effect]:
        """The effects since the last take, and forget them."""
        out, self.log = self.log, []
        return out

    def events(self, type_: str | None = None) -> list[dict[str, Any]]:
        """Events emitted since the last take (optionally of one type), oldest first."""
        return [
            e.event
            for e in self.log
            if isinstance(e, Emit) and (type_ is None or e.event["type"] == type_)
        ]

    def delivered(self, conn: int | None = None) -> list[dict[str, Any]]:
        return [
            e.message
            for e in self.log
            if isinstance(e, Deliver) and (conn is None or e.conn_id == conn)
        ]

    def granted(self) -> list[Waiter]:
        return [e.waiter for e in self.log if isinstance(e, Granted)]

    def detached(self) -> list[int]:
        return [e.conn_id for e in self.log if isinstance(e, Detach)]

    def peer_state(self, peer_id: str) -> str:
        row = self.store.get_peer(peer_id)
        assert row is not None
        return str(row["state"])

    def lock_paths(self) -> list[tuple[str, str, str]]:
        """(path, holder name, mode) of every lock that lock.list shows."""
        locks = self.call(0, "lock.list")["locks"]
        return [(lk["path"], lk["holder"], lk["mode"]) for lk in locks]
