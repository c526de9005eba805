"""The events of a store several brokers share (PostgreSQL), heard and handed on.

Rules:
1. Events reach subscribers in ``seq`` order, from this broker's transactions and the
   others' (``NOTIFY``) alike, each once; a gap (a notification lost, or a sequence number
   a rolled-back transaction used) is filled from the store.
2. Another broker's event that concerns this one (a message to a peer it carries, a lock
   that ended while it has callers queued, ...) goes to :meth:`Mesh.remote_event`, in
   order, from one task; one heard while the store can't be used, once it is back.
"""

from __future__ import annotations

import json
import logging
import math
from typing import TYPE_CHECKING, Any

import trio

from slm_mesh.mesh import Deliver
from slm_mesh.mesh.message_views import message_view
from slm_mesh.protocol.errors import StoreUnavailable
from slm_mesh.store.errors import StoreUnreachable
from slm_mesh.store.postgresql.liveness import Listener

if TYPE_CHECKING:
    from .shared import SharedStore

log = logging.getLogger(__name__)

RECONNECT_MAX_S = 5.0
CATCH_UP_PAGE = 500


class SharedEvents:
    """What this broker hears of the others, and hands on (see the rules)."""

    def __init__(self, shared: SharedStore) -> None:
        self.shared = shared
        self.broker = shared.broker
        self.store = shared.store
        self.broker_id = shared.broker_id
        self.listener = Listener(shared.store.url, shared.store.schema)
        self.cursor = 0  # the last event handed to subscribers (rule 1)
        self._early: dict[int, tuple[dict[str, Any], str, dict[str, Any] | None]] = {}
        self._catching_up = False
        self._remote_in, self._remote_out = trio.open_memory_channel[Any](math.inf)
        self._postponed: list[Any] = []  # heard while the store could not be used (rule 2)

    async def rejoined(self) -> None:
        """The store is back: catch up on what was missed, and handle what was postponed."""
        await self._catch_up()
        if self._postponed:
            self._remote_in.send_nowait(None)  # (a look at the lock queue, harmless)

    def close(self) -> None:
        """Close the listener's connection."""
        self.listener.close()

    async def listen(self, fd: int) -> None:
        """Hear the others' notifications on the listener's connection ``fd``; open it
        again when it drops, and catch up on what was missed meanwhile."""
        delay = 0.1
        while True:
            try:
                while True:
                    await trio.lowlevel.wait_readable(fd)
                    for payload in self.listener.drain():
                        self._heard(payload)
            except StoreUnreachable as exc:
                self.shared.lost(str(exc))
            while True:
                await trio.sleep(delay)
                delay = min(delay * 2, RECONNECT_MAX_S)
                try:
                    fd = await trio.to_thread.run_sync(self.listener.open)
                except StoreUnreachable:
                    continue
                delay = 0.1
                self.broker.system.start_soon(self._catch_up)
                break

    def _heard(self, payload: str) -> None:
        try:
            note = json.loads(payload)
        except ValueError:
            log.warning("ignored a notification that is not JSON: %.80r", payload)
            return
        origin = note.get("b")
        if "w" in note:
            if origin != self.broker_id and self.broker.mesh.locks.mine:
                self._remote_in.send_nowait(None)
            return
        event = note.get("e")
        if event is not None:
            event["seq"] = note["s"]
        self.offer(int(note["s"]), event, origin, note.get("m"))

    def offer(
        self,
        seq: int,
        event: dict[str, Any] | None,
        origin: str,
        shared: dict[str, Any] | None = None,
    ) -> None:
        """An event was written (here, or heard of, with what the messages it reports
        share): hand it on in order (rule 1)."""
        if seq <= self.cursor:
            return
        if event is not None and seq == self.cursor + 1:
            self._hand_on(event, origin, shared)
            while (nxt := self._early.pop(self.cursor + 1, None)) is not None:
                self._hand_on(*nxt)
            return
        if event is not None:
            self._early[seq] = (event, origin, shared)
        if not self._catching_up:
            self._catching_up = True
            self.broker.system.start_soon(self._catch_up)

    def _hand_on(
        self, event: dict[str, Any], origin: str, shared: dict[str, Any] | None = None
    ) -> None:
        self.cursor = event["seq"]
        self.broker.fan_out(event)
        if origin == self.broker_id:
            return
        if shared is not None and event["type"] == "message_sent":
            self._push_heard(event["data"], shared)  # all a send asks of another broker
            return
        if self._concerns_us(event):
            self._remote_in.send_nowait(event)

    def _push_heard(self, data: dict[str, Any], shared: dict[str, Any]) -> None:
        """Push the messages of another broker's send to the peers we carry and to those
        following our person, from what the notification said (no store round trip)."""
        conns_of = self.broker.mesh.sessions.conns_of
        effects: list[Any] = []
        for message_id, peer_id in zip(data["ids"], data["recipients"], strict=True):
            conns = conns_of(peer_id)
            if conns:
                row = {**shared, "id": message_id, "recipient_id": peer_id, "status": "queued"}
                message = message_view(row)
                effects.extend(Deliver(conn, message) for conn in conns)
        self.broker.apply(effects)

    def _concerns_us(self, event: dict[str, Any]) -> bool:
        """Whether another broker's event may ask something of this one (rule 2)."""
        sessions = self.broker.mesh.sessions
        kind, data = event["type"], event["data"]
        if kind == "message_sent":
            return any(sessions.conns_of(peer_id) for peer_id in data["recipients"])
        if kind == "file_edited":
            return True  # remembered for the edit guard (mesh/edits.py)
        if kind in ("peer_left", "peer_joined") and data["peer_id"] in sessions.peer_of.values():
            return True
        return bool(self.broker.mesh.locks.mine) and kind.startswith(("lock_", "peer_left"))

    async def _catch_up(self) -> None:
        """Read what was missed from the store, in order (rule 1)."""
        self._catching_up = True
        try:
            while True:
                rows = await self.shared.run_sync(
                    self.store.events_with_origin, self.cursor, None, CATCH_UP_PAGE
                )
                for row in rows:
                    if row["seq"] > self.cursor:
                        origin = row.pop("origin")
                        self._hand_on(row, origin)
                for seq in [s for s in self._early if s <= self.cursor]:
                    del self._early[seq]
                while (nxt := self._early.pop(self.cursor + 1, None)) is not None:
                    self._hand_on(*nxt)
                if len(rows) < CATCH_UP_PAGE and not self._early:
                    return
        except StoreUnavailable:
            pass
        finally:
            self._catching_up = False

    async def run_remote(self) -> None:
        """Hand another broker's events that concern this one to the mesh (rule 2)."""
        mesh = self.broker.mesh
        async for first in self._remote_out:
            batch, self._postponed = [*self._postponed, first], []
            while True:
                try:
                    batch.append(self._remote_out.receive_nowait())
                except trio.WouldBlock:
                    break
            if not self.shared.usable():
                # Handed on already (the cursor is past them): done once back (rejoined).
                self._postponed = batch
                continue

            def handle(items: list[Any], now: float) -> None:
                for item in items:
                    if item is None:
                        mesh.queue_changed(now)
                    else:
                        mesh.remote_event(item, now)

            await self.shared.entry("another broker's events", handle, batch, self.broker.now())
