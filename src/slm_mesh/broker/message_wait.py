"""``message.wait``: a call that returns when its session has unread messages.

Rules:
1. It answers at once with the unread messages there are (as ``message.inbox`` would,
   ``reason: message``); with none, it waits for the next message to the session.
2. One waiter per session: a newer ``message.wait`` of the same session ends the older one
   (``reason: replaced``, no messages). So does the session's end (``gone``) and the
   ``timeout`` (``timeout``).
3. It never answers with a message that was read meanwhile (by the inbox, an ack, a hook):
   it reads the inbox again each time it is woken.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import trio

from slm_mesh.protocol.errors import NotRegistered
from slm_mesh.protocol.methods import validate
from slm_mesh.protocol.table import METHODS

if TYPE_CHECKING:
    from .connection import Connection
    from .server import Broker


@dataclass(eq=False)
class _Waiter:
    woken: trio.Event = field(default_factory=trio.Event)
    replaced: bool = False


class MessageWaits:
    def __init__(self) -> None:
        self._by_peer: dict[str, _Waiter] = {}

    def __len__(self) -> int:
        return len(self._by_peer)

    def wake(self, peer_id: str) -> None:
        """Something happened to ``peer_id`` (a message, its end): its waiter looks again."""
        waiter = self._by_peer.get(peer_id)
        if waiter is not None:
            waiter.woken.set()

    async def wait(self, broker: Broker, conn: Connection, params: dict[str, Any]) -> Any:
        peer_id = broker.mesh.peer_of(conn.id)
        if peer_id is None:
            raise NotRegistered("message.wait needs a session: call peer.register first")
        older = self._by_peer.get(peer_id)
        if older is not None:
            older.replaced = True
            older.woken.set()
        waiter = self._by_peer[peer_id] = _Waiter()
        inbox = validate(
            METHODS["message.inbox"],
            {k: params[k] for k in ("limit", "mark_read", "max_chars") if k in params},
        )
        try:
            with trio.move_on_after(params["timeout"]):
                while True:
                    # A new event before looking: a wake that comes while the inbox is
                    # read (in a thread, with a shared store) is not lost.
                    waiter.woken = trio.Event()
                    if waiter.replaced:
                        return await self._ended(broker, peer_id, "replaced")
                    if broker.mesh.peer_of(conn.id) != peer_id:
                        return {"messages": [], "unread_left": 0, "reason": "gone"}
                    found = await broker.mesh_call(conn, "message.inbox", inbox)
                    if found["messages"]:
                        return {**found, "reason": "message"}
                    await waiter.woken.wait()
            return await self._ended(broker, peer_id, "timeout")
        finally:
            if self._by_peer.get(peer_id) is waiter:
                del self._by_peer[peer_id]

    @staticmethod
    async def _ended(broker: Broker, peer_id: str, reason: str) -> dict[str, Any]:
        if broker.shared is not None:
            unread = await broker.shared.run_sync(broker.store.unread_count, peer_id)
        else:
            unread = broker.store.unread_count(peer_id)
        return {"messages": [], "unread_left": unread, "reason": reason}
