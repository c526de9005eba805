"""The broker connection behind ``slm-mesh top``: snapshots, the event stream, reconnects.

Rules:
1. It only connects, never starts a broker (like every command but bare ``slm-mesh`` and
   ``start``). With no broker it says so in the view and tries again every
   :data:`RETRY_S`, so the screen comes back by itself when a broker does.
2. On each connection: ``mesh.status``; the last :data:`BACKLOG` events, to fill the
   message and event panes (only at the first connection, or after a gap too long to
   replay); ``peer.list`` and ``lock.list``; then ``event.subscribe`` with ``after`` set to
   the last event seen, so the broker replays whatever happened since and nothing falls in
   between (see the rules of :mod:`slm_mesh.top.model`).
3. Events are the live source. A slow refresh (every :data:`REFRESH_S`, and at once after a
   peer joins) re-reads status, peers and locks for what no event carries: figures, unread
   counts going down, waiters, a new peer's branch. Those calls of its own are counted and
   left out of the header's calls/s, which is the mesh's traffic, not top's polling.
4. It connects anonymously, as the person at the shell (:mod:`slm_mesh.person`): what is
   sent or released from here is the person's, not a peer's, and ``top`` never shows up
   among the peers it watches.
5. A broker whose answers lack what the view reads (a ``mesh.status`` without the counts,
   a method or param it does not know: an older slm-mesh) ends the feed with
   :class:`IncompatibleBroker`, saying its version and what to do, rather than a
   traceback or a retry that can never succeed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import anyio

from slm_mesh.client.address import BrokerUnreachable
from slm_mesh.client.aio import ConnectionLost, MeshClient
from slm_mesh.config import VERSION, Settings
from slm_mesh.protocol.errors import InvalidParams, MeshError, MethodNotFound, StoreUnavailable
from slm_mesh.top.model import MeshView

log = logging.getLogger(__name__)

CLIENT_NAME = f"slm-mesh-top/{VERSION}"
BACKLOG = 100
REFRESH_S = 2.0
RETRY_S = 1.0
CONNECT_TIMEOUT_S = 2.0


class NotConnected(Exception):
    """An action was asked for while no broker is connected."""


class IncompatibleBroker(Exception):
    """The broker does not answer what the view reads (rule 5)."""

    def __init__(self, version: object) -> None:
        super().__init__(
            f"incompatible broker (version {version}; this is {VERSION}): upgrade or restart "
            "it (`slm-mesh stop`, then `slm-mesh`)"
        )


def check_status(status: object) -> dict[str, Any]:
    """``status`` if it has what the view reads of ``mesh.status``.

    Raises:
        IncompatibleBroker: it does not (rule 5).
    """
    if isinstance(status, dict):
        counts = status.get("counts")
        known = isinstance(counts, dict) and isinstance(counts.get("last_seq"), int)
        if known and isinstance(status.get("pid"), int) and "uptime_s" in status:
            return status
    version = status.get("version", "unknown") if isinstance(status, dict) else "unknown"
    raise IncompatibleBroker(version)


class Feed:
    """Keeps ``view`` in step with the broker; calls ``changed`` after every change."""

    def __init__(self, settings: Settings, view: MeshView, changed: Callable[[], None]) -> None:
        self.settings = settings
        self.view = view
        self.changed = changed
        self.client: MeshClient | None = None
        self._peers_wanted = anyio.Event()
        self.own_calls = 0  # calls of its own following made so far (rule 3)

    async def run(self) -> None:
        """Follow the mesh until cancelled, through any number of broker restarts."""
        while True:
            problem = await self._one_connection()
            self.view.set_disconnected(problem)
            self.changed()
            await anyio.sleep(RETRY_S)

    async def _one_connection(self) -> str:
        """Follow one connection to its end; say why it ended (or never began)."""
        try:
            async with MeshClient.open(
                self.settings, client_name=CLIENT_NAME, connect_timeout=CONNECT_TIMEOUT_S
            ) as client:
                self.client = client
                try:
                    return await self._follow(client)
                finally:
                    self.client = None
        except BrokerUnreachable:
            return "broker stopped" if self.view.status is not None else "no broker running"
        except ConnectionLost:
            return "broker stopped"
        except MeshError as exc:
            return f"the broker refused: {exc}"
        except OSError as exc:
            return f"can't reach the broker: {exc}"

    async def _ask(
        self, client: MeshClient, method: str, params: dict[str, Any] | None = None
    ) -> Any:
        """One call of top's own following (rule 3: counted, so calls/s leaves it out)."""
        self.own_calls += 1
        return await client.call(method, params)

    async def _follow(self, client: MeshClient) -> str:
        status = check_status(await self._ask(client, "mesh.status"))
        try:
            return await self._follow_from(client, status)
        except (MethodNotFound, InvalidParams) as exc:  # what top asks is fixed (rule 5)
            raise IncompatibleBroker(status.get("version", "unknown")) from exc

    async def _follow_from(self, client: MeshClient, status: dict[str, Any]) -> str:
        self.view.set_connected(status, at=anyio.current_time(), own_calls=self.own_calls)
        head: int = status["counts"]["last_seq"]
        if self.view.last_seq == 0 or head - self.view.last_seq > BACKLOG:
            # First connection, or away too long to replay: list the latest events only
            # (the snapshots below are newer than all of them).
            page = await self._ask(
                client, "event.read", {"after": max(head - BACKLOG, 0), "limit": BACKLOG}
            )
            self.view.add_backlog(page["events"])
        after = self.view.last_seq
        await self._snapshot(client)
        await self._ask(client, "event.subscribe", {"after": after})
        self.changed()
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(self._refresh, client)
            async for method, params in client.notifications:
                if method == "event":
                    if self.view.apply(params):
                        self._peers_wanted.set()
                    self.changed()
                elif method == "mesh.store" and isinstance(params, dict):
                    self.view.store_changed(params)
                    self.changed()
                elif method == "mesh.shutdown":
                    break
            tasks.cancel_scope.cancel()
        return "broker stopped"

    async def _snapshot(self, client: MeshClient) -> None:
        peers = await self._ask(client, "peer.list", {"include_away": True, "include_unread": True})
        locks = await self._ask(client, "lock.list")
        self.view.set_peers(peers["peers"])
        self.view.set_locks(locks["locks"])

    async def _refresh(self, client: MeshClient) -> None:
        """Rule 3. A call that fails here means the connection is going (the stream of
        notifications ends too, and :meth:`_follow` says why), but for a shared store out
        of reach (-32011): the next round tries again."""
        while True:
            with anyio.move_on_after(REFRESH_S):
                await self._peers_wanted.wait()
            self._peers_wanted = anyio.Event()
            try:
                status = await self._ask(client, "mesh.status")
                self.view.set_status(status, at=anyio.current_time(), own_calls=self.own_calls)
                await self._snapshot(client)
            except StoreUnavailable as exc:
                log.debug("refresh postponed: %s", exc)
            except (ConnectionLost, MeshError) as exc:
                log.debug("refresh failed: %s", exc)
                return
            self.changed()

    # -- what the person does --------------------------------------------------------------

    def _client(self) -> MeshClient:
        client = self.client
        if client is None or not client.connected:
            raise NotConnected("the broker is not running")
        return client

    async def send(self, to: str, body: str) -> dict[str, Any]:
        """``message.send`` from the person (``to``: a peer id or name, or ``all``)."""
        result: dict[str, Any] = await self._client().call("message.send", {"to": to, "body": body})
        return result

    async def release(self, path: str, holder: str, reason: str | None = None) -> dict[str, Any]:
        """Release ``holder``'s lock on ``path`` as the person (``lock.release`` with force);
        the broker tells the holder."""
        params: dict[str, Any] = {"path": path, "holder": holder, "force": True}
        if reason:
            params["reason"] = reason
        result: dict[str, Any] = await self._client().call("lock.release", params)
        return result
