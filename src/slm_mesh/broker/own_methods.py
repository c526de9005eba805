"""The methods the broker answers itself rather than the mesh: the session and status
calls of the wire contract and the event subscriptions, which belong to a connection.

Each handler is ``handler(broker, conn, params)`` with validated params and returns the
result, or a coroutine for a call that waits (``event.subscribe`` with a replay).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from slm_mesh.config import VERSION
from slm_mesh.protocol.errors import MeshError, Unauthorized
from slm_mesh.protocol.openrpc import openrpc_document

from . import credentials
from .files import describe

if TYPE_CHECKING:
    from .connection import Connection
    from .server import Broker

REPLAY_PAGE = 500


def hello(broker: Broker, conn: Connection, params: dict[str, Any]) -> Any:
    if not conn.authenticated:
        if broker.token is None or not credentials.token_matches(params.get("token"), broker.token):
            raise Unauthorized("unauthorized: wrong or missing token")
        conn.authenticate()
    return {
        "version": VERSION,
        "protocol": 1,
        "session": str(conn.id),
        "peer_id": broker.mesh.peer_of(conn.id),
    }


def ping(broker: Broker, conn: Connection, params: dict[str, Any]) -> Any:
    return "pong"


def status(broker: Broker, conn: Connection, params: dict[str, Any]) -> Any:
    if broker.shared is not None:
        return _shared_status(broker)
    counts = broker.store.counts()
    result = _status(broker, counts, broker.store.last_seq(), broker.store.size_bytes())
    result["store"] = {"kind": "sqlite", "path": str(broker.settings.db_path), "available": True}
    return result


async def _shared_status(broker: Broker) -> Any:
    """Status with a shared store: what it holds if it can be reached, and whether."""
    shared = broker.shared
    assert shared is not None
    counts: dict[str, int] = {}
    size = 0
    person = broker.mesh.sessions.person_view(unread=False)
    if shared.usable():
        with contextlib.suppress(MeshError):
            # In the mesh's thread, as everything that reads the store (never on the loop).
            counts, size, person = await shared.run_sync(_figures, broker)
    result = _status(broker, counts, shared.events.cursor, size, person)
    result["store"] = shared.status()
    return result


def _figures(broker: Broker) -> tuple[dict[str, int], int, dict[str, Any]]:
    """What ``mesh.status`` reads from the store: counts, size, the person's unread."""
    store = broker.store
    return store.counts(), store.size_bytes(), broker.mesh.sessions.person_view()


def _status(
    broker: Broker,
    counts: dict[str, int],
    last_seq: int,
    size: int,
    person: dict[str, Any] | None = None,
) -> Any:
    counts.update(
        connections=len(broker.conns),
        subscribers=len(broker.subscribers),
        waiters=len(broker.waiting),
    )
    counts["last_seq"] = last_seq
    return {
        "pid": os.getpid(),
        "version": VERSION,
        "uptime_s": round(time.time() - broker.started_at, 3),
        "listeners": [describe(s) for s in broker.sockets],
        "data_dir": str(broker.settings.data_dir),
        "counts": counts,
        "db_bytes": size,
        "idle_exit_s": broker.idle_exit_s,
        "lifetime": lifetime(broker),
        "person": person if person is not None else broker.mesh.sessions.person_view(),
        "activity": broker.activity.view(time.monotonic()),
    }


def lifetime(broker: Broker) -> str:
    """How long this broker runs: ``service`` (a service manager started it on a
    connection: socket activation), ``idle-exit`` (started for an agent, or with
    ``--idle-exit``: it exits ``idle_exit_s`` after its last connection closes), or
    ``until-stopped`` (started from the shell: it runs until ``slm-mesh stop``)."""
    if broker.activated:
        return "service"
    return "until-stopped" if broker.idle_exit_s is None else "idle-exit"


def shutdown(broker: Broker, conn: Connection, params: dict[str, Any]) -> Any:
    broker.system.start_soon(broker.shutdown)
    return {}


def discover(broker: Broker, conn: Connection, params: dict[str, Any]) -> Any:
    return openrpc_document(VERSION)


def subscribe(broker: Broker, conn: Connection, params: dict[str, Any]) -> Any:
    if params.get("after") is None:
        # Nothing to replay: subscribe at once, with no task and no wait.
        types = params.get("types")
        filt = None if not types or "*" in types else frozenset(types)
        broker.subscribers[conn.id] = filt
        return {"last_seq": _last_seq(broker)}
    return _subscribe_with_replay(broker, conn, params)


def _last_seq(broker: Broker) -> int:
    """The last event handed to subscribers (with a shared store, the others' too)."""
    return broker.shared.events.cursor if broker.shared is not None else broker.store.last_seq()


async def _subscribe_with_replay(broker: Broker, conn: Connection, params: dict[str, Any]) -> Any:
    types = params.get("types")
    filt = None if not types or "*" in types else frozenset(types)
    cursor: int = params["after"]
    # Replay in pages, waiting for room in the queue; events written meanwhile land in
    # the store and are picked up by the next page. From the empty page to the
    # registration below nothing awaits, so no event can fall in between. With a shared
    # store the replay reads in the mesh's thread and stops at what subscribers were
    # handed (the shared cursor): later events reach this one once it is registered.
    shared = broker.shared
    wanted = sorted(filt) if filt else None
    while True:
        if shared is not None:
            upto = shared.events.cursor
            if cursor >= upto:
                break
            rows = await shared.run_sync(broker.store.events_after, cursor, wanted, REPLAY_PAGE)
            rows = [row for row in rows if row["seq"] <= upto]
            if not rows:
                cursor = upto
                continue
        else:
            rows = broker.store.events_after(cursor, wanted, REPLAY_PAGE)
            if not rows:
                break
        for row in rows:
            params = broker.mesh.shown(row)
            await conn.send({"jsonrpc": "2.0", "method": "event", "params": params})
        cursor = rows[-1]["seq"]
    broker.subscribers[conn.id] = filt
    return {"last_seq": _last_seq(broker)}


def wait_for_messages(broker: Broker, conn: Connection, params: dict[str, Any]) -> Any:
    return broker.message_waits.wait(broker, conn, params)


def unsubscribe(broker: Broker, conn: Connection, params: dict[str, Any]) -> Any:
    broker.subscribers.pop(conn.id, None)
    return {}


Handler = Callable[["Broker", "Connection", dict[str, Any]], Any]

HANDLERS: dict[str, Handler] = {
    "mesh.hello": hello,
    "mesh.ping": ping,
    "mesh.status": status,
    "mesh.shutdown": shutdown,
    "rpc.discover": discover,
    "event.subscribe": subscribe,
    "event.unsubscribe": unsubscribe,
    "message.wait": wait_for_messages,
}
