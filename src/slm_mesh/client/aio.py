"""The async client: one connection to the broker shared by many concurrent calls (anyio).

Use it as a context manager; it owns a task group for its background tasks::

    async with MeshClient.open(settings) as client:
        await client.register(cwd=os.getcwd(), name="alice")
        async for method, params in client.notifications:
            ...

Rules:
1. Each connection has one reader task and one writer task. Callers hand their request line
   to the writer through a queue, so a caller that is cancelled never leaves half a line on
   the socket. Cancelling a call does not cancel it on the broker (the protocol has no such
   request); its late answer is dropped.
2. Responses are matched to calls by id, in whatever order they arrive.
3. Pushes (``message``, ``event``, ``mesh.shutdown``) go into a bounded buffer (10,000 by
   default). When it is full the reader waits for the consumer instead of dropping anything,
   so pushes are never lost silently. Waiting also holds up responses; if the consumer stays
   behind, the broker's own queue limit disconnects this client, which then sees
   :class:`ConnectionLost` like any other drop. A client that registers or subscribes must
   therefore read :attr:`MeshClient.notifications` (closing it says "drop my pushes").
4. When the connection drops, every waiting call raises :class:`ConnectionLost` and the
   notification stream ends after its buffered items. Nothing reconnects behind the caller's
   back: call :meth:`MeshClient.reconnect`, which resumes the peer session if there was one.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel

from slm_mesh.client.address import Address, BrokerUnreachable, resolve, unreachable
from slm_mesh.client.connection import Connection, Notifications, OnAnswer, OnPush
from slm_mesh.client.wire import ConnectionLost, encode_call, hello_params
from slm_mesh.config import Settings
from slm_mesh.protocol.errors import ShuttingDown

__all__ = ["ConnectionLost", "MeshClient", "Notifications"]

log = logging.getLogger(__name__)

NOTIFICATION_BUFFER = 10_000
CONNECT_TIMEOUT_S = 5.0
RECONNECT_FIRST_DELAY_S = 0.05
RECONNECT_MAX_DELAY_S = 1.0


class MeshClient:
    """An async connection to the broker. Create it with :meth:`open`, never directly."""

    def __init__(
        self,
        settings: Settings,
        task_group: anyio.abc.TaskGroup,
        *,
        address: Address | None,
        client_name: str,
        notification_buffer: int,
        connect_timeout: float,
        on_push: OnPush | None = None,
    ) -> None:
        self.settings = settings
        self._on_push = on_push
        self.hello: dict[str, Any] | None = None
        """Result of ``mesh.hello`` on the current connection (``version``, ``protocol``...)."""
        self.peer_id: str | None = None
        self.resume_token: str | None = None
        self._task_group = task_group
        self._fixed_address = address
        self._client_name = client_name
        self._notification_buffer = notification_buffer
        self._connect_timeout = connect_timeout
        self._max_line_bytes = settings.limits.max_line_bytes
        # Answers may be larger than calls: the broker is trusted up to a larger cap.
        self._max_answer_bytes = settings.limits.client_max_line_bytes
        self._ids = itertools.count(1)
        self._conn: Connection | None = None
        self._retired_pushes = 0  # messages_pushed of the connections before this one
        self._old: list[Connection] = []  # dropped, their pushes maybe not yet drained
        self._registration: dict[str, Any] | None = None
        """What the next resume sends (as registered, then amended)."""
        self._registered_with: dict[str, Any] | None = None
        """What the broker was last told: the registration, or the last resume's."""
        self._reconnecting = anyio.Lock()
        self._closed = False

    @classmethod
    @asynccontextmanager
    async def open(
        cls,
        settings: Settings | None = None,
        *,
        address: Address | None = None,
        client_name: str = "slm-mesh",
        notification_buffer: int = NOTIFICATION_BUFFER,
        connect_timeout: float = CONNECT_TIMEOUT_S,
        on_push: OnPush | None = None,
    ) -> AsyncIterator[MeshClient]:
        """Connect to the broker and say ``mesh.hello``; close everything on exit.

        Args:
            settings: where the broker is; ``Settings.from_env()`` when None.
            address: connect only here instead of the addresses found by ``resolve``.
            client_name: sent in ``mesh.hello`` for the broker's log.
            notification_buffer: pushes held before the reader waits for the consumer.
            connect_timeout: seconds allowed for connecting and the hello at each address.
            on_push: takes every push ``(method, params)`` from the reader as it is read
                (it must not block); :attr:`notifications` then stays empty, and still
                ends when the connection drops.

        Raises:
            BrokerUnreachable: no address answered.
            MeshError: the broker refused the hello (``Unauthorized``: bad token).
        """
        try:
            async with anyio.create_task_group() as task_group:
                client = cls(
                    settings or Settings.from_env(),
                    task_group,
                    address=address,
                    client_name=client_name,
                    notification_buffer=notification_buffer,
                    connect_timeout=connect_timeout,
                    on_push=on_push,
                )
                try:
                    await client._connect()
                    yield client
                finally:
                    client._shut()
        except BaseExceptionGroup as group:
            # The background tasks never raise, so the task group's own group holds just what
            # the body or the connect raised: hand that on so `except LockConflict` works.
            if len(group.exceptions) != 1:
                raise
            inner = group.exceptions[0]
            raise inner from inner.__cause__

    @property
    def messages_pushed(self) -> int:
        """``message`` pushes read on every connection of this client so far, in the order
        they arrived with the answers (:attr:`Connection.messages_pushed`)."""
        current = self._conn.messages_pushed if self._conn is not None else 0
        return self._retired_pushes + current

    @property
    def connected(self) -> bool:
        """True while the current connection is open."""
        return self._conn is not None and self._conn.lost is None

    @property
    def address(self) -> Address | None:
        """Where the current (or last) connection went."""
        return None if self._conn is None else self._conn.address

    @property
    def notifications(self) -> Notifications:
        """The pushes of the current connection as ``(method, params)``; ends when it drops.

        After :meth:`reconnect` this property gives the new connection's stream.
        """
        if self._conn is None:
            raise ConnectionLost("not connected")
        return self._conn.notifications

    async def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        """Send one request and wait for its answer; many calls may wait at once.

        Raises:
            MeshError: the broker answered with an error; the subclass names the code
                (``LockConflict``, ``NotRegistered``...). ``TooLarge`` also when the request
                would not fit the line cap (then nothing was sent).
            ConnectionLost: the connection dropped before the answer came.
        """
        conn = self._conn
        if conn is None or conn.lost is not None:
            raise ConnectionLost(str(conn.lost) if conn and conn.lost else "not connected")
        return await self._call_on(conn, method, params)

    def call_soon(self, method: str, params: dict[str, Any] | None, on_answer: OnAnswer) -> bool:
        """Send one request now, its answer to go to ``on_answer`` from the reader task:
        a :class:`~slm_mesh.client.wire.Response`, or :class:`ConnectionLost` if the
        connection drops first (maybe before this returns). False, and nothing sent, when
        the request can't go out without waiting (not connected, or the socket is behind):
        then use :meth:`call`.

        Raises:
            TooLarge: the request would not fit the line cap (nothing was sent).
        """
        conn = self._conn
        if conn is None or not conn.writable_now():
            return False
        id_ = next(self._ids)
        conn.call_soon(id_, encode_call(id_, method, params, self._max_line_bytes), on_answer)
        return True

    async def register(self, **params: Any) -> dict[str, Any]:
        """``peer.register`` with ``params``, remembered so :meth:`reconnect` can resume.

        Returns:
            ``{peer_id, name, resume_token, resumed}``.
        """
        result: dict[str, Any] = await self.call("peer.register", params)
        self._remember(result)
        self._registration = {k: v for k, v in params.items() if k != "resume"}
        self._registered_with = self._registration
        return result

    def registered_with(self, field: str) -> Any:
        """The value of ``field`` the peer registered (or last resumed) with; None when
        not registered or not given."""
        return None if self._registered_with is None else self._registered_with.get(field)

    def amend_registration(self, **fields: Any) -> None:
        """From now on, :meth:`reconnect` resumes the peer with these ``fields`` changed
        (e.g. ``git_branch`` after the repository switched branch). Nothing is sent;
        nothing happens when not registered. A resume already under way goes with what
        it had: :meth:`registered_with` says what the broker was told."""
        if self._registration is not None:
            self._registration = {**self._registration, **fields}

    async def unregister(self) -> None:
        """``peer.unregister``, and forget the session so a reconnect does not resume it."""
        self._registration = self._registered_with = None
        self.peer_id = self.resume_token = None
        await self.call("peer.unregister")

    async def reconnect(self, retry_for: float = 10.0) -> None:
        """Connect again after :class:`ConnectionLost`, retrying with backoff for up to
        ``retry_for`` seconds.

        If :meth:`register` was called, the new connection registers again with ``resume``
        set to the peer's token, which gives back its id, inbox and locks within the
        broker's grace period; only then do calls go out on it. Event subscriptions are not
        renewed: call ``event.subscribe {after: <last seq seen>}``. To start a broker when
        none is running, ``await ensure_broker(settings)`` first.

        Does nothing while the client is connected, so every task that saw the same drop
        may call it: the first reconnects, the others wait for it and share the result.

        Raises:
            BrokerUnreachable: no broker answered within ``retry_for``.
            MeshError: the hello or the resume was refused.
        """
        async with self._reconnecting:
            if self._closed:
                raise anyio.ClosedResourceError
            if self.connected:
                return
            deadline = anyio.current_time() + retry_for
            delay = RECONNECT_FIRST_DELAY_S
            while True:
                try:
                    await self._connect()
                    return
                except (BrokerUnreachable, ShuttingDown) as exc:
                    remaining = deadline - anyio.current_time()
                    if remaining <= 0:
                        if isinstance(exc, BrokerUnreachable):
                            raise
                        raise BrokerUnreachable(f"reconnect failed: {exc}") from exc
                    log.debug("reconnect attempt failed: %s", exc)
                    await anyio.sleep(min(delay, remaining))
                    delay = min(delay * 2, RECONNECT_MAX_DELAY_S)

    async def aclose(self) -> None:
        """Close the connection; waiting calls get :class:`ConnectionLost`. ``open`` does
        this on exit."""
        self._shut()
        await anyio.lowlevel.checkpoint()

    async def _call_on(self, conn: Connection, method: str, params: dict[str, Any] | None) -> Any:
        id_ = next(self._ids)
        return await conn.call(id_, encode_call(id_, method, params, self._max_line_bytes))

    def _remember(self, registered: dict[str, Any]) -> None:
        self.peer_id = registered.get("peer_id")
        self.resume_token = registered.get("resume_token")

    async def _connect(self) -> None:
        """Make the first address that answers the current connection."""
        candidates = [self._fixed_address] if self._fixed_address else resolve(self.settings)
        tried: list[tuple[Address, BaseException]] = []
        for address in candidates:
            try:
                with anyio.fail_after(self._connect_timeout):
                    conn = await self._attach(address)
            except (OSError, ConnectionLost) as exc:  # TimeoutError is an OSError
                tried.append((address, exc))
                continue
            if self._conn is not None:
                self._old.append(self._conn)
                self._retired_pushes += self._conn.messages_pushed
            self._old = [old for old in self._old if not old.notifications.closed]
            self._conn = conn
            return
        raise unreachable(self.settings, tried)

    async def _attach(self, address: Address) -> Connection:
        """Connect, say hello and resume the peer (if registered) before the connection is
        made current, so no other task's call goes out on a connection that is not yet
        the peer's."""
        stream = await _open_stream(address)
        conn = Connection(
            stream,
            address,
            notification_buffer=self._notification_buffer,
            max_line_bytes=self._max_answer_bytes,
            on_push=self._on_push,
        )
        await self._task_group.start(conn.run)
        try:
            hello = await self._call_on(
                conn, "mesh.hello", hello_params(self._client_name, address.token)
            )
            resumed = None
            registration = self._registration
            if registration is not None:
                params = {**registration, "resume": self.resume_token}
                resumed = await self._call_on(conn, "peer.register", params)
        except BaseException:
            conn.close()
            conn.notifications.close()
            raise
        self.hello = hello
        if resumed is not None:
            self._remember(resumed)
            if self._registration is not None:  # (not unregistered meanwhile)
                self._registered_with = registration  # an amend made meanwhile is kept
        return conn

    def _shut(self) -> None:
        self._closed = True
        for conn in [*self._old, self._conn]:
            if conn is not None:
                conn.close()
                conn.notifications.close()


async def _open_stream(address: Address) -> anyio.abc.ByteStream:
    if address.kind == "unix":
        assert address.path is not None
        return await anyio.connect_unix(address.path)
    return await anyio.connect_tcp(address.host, address.port)
