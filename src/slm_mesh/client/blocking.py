"""A small blocking client on stdlib sockets, for scripts and the CLI.

It imports nothing beyond the stdlib and ``slm_mesh.protocol``/``config``, so a CLI command
that only needs one call starts fast. It is not thread-safe: one thread per client.

Rules:
1. One call at a time: :meth:`BlockingClient.call` sends the request and reads lines until
   its answer comes. Pushes read on the way are kept (at most ``notification_buffer``; the
   oldest go first beyond that, because a call cannot wait for a reader that is not there)
   and come out of :meth:`BlockingClient.notifications` first.
2. A call that times out while waiting leaves the connection usable: its late answer is
   dropped when it arrives. A send that fails or times out half-way closes the connection,
   because the next line would be corrupt.
3. A dropped connection raises :class:`ConnectionLost` from calls and ends
   :meth:`BlockingClient.notifications`.
"""

from __future__ import annotations

import itertools
import logging
import socket
import time
from collections import deque
from collections.abc import Iterator
from types import EllipsisType, TracebackType
from typing import Any

from slm_mesh.client.address import Address, resolve, unreachable
from slm_mesh.client.wire import (
    ConnectionLost,
    Malformed,
    Push,
    Response,
    encode_call,
    hello_params,
    parse_incoming,
)
from slm_mesh.config import Settings
from slm_mesh.protocol.framing import LineBuffer, LineTooLong

__all__ = ["BlockingClient", "ConnectionLost"]

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 5.0
NOTIFICATION_BUFFER = 10_000
RECEIVE_BYTES = 65_536


class BlockingClient:
    """A blocking connection to the broker. Create it with :meth:`connect`."""

    def __init__(
        self,
        sock: socket.socket,
        address: Address,
        *,
        timeout: float | None = DEFAULT_TIMEOUT_S,
        max_line_bytes: int,
        max_answer_bytes: int,
        notification_buffer: int = NOTIFICATION_BUFFER,
    ) -> None:
        self.address = address
        self.timeout = timeout
        """Default seconds each call may take (None: no limit)."""
        self.hello: dict[str, Any] | None = None
        """Result of ``mesh.hello`` (``version``, ``protocol``, ``session``)."""
        self.dropped_notifications = 0
        self._sock: socket.socket | None = sock
        self._max_line_bytes = max_line_bytes
        self._lines = LineBuffer(max_answer_bytes)
        self._ready: deque[bytes] = deque()
        self._pushes: deque[tuple[str, Any]] = deque(maxlen=notification_buffer)
        self._ids = itertools.count(1)
        self._lost: str | None = None

    @classmethod
    def connect(
        cls,
        settings: Settings | None = None,
        address: Address | None = None,
        timeout: float | None = DEFAULT_TIMEOUT_S,
        *,
        client_name: str = "slm-mesh",
    ) -> BlockingClient:
        """Connect to the first address that answers and say ``mesh.hello``.

        Args:
            settings: where the broker is; ``Settings.from_env()`` when None.
            address: connect only here instead of the addresses found by ``resolve``.
            timeout: seconds for connecting and, by default, for each call.
            client_name: sent in ``mesh.hello`` for the broker's log.

        Raises:
            BrokerUnreachable: no address answered.
            MeshError: the broker refused the hello (``Unauthorized``: bad token).
        """
        settings = settings or Settings.from_env()
        candidates = [address] if address is not None else resolve(settings)
        tried: list[tuple[Address, BaseException]] = []
        for candidate in candidates:
            try:
                sock = _open_socket(candidate, timeout)
            except OSError as exc:
                tried.append((candidate, exc))
                continue
            client = cls(
                sock,
                candidate,
                timeout=timeout,
                max_line_bytes=settings.limits.max_line_bytes,
                # Answers may be larger than calls: the broker is trusted up to a larger cap.
                max_answer_bytes=settings.limits.client_max_line_bytes,
            )
            try:
                client.hello = client.call("mesh.hello", hello_params(client_name, candidate.token))
            except (ConnectionLost, TimeoutError) as exc:
                client.close()
                tried.append((candidate, exc))
                continue
            except BaseException:
                client.close()
                raise
            return client
        raise unreachable(settings, tried)

    def call(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        *,
        timeout: float | EllipsisType | None = ...,
    ) -> Any:
        """Send one request and wait for its answer.

        Args:
            timeout: seconds to wait for the answer; the client's default when omitted,
                None for no limit. Give ``lock.acquire`` with ``wait`` that much more.

        Raises:
            MeshError: the broker answered with an error (the subclass names the code).
            ConnectionLost: the connection dropped before the answer came.
            TimeoutError: no answer in time (the connection stays usable).
        """
        limit = self.timeout if timeout is ... else timeout
        deadline = None if limit is None else time.monotonic() + limit
        id_ = next(self._ids)
        self._send(encode_call(id_, method, params, self._max_line_bytes), deadline)
        while True:
            incoming = self._next_incoming(deadline)
            if isinstance(incoming, Push):
                if len(self._pushes) == self._pushes.maxlen:
                    self.dropped_notifications += 1
                self._pushes.append((incoming.method, incoming.params))
            elif incoming.id == id_ and type(incoming.id) is int:
                return incoming.unwrap()
            # else: the late answer to a call that timed out; nobody waits for it.

    def notifications(self, timeout: float | None = None) -> Iterator[tuple[str, Any]]:
        """Yield pushes ``(method, params)`` as they come, until the connection drops.

        Args:
            timeout: longest wait for the next push (None: for ever).

        Raises:
            TimeoutError: nothing came within ``timeout``.
        """
        while True:
            while self._pushes:
                yield self._pushes.popleft()
            deadline = None if timeout is None else time.monotonic() + timeout
            try:
                incoming = self._next_incoming(deadline)
            except ConnectionLost:
                return
            if isinstance(incoming, Push):
                yield incoming.method, incoming.params

    def close(self) -> None:
        """Close the connection (idempotent)."""
        sock, self._sock = self._sock, None
        if self._lost is None:
            self._lost = "the connection was closed by the client"
        if sock is not None:
            sock.close()

    def __enter__(self) -> BlockingClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _fail(self, reason: str) -> ConnectionLost:
        self.close()
        self._lost = reason
        return ConnectionLost(reason)

    def _live_socket(self) -> socket.socket:
        if self._sock is None:
            raise ConnectionLost(self._lost or "not connected")
        return self._sock

    def _send(self, line: bytes, deadline: float | None) -> None:
        sock = self._live_socket()
        try:
            sock.settimeout(_remaining(deadline))
            sock.sendall(line)
        except TimeoutError:
            self._fail("sending to the broker timed out")
            raise
        except OSError as exc:
            raise self._fail(f"sending to the broker failed: {exc}") from exc

    def _next_incoming(self, deadline: float | None) -> Response | Push:
        """The next usable line from the broker, reading as needed until ``deadline``."""
        while True:
            while self._ready:
                incoming = parse_incoming(self._ready.popleft())
                if not isinstance(incoming, Malformed):
                    return incoming
                log.warning("ignoring a line from the broker: %s", incoming.reason)
            sock = self._live_socket()
            try:
                sock.settimeout(_remaining(deadline))
                chunk = sock.recv(RECEIVE_BYTES)
            except TimeoutError:
                raise
            except OSError as exc:
                raise self._fail(f"receiving from the broker failed: {exc}") from exc
            if not chunk:
                raise self._fail(f"the broker at {self.address} closed the connection")
            for line in self._lines.feed(chunk):
                if isinstance(line, LineTooLong):
                    raise self._fail(f"the broker sent a line over {line.limit} bytes")
                self._ready.append(line)


def _remaining(deadline: float | None) -> float | None:
    if deadline is None:
        return None
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError("no answer from the broker in time")
    return remaining


def _open_socket(address: Address, timeout: float | None) -> socket.socket:
    if address.kind == "tcp":
        return socket.create_connection((address.host, address.port), timeout=timeout)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(str(address.path))
    except BaseException:
        sock.close()
        raise
    return sock
