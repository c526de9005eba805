"""The broker: a trio shell around the mesh.

Structure (one nursery per lifetime):
- ``system``: the accept loops, lock and grace timers, the idle watchdog, upkeep and the
  signal handler. Cancelling it ends the broker.
- ``handlers``: one task per connection (``trio.serve_listeners``' handler nursery).

Each lock TTL and each away peer's grace is a cancel scope with a deadline: arming again
moves the deadline, disarming cancels the scope. The idle exit is a cancel scope whose
deadline is pushed to infinity while any connection is open. Shutdown is one deadline on
the handlers: stop accepting, send ``mesh.shutdown`` to everyone, drain for at most
``SHUTDOWN_DRAIN_S``, then cancel what is left.

A call goes to the mesh, or to :mod:`slm_mesh.broker.own_methods` for the few methods
that belong to the broker or the connection (hello, status, subscriptions...).

With a shared store (PostgreSQL), :mod:`slm_mesh.broker.shared` runs the mesh off the
event loop and keeps this broker in step with the others; ``self.shared`` is None for the
embedded SQLite store, whose calls run inline.
"""

from __future__ import annotations

import itertools
import logging
import math
import signal
import socket
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import trio

from slm_mesh.config import (
    CHECKPOINT_INTERVAL_S,
    CHECKPOINT_WAL_BYTES,
    MAINTENANCE_INTERVAL_S,
    PUSHED_FLUSH_S,
    SHUTDOWN_DRAIN_S,
    Settings,
)
from slm_mesh.mesh import (
    ArmTimer,
    Deliver,
    Detach,
    DisarmTimer,
    Effect,
    Emit,
    Granted,
    Mesh,
    ReadElsewhere,
    UnwatchProcess,
    Waiter,
    WatchProcess,
)
from slm_mesh.pids import alive as process_alive
from slm_mesh.protocol.errors import (
    InternalError,
    InvalidParams,
    MethodNotFound,
    QuotaExceeded,
    ShuttingDown,
    Unauthorized,
)
from slm_mesh.protocol.jsonrpc import Parsed
from slm_mesh.protocol.methods import validate
from slm_mesh.protocol.table import METHODS
from slm_mesh.store import StorageError, Store

from . import credentials, own_methods
from .activity import Activity
from .connection import Connection
from .message_wait import MessageWaits
from .processes import ProcessWatch
from .repos import Repositories
from .timers import Timers

if TYPE_CHECKING:
    from .shared import SharedStore

log = logging.getLogger(__name__)

_ALWAYS_ALLOWED = frozenset({"mesh.hello", "mesh.ping", "mesh.status", "rpc.discover"})


class Broker:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        listeners: list[socket.socket],
        *,
        idle_exit_s: float | None = None,
        token: str | None = None,
        activated: bool = False,
    ) -> None:
        self.settings = settings
        self.store = store
        self.mesh = Mesh(
            store,
            settings.limits,
            grace_s=settings.grace_s,
            lock_ttl_s=settings.lock_ttl_s,
            process_alive=process_alive,
            person_name=settings.person,
            host=settings.host,
            broker_id=getattr(store, "broker_id", "local"),
        )
        self.shared: SharedStore | None = None
        if store.shared:
            from .shared import SharedStore

            self.shared = SharedStore(self, store)  # type: ignore[arg-type]
        self.message_waits = MessageWaits()
        self.repos = Repositories()
        self.sockets = listeners
        self.idle_exit_s = idle_exit_s
        self.activated = activated  # took its listeners from a service manager
        self.token = token
        self.conns: dict[int, Connection] = {}
        self._ids = itertools.count(1)
        self.waiting: dict[Waiter, trio.Event] = {}
        self.subscribers: dict[int, frozenset[str] | None] = {}
        self.stopping = False
        self.started_at = time.time()
        self.activity = Activity(time.monotonic())
        self._epoch = 0.0
        self.idle_scope = trio.CancelScope()
        self.handlers_scope = trio.CancelScope()
        self.accept_scope = trio.CancelScope()
        self.all_closed = trio.Event()
        self.all_closed.set()
        self.stopped = trio.Event()
        self._flush_scheduled = False

    # -- time --------------------------------------------------------------------------

    def now(self) -> float:
        """Mesh time: seconds since the epoch, advancing with trio's clock (so tests on
        ``autojump_clock`` move it too)."""
        offset = self.shared.offset if self.shared is not None else 0.0
        return self._epoch + offset + trio.current_time()

    def _trio_time(self, at: float) -> float:
        offset = self.shared.offset if self.shared is not None else 0.0
        return at - self._epoch - offset

    # -- running -----------------------------------------------------------------------

    async def run(
        self, *, handle_signals: bool = False, task_status: Any = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Serve until shut down. ``task_status.started()`` fires once listening."""
        self._epoch = time.time() - trio.current_time()
        listeners = [trio.SocketListener(trio.socket.from_stdlib_socket(s)) for s in self.sockets]
        try:
            async with trio.open_nursery() as system:
                self.system = system
                self.timers = Timers(system, self._timer_fired)
                self.processes = ProcessWatch(system, self._process_exited)
                if self.shared is not None:
                    await self.shared.start(system)
                else:
                    self.mesh.start(self.now())
                    self._apply(self.mesh.drain())
                with self.handlers_scope:
                    async with trio.open_nursery() as handlers:
                        self.handlers = handlers
                        await system.start(self._accept, listeners)
                        system.start_soon(self._upkeep)
                        system.start_soon(self._checkpoints)
                        if self.idle_exit_s is not None:
                            system.start_soon(self._idle_watchdog)
                        if handle_signals:
                            system.start_soon(self._signals)
                        task_status.started()
                        await self.stopped.wait()
                if self.shared is not None:
                    await self.shared.stop()
                system.cancel_scope.cancel()
        finally:
            for s in self.sockets:
                s.close()
            if self.shared is not None:
                with trio.CancelScope(shield=True):
                    await self.shared.quiesce()
                self.shared.close()

    async def _accept(self, listeners: list[trio.SocketListener], task_status: Any) -> None:
        with self.accept_scope:
            await trio.serve_listeners(
                self._handle, listeners, handler_nursery=self.handlers, task_status=task_status
            )

    async def _signals(self) -> None:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for signum in signals:
                log.info("signal %s: shutting down", signal.Signals(signum).name)
                self.system.start_soon(self.shutdown)

    async def _idle_watchdog(self) -> None:
        assert self.idle_exit_s is not None
        self._touch_idle()
        with self.idle_scope:
            await trio.sleep_forever()
        log.info("idle for %.0f s: exiting", self.idle_exit_s)
        self.system.start_soon(self.shutdown)

    def _touch_idle(self) -> None:
        if self.idle_exit_s is None:
            return
        # A session tied to a process keeps the broker up as a connection does.
        busy = self.conns or self.mesh.sessions.tied
        self.idle_scope.deadline = math.inf if busy else trio.current_time() + self.idle_exit_s

    async def _upkeep(self) -> None:
        while True:
            if self.shared is not None:
                if self.shared.usable():
                    await self.shared.entry("upkeep", self.mesh.upkeep, self.now())
                await trio.sleep(MAINTENANCE_INTERVAL_S)
                continue
            try:
                self.mesh.upkeep(self.now())
            except Exception as exc:
                _log_failure("upkeep", exc)
            self._apply(self.mesh.drain())
            await trio.sleep(MAINTENANCE_INTERVAL_S)

    async def shutdown(self) -> None:
        """Stop accepting, tell every connection, drain for at most SHUTDOWN_DRAIN_S."""
        if self.stopping:
            return
        self.stopping = True
        self.accept_scope.cancel()
        for conn in list(self.conns.values()):
            conn.push("mesh.shutdown", {"reason": "broker stopping"})
            conn.stop_reading()
        with trio.move_on_after(SHUTDOWN_DRAIN_S):
            await self.all_closed.wait()
        self.handlers_scope.cancel()
        self.stopped.set()

    # -- connections -------------------------------------------------------------------

    async def _handle(self, stream: trio.SocketStream) -> None:
        kind = "unix" if stream.socket.family == socket.AF_UNIX else "tcp"
        conn = Connection(self, next(self._ids), stream, kind)
        try:
            if kind == "unix" and not credentials.same_user(stream.socket):
                log.warning("refused a connection from another uid")
                await conn.refuse(Unauthorized("unauthorized: the broker belongs to another user"))
                return
            cap = self.settings.limits.max_connections_per_uid
            if len(self.conns) >= cap:
                error = QuotaExceeded(f"too many connections (limit {cap})", {"limit": cap})
                await conn.refuse(error)
                return
            quota = self.settings.limits.max_unauthenticated_connections
            if not conn.authenticated and self._unauthenticated() >= quota:
                error = QuotaExceeded(
                    f"too many connections waiting to authenticate (limit {quota})",
                    {"limit": quota},
                )
                await conn.refuse(error)
                return
            self.conns[conn.id] = conn
            self.all_closed = trio.Event()
            self._touch_idle()
            await conn.run()
        except trio.Cancelled:
            raise
        except Exception:
            log.exception("connection %d failed", conn.id)
        finally:
            conn.closed = True
            self._forget(conn)
            await trio.aclose_forcefully(stream)

    def _unauthenticated(self) -> int:
        return sum(1 for c in self.conns.values() if not c.authenticated)

    def _forget(self, conn: Connection) -> None:
        if self.conns.pop(conn.id, None) is None:
            return
        self.subscribers.pop(conn.id, None)
        what = f"cleaning up connection {conn.id}"
        self._entry(what, self.mesh.disconnected, conn.id, self.now())
        if not self.conns:
            self.all_closed.set()
        self._touch_idle()

    def messages_pushed(self, ids: list[int]) -> None:
        self.mesh.pushed(ids, self.now())
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.system.start_soon(self._flush_pushed_soon)

    async def _flush_pushed_soon(self) -> None:
        """Write the batched "pushed" marks a moment later, in one transaction."""
        await trio.sleep(PUSHED_FLUSH_S)
        self._flush_scheduled = False
        if self.shared is not None:
            await self.shared.entry("marking messages pushed", self.store.flush_pushed)
            return
        try:
            self.store.flush_pushed()
        except Exception as exc:
            _log_failure("marking messages pushed", exc)  # kept: retried at the next flush

    async def _checkpoints(self) -> None:
        """Copy the WAL into the database from a worker thread once it has grown, so no
        commit on the event loop ever waits for a checkpoint's fsync."""
        while True:
            await trio.sleep(CHECKPOINT_INTERVAL_S)
            if self.store.wal_bytes() > CHECKPOINT_WAL_BYTES:
                try:
                    await trio.to_thread.run_sync(self.store.checkpoint_passive)
                except Exception as exc:
                    _log_failure("checkpoint", exc)

    # -- calls -------------------------------------------------------------------------

    def prepare(self, parsed: Parsed) -> Awaitable[None] | None:
        """What must be learned before this line's calls run (connection rule 6)."""
        roots = self.repos.to_learn(parsed)
        return self.repos.learn(roots) if roots else None

    def call(self, conn: Connection, name: str, raw_params: Any) -> Any:
        """Run one call without waiting: its result, or a coroutine to await for the calls
        that wait (a queued ``lock.acquire``, ``event.subscribe`` with a replay).

        Raises:
            MeshError: any error of the contract.
        """
        self.activity.count_call(time.monotonic())
        method = METHODS.get(name)
        if method is None:
            raise MethodNotFound(f"method not found: {name}")
        params = validate(method, raw_params)
        if name == "peer.register":
            params = self.repos.fill(params)  # the hooks send no repo (broker/repos.py)
        if self.stopping and name not in _ALWAYS_ALLOWED:
            raise ShuttingDown("the broker is shutting down; retry in a moment")
        own = own_methods.HANDLERS.get(name)
        if own is not None:
            return own(self, conn, params)
        if self.shared is not None:
            return self.shared.call(conn, name, params)
        try:
            result = self.mesh.call(conn.id, name, params, self.now())
        except StorageError as exc:
            log.error("%s failed: %s", name, exc)
            raise InternalError(str(exc)) from None  # what to do, without a traceback
        finally:
            self._apply(self.mesh.drain())  # what the mesh did before a failure, too
        if isinstance(result, Waiter):
            return self.wait_for_lock(result, params["wait"])
        return result

    async def mesh_call(self, conn: Connection, name: str, params: dict[str, Any]) -> Any:
        """A mesh call from a task that may wait (inline with SQLite)."""
        if self.shared is not None:
            return await self.shared.call(conn, name, params)
        try:
            return self.mesh.call(conn.id, name, params, self.now())
        except StorageError as exc:
            raise InternalError(str(exc)) from None
        finally:
            self._apply(self.mesh.drain())

    async def wait_for_lock(self, waiter: Waiter, wait_s: float) -> dict[str, Any]:
        granted = self.waiting[waiter] = trio.Event()
        try:
            if waiter.lock is None:  # (with a shared store it may be granted already)
                with trio.move_on_after(wait_s):
                    await granted.wait()
        finally:
            del self.waiting[waiter]
            if waiter.lock is None:
                if self.shared is not None:
                    with trio.CancelScope(shield=True):
                        await self.shared.entry(
                            "giving up a wait", self.mesh.cancel_wait, waiter, self.now()
                        )
                else:
                    self.mesh.cancel_wait(waiter, self.now())
                    self._apply(self.mesh.drain())
        if waiter.lock is not None:
            return {"granted": True, "lock": waiter.lock}
        if self.shared is not None:
            conflict = self.mesh.locks.conflict_for
            raise await self.shared.run_sync(conflict, waiter, self.now())
        raise self.mesh.locks.conflict_for(waiter, self.now())

    # -- effects -----------------------------------------------------------------------

    def apply_effects(self) -> None:
        """Carry out what the mesh asked for since the last time."""
        self._apply(self.mesh.drain())

    def apply(self, effects: list[Effect]) -> None:
        """Carry out ``effects``."""
        self._apply(effects)

    def fan_out(self, event: dict[str, Any]) -> None:
        """Hand an event to its subscribers (and wake who waits for messages)."""
        self._wake_message_waiters(event)
        if event["type"] == "message_sent":  # every one in the mesh, whichever broker's
            self.activity.count_messages(1, time.monotonic())
            event = self.mesh.shown(event)  # other machines' direct messages: no preview
        for conn_id, filt in list(self.subscribers.items()):
            if filt is None or event["type"] in filt:
                conn = self.conns.get(conn_id)
                if conn is not None:
                    conn.push("event", event)

    def _apply(self, effects: list[Effect]) -> None:
        for effect in effects:
            if isinstance(effect, Emit):
                if self.shared is not None:
                    self.shared.events.offer(
                        effect.event["seq"], effect.event, self.shared.broker_id
                    )
                else:
                    self.fan_out(effect.event)
            elif isinstance(effect, Deliver):
                conn = self.conns.get(effect.conn_id)
                if conn is not None:
                    conn.push("message", effect.message, effect.message["id"])
            elif isinstance(effect, ArmTimer):
                self.timers.arm(effect.kind, effect.key, self._trio_time(effect.at))
            elif isinstance(effect, DisarmTimer):
                self.timers.disarm(effect.kind, effect.key)
            elif isinstance(effect, Granted):
                event = self.waiting.get(effect.waiter)
                if event is not None:
                    event.set()
            elif isinstance(effect, Detach):
                # The mesh already unbound it; the connection carries on anonymous, and
                # is told so (it may hold a resume token it should no longer trust).
                conn = self.conns.get(effect.conn_id)
                if conn is not None:
                    detached = {"peer_id": effect.peer_id, "reason": effect.reason}
                    if effect.cause is not None:
                        detached["cause"] = effect.cause
                    conn.push("peer.detached", detached)
            elif isinstance(effect, ReadElsewhere):
                conn = self.conns.get(effect.conn_id)
                if conn is not None:
                    read = {
                        "peer_id": effect.peer_id,
                        "ids": list(effect.ids),
                        "unread_left": effect.unread_left,
                    }
                    conn.push("message.read", read)
            elif isinstance(effect, WatchProcess):
                self.processes.watch(effect.peer_id, effect.pid)
                self._touch_idle()
            elif isinstance(effect, UnwatchProcess):
                self.processes.unwatch(effect.peer_id)
                self._touch_idle()
            else:  # pragma: no cover
                raise InvalidParams("effect", repr(effect))

    def _wake_message_waiters(self, event: dict[str, Any]) -> None:
        data = event["data"]
        if event["type"] == "message_sent":
            for peer_id in data["recipients"]:
                self.message_waits.wake(peer_id)
        elif event["type"] == "peer_left":
            self.message_waits.wake(data["peer_id"])

    def _process_exited(self, peer_id: str) -> None:
        what = f"ending the session of {peer_id} (its process exited)"
        self._entry(what, self.mesh.process_exited, peer_id, self.now())

    def _timer_fired(self, kind: str, key: Any) -> None:
        # (A failed timer re-arms itself to retry.)
        self._entry(f"{kind} timer for {key!r}", self.mesh.timer_fired, kind, key, self.now())

    def _entry(self, what: str, fn: Callable[..., Any], *args: Any) -> None:
        """A mesh entry nobody waits on (a closed connection, an exited process, a timer):
        on the shared store's thread, or here on SQLite with its effects carried out at
        once; a failure is logged as ``what`` failing."""
        if self.shared is not None:
            self.system.start_soon(self.shared.entry, what, fn, *args)
            return
        try:
            fn(*args)
        except Exception as exc:
            _log_failure(what, exc)
        self._apply(self.mesh.drain())


def _log_failure(what: str, exc: Exception) -> None:
    """A storage failure is said in one line (it repeats while the disk is full); anything
    else is a bug and gets its traceback."""
    if isinstance(exc, StorageError):
        log.error("%s failed: %s", what, exc)
    else:
        log.error("%s failed", what, exc_info=exc)
