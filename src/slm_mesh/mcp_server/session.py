"""The MCP server's one peer session at the broker: the calls it makes as that peer, and
how many messages wait unread for it. The connection under it, its registration, its
reconnects and its leaving are :mod:`slm_mesh.mcp_server.link`'s.

Rules:
1. Tool calls wait for the registration (bounded, :data:`REGISTER_WAIT_S`).
2. A call that finds the connection down waits for the reconnect (bounded) and then goes
   out. A call whose connection drops while it waits for its answer is sent again only when
   repeating it is harmless; otherwise the agent is told it may or may not have happened.
   :meth:`MeshSession.send_now` sends a call without a task, its answer to a callback, only
   while the session is registered and connected; its caller applies the same rule.
3. A call refused for want of a session while the session joins again (-32001, link rule
   6: the broker answers it after the ``peer.detached``, so the session knows by then) is
   sent again once it is back.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio

from slm_mesh.mcp_server.link import BrokerLink
from slm_mesh.protocol.errors import MeshError, NotRegistered

if TYPE_CHECKING:
    from slm_mesh.client.aio import MeshClient
    from slm_mesh.client.connection import OnAnswer
    from slm_mesh.client.wire import ConnectionLost

REGISTER_WAIT_S = 20.0
RECONNECT_WAIT_S = 15.0

# Calls that do the same thing when sent twice (rule 2).
_REPEATABLE = frozenset(
    {
        "mesh.status",
        "peer.list",
        "peer.whoami",
        "peer.update",
        "state.get",
        "state.list",
        "lock.acquire",
        "lock.release",
        "lock.list",
        "lock.check",
        "event.read",
        "event.subscribe",
        "event.unsubscribe",
    }
)


MAYBE_DONE = (
    "the connection to the broker dropped before it answered, so this may or may not have "
    "been done; check before you repeat it"
)


class BrokerDown(Exception):
    """No broker could be reached in time; the message says why."""


class MaybeDone(Exception):
    """The connection dropped while a call that must not be repeated waited for its answer."""


class MeshSession(BrokerLink):
    """The peer this MCP server is, at the broker (see the module rules)."""

    # -- calls ---------------------------------------------------------------------------

    async def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        """One broker call as this peer, across reconnects (rule 2).

        Raises:
            MeshError: the broker refused it.
            BrokerDown: no broker could be reached in time.
            MaybeDone: the connection dropped before the answer to a call that is not
                repeated.
        """
        from slm_mesh.client.wire import ConnectionLost

        client = await self._wait_registered()
        for attempt in (1, 2):
            if not client.connected:
                await self._wait_reconnected(client)
            registrations = self.registrations
            try:
                return await client.call(method, params)
            except ConnectionLost as exc:
                if attempt == 2 or not repeatable(method, params):
                    raise MaybeDone(MAYBE_DONE) from exc
            except NotRegistered:
                if attempt == 2 or not self.joining_again(registrations):
                    raise
                client = await self._wait_registered()  # then send it again (rule 3)
        raise AssertionError("unreachable")  # pragma: no cover

    def joining_again(self, registrations: int) -> bool:
        """Whether the session is being (or was) registered again since ``registrations``
        (rule 3): a call it refused for want of a session may then be sent again."""
        return self.registrations != registrations or not self._registered.is_set()

    def send_now(
        self, method: str, params: dict[str, Any], on_answer: OnAnswer, *, inbox: bool = False
    ) -> bool:
        """Send one broker call without a task (rule 2): ``on_answer`` gets its
        :class:`~slm_mesh.client.wire.Response`, or the
        :class:`~slm_mesh.client.wire.ConnectionLost` if the connection drops first, from
        the connection's reader. With ``inbox`` (a ``message.inbox``), the unread count is
        learnt from the answer, as :meth:`inbox` does. False, and nothing sent, unless the
        session is registered and the call can go out at once.

        Raises:
            MeshError: refused before it was sent (``TooLarge``).
        """
        client = self._client
        if client is None or self._leaving or not self._registered.is_set():
            return False
        if inbox:
            from slm_mesh.client.wire import Response

            before = client.messages_pushed

            def learn(outcome: Response | ConnectionLost) -> None:
                result = None
                if isinstance(outcome, Response) and outcome.error is None:
                    result = outcome.result
                left = result.get("unread_left") if isinstance(result, dict) else None
                if isinstance(left, int):
                    self._unread.learn(left, before, client.messages_pushed)
                else:
                    self._unread.forget()  # it may have marked some read
                on_answer(outcome)

            return client.call_soon(method, params, learn)
        return client.call_soon(method, params, on_answer)

    def known_unread(self) -> int | None:
        """How many messages to this peer are unread, when that is known without asking
        the broker (:mod:`slm_mesh.mcp_server.unread`); None otherwise."""
        client = self._client
        return None if client is None else self._unread.known(client.messages_pushed)

    async def unread_count(self) -> int:
        """How many messages to this peer are unread (0 if the broker can't say): known
        without asking the broker whenever it can be (:mod:`slm_mesh.mcp_server.unread`)."""
        client = self._client
        if client is not None:
            known = self._unread.known(client.messages_pushed)
            if known is not None:
                return known
        try:
            result = await self.inbox({"unread_only": True, "limit": 1, "mark_read": False})
        except (MeshError, BrokerDown, MaybeDone):
            return 0
        return int(result.get("unread_left", 0))

    async def inbox(self, params: dict[str, Any]) -> Any:
        """``message.inbox``, learning the unread count from its ``unread_left``.

        Raises:
            MeshError, BrokerDown, MaybeDone: as :meth:`call`.
        """
        client = await self._wait_registered()
        before = client.messages_pushed
        try:
            result = await self.call("message.inbox", params)
        except BaseException:
            self._unread.forget()  # it may have marked some read
            raise
        unread_left = result.get("unread_left") if isinstance(result, dict) else None
        if isinstance(unread_left, int):
            self._unread.learn(unread_left, before, client.messages_pushed)
        else:
            self._unread.forget()
        return result

    async def subscribe(self, types: list[str] | None) -> dict[str, Any]:
        """Stream events of ``types`` (all when None) to the agent, across reconnects."""
        wanted = types or ["*"]
        result: dict[str, Any] = await self.call("event.subscribe", {"types": wanted})
        self.subscribed_types = wanted
        self.last_event_seq = max(self.last_event_seq, int(result.get("last_seq", 0)))
        return result

    async def unsubscribe(self) -> None:
        self.subscribed_types = None
        await self.call("event.unsubscribe", {})

    async def wait_joined_seq(self) -> int | None:
        """The event log's last seq when this session first joined, once it has (None from
        a broker too old to say).

        Raises:
            BrokerDown: no broker could be reached in time.
        """
        await self._wait_registered()
        return self.joined_seq

    async def _wait_registered(self) -> MeshClient:
        if self._leaving:
            raise BrokerDown("the MCP server is shutting down")
        if self._client is not None and self._registered.is_set():
            return self._client  # every call but the first: no timer, no checkpoint
        with anyio.move_on_after(REGISTER_WAIT_S):
            await self._registered.wait()
        if self._client is None or not self._registered.is_set():
            raise BrokerDown(f"not connected to the slm-mesh broker: {self._failure}")
        return self._client

    async def _wait_reconnected(self, client: MeshClient) -> None:
        with anyio.move_on_after(RECONNECT_WAIT_S):
            await self._reconnect(client)
        if not client.connected:
            raise BrokerDown(
                f"the slm-mesh broker is unreachable ({self._failure}); it is restarted "
                "automatically, retry in a moment"
            )


def repeatable(method: str, params: dict[str, Any] | None) -> bool:
    """Whether sending ``method`` again after a dropped connection does no harm."""
    if method == "message.inbox":  # marking read twice would hide the first page
        return not (params or {}).get("mark_read", True)
    return method in _REPEATABLE
