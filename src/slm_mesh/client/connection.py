"""One open stream to the broker, for :class:`slm_mesh.client.aio.MeshClient`.

A :class:`Connection` runs as one task in the client's task group, with a reader and a
flusher inside its own cancel scope; a call writes its request itself when the socket
takes it (:mod:`slm_mesh.client.eager`). It dies exactly once, in
:meth:`Connection.fail`: the waiting calls get the :class:`ConnectionLost`, the push
stream is closed for sending (the consumer reads what is buffered, then the stream ends),
the scope is cancelled and the socket is closed. See the rules in ``aio.py``.

Under trio (the MCP server, the broker's tests) it reads and writes the socket directly on
trio's epoll; under asyncio (``slm-mesh top``: textual) through the anyio stream. trio is
imported only when running under it: nothing runs under trio without having imported it,
so asyncio callers never pay for the import (about a tenth of ``top``'s start).

Two ways skip a task hop for a process that answers many small calls (the MCP server):
:meth:`Connection.call_soon` hands the answer to a callback run by the reader, instead of
waking the calling task; and an ``on_push`` callback takes each push from the reader as it
is read, instead of queueing it for a consumer task. Callbacks run inside the reader: they
must not block, and what they raise is logged, never let through to the reader.
"""

from __future__ import annotations

import functools
import logging
import socket
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import anyio.abc
from anyio.streams.memory import MemoryObjectReceiveStream

from slm_mesh.client.address import Address
from slm_mesh.client.eager import EagerWriter, nonblocking_writer, refuse
from slm_mesh.client.wire import ConnectionLost, Malformed, Push, Response, parse_incoming
from slm_mesh.protocol.framing import LineBuffer, LineTooLong

log = logging.getLogger(__name__)

OnAnswer = Callable[[Response | ConnectionLost], None]
OnPush = Callable[[str, Any], None]

WRITE_HIGH_WATER = 256 * 1024  # bytes of requests waiting for the socket before callers wait
RECEIVE_BYTES = 65_536


class Notifications:
    """Pushes of one connection as ``(method, params)``: ``async for`` them, or
    ``await receive()``. Iteration ends once the connection has dropped and the buffered
    pushes are read. :meth:`close` it to say the pushes are not wanted (they are dropped)."""

    def __init__(self, receive: MemoryObjectReceiveStream[tuple[str, Any]]) -> None:
        self._receive = receive
        self.closed = False

    def __aiter__(self) -> Notifications:
        return self

    async def __anext__(self) -> tuple[str, Any]:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    async def receive(self) -> tuple[str, Any]:
        """The next push.

        Raises:
            anyio.EndOfStream: the connection dropped and every push was read.
        """
        try:
            return await self._receive.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            self.close()  # drained: let the stream go now rather than at client exit
            raise anyio.EndOfStream from None

    def close(self) -> None:
        """Stop receiving; later pushes of this connection are dropped."""
        self.closed = True
        self._receive.close()


class _Waiter:
    """One call waiting for its response (or for the connection to drop)."""

    __slots__ = ("done", "outcome")

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.outcome: Response | ConnectionLost | None = None

    def settle(self, outcome: Response | ConnectionLost) -> None:
        if self.outcome is None:
            self.outcome = outcome
            self.done.set()


class _Callback:
    """One call whose response goes to a callback (:meth:`Connection.call_soon`)."""

    __slots__ = ("id", "on_answer", "waiting")

    def __init__(self, waiting: dict[int, Any], id_: int, on_answer: OnAnswer) -> None:
        self.waiting = waiting
        self.id = id_
        self.on_answer: OnAnswer | None = on_answer

    def settle(self, outcome: Response | ConnectionLost) -> None:
        on_answer, self.on_answer = self.on_answer, None
        if on_answer is None:
            return
        self.waiting.pop(self.id, None)
        try:
            on_answer(outcome)
        except Exception:
            log.exception("a callback of call %d failed", self.id)


class Connection:
    """A byte stream to the broker with its calls in flight and its pushes."""

    def __init__(
        self,
        stream: anyio.abc.ByteStream,
        address: Address,
        *,
        notification_buffer: int,
        max_line_bytes: int,
        on_push: OnPush | None = None,
    ) -> None:
        self.stream = stream
        self.address = address
        self.lost: ConnectionLost | None = None
        self._on_push = on_push
        self._waiting: dict[int, _Waiter | _Callback] = {}
        self._lines = LineBuffer(max_line_bytes)
        self._scope = anyio.CancelScope()
        self._read_some: Callable[[], Awaitable[bytes]]
        # What a read that fails because the connection went raises (trio's own too, when
        # the socket is read under trio directly).
        self._read_failures: tuple[type[BaseException], ...] = (
            anyio.BrokenResourceError,
            anyio.ClosedResourceError,
            OSError,
        )
        raw = _raw_socket_under_trio(stream)
        if raw is not None:
            import trio

            from slm_mesh.direct_read import DirectReader

            # The stream then owns nothing but its closing: its send would return only once
            # all is written, and its receive yields once more after every read.
            self._writer = nonblocking_writer(raw.send, raw, WRITE_HIGH_WATER)
            self._read_some = DirectReader(raw.recv, raw, RECEIVE_BYTES).receive
            self._read_failures += (trio.ClosedResourceError,)
        else:  # every line through the flusher and the stream
            self._writer = EagerWriter(refuse, stream.send, WRITE_HIGH_WATER)
            self._read_some = functools.partial(stream.receive, RECEIVE_BYTES)
        self._pushes, receive = anyio.create_memory_object_stream[tuple[str, Any]](
            notification_buffer
        )
        self.notifications = Notifications(receive)
        self.messages_pushed = 0
        """``message`` pushes read so far, counted in the order lines arrive: one that came
        before an answer is counted by the time its caller resumes."""

    async def run(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        """Read and write until the connection drops or :meth:`close` is called."""
        try:
            with self._scope:
                async with anyio.create_task_group() as task_group:
                    task_group.start_soon(self._read)
                    task_group.start_soon(self._flush)
                    task_status.started()
        finally:
            self.fail(ConnectionLost(f"connection to {self.address} closed"))
            with anyio.CancelScope(shield=True):
                await self.stream.aclose()

    async def call(self, id_: int, line: bytes) -> Any:
        """Send ``line`` (a request with ``id_``) and wait for its response's result."""
        waiter = _Waiter()
        self._waiting[id_] = waiter
        try:
            try:
                self._writer.write(line)
            except anyio.BrokenResourceError as exc:
                self._fail_from(exc.__cause__ or exc, "sending to the broker failed")
            except anyio.ClosedResourceError:
                waiter.settle(self.lost or ConnectionLost("connection closed"))
            else:
                await self._writer.wait_for_room()
            await waiter.done.wait()
        finally:
            del self._waiting[id_]
        outcome = waiter.outcome
        if isinstance(outcome, ConnectionLost):
            # A fresh exception per caller: one shared instance would collect every
            # caller's traceback.
            raise ConnectionLost(str(outcome)) from outcome.__cause__
        assert outcome is not None
        return outcome.unwrap()

    def call_soon(self, id_: int, line: bytes, on_answer: OnAnswer) -> None:
        """Send ``line`` (a request with ``id_``); ``on_answer`` gets its :class:`Response`,
        or the :class:`ConnectionLost` if the connection drops first (maybe before this
        returns), from the reader task. Call only while :meth:`writable_now`."""
        waiter = self._waiting[id_] = _Callback(self._waiting, id_, on_answer)
        try:
            self._writer.write(line)
        except anyio.BrokenResourceError as exc:
            self._fail_from(exc.__cause__ or exc, "sending to the broker failed")
        except anyio.ClosedResourceError:
            waiter.settle(self.lost or ConnectionLost("connection closed"))

    def writable_now(self) -> bool:
        """Whether a request can go out without waiting: the connection is up and no more
        than the high water of requests waits for the socket."""
        writer = self._writer
        return self.lost is None and writer.queued <= writer.high_water

    def close(self) -> None:
        """Drop the connection from this side."""
        self.fail(ConnectionLost(f"connection to {self.address} closed by the client"))

    def fail(self, exc: ConnectionLost) -> None:
        """Mark the connection dead (first call wins): settle every waiting call with
        ``exc``, end the push stream after its buffered items, stop the tasks."""
        if self.lost is not None:
            return
        self.lost = exc
        for waiter in list(self._waiting.values()):  # a callback's waiter leaves the dict
            waiter.settle(exc)
        self._pushes.close()
        self._writer.close()
        self._scope.cancel()

    async def _flush(self) -> None:
        await self._writer.flush()
        if self._writer.error is not None:
            self._fail_from(self._writer.error, "sending to the broker failed")

    async def _read(self) -> None:
        while True:
            try:
                chunk = await self._read_some()  # b"" or anyio.EndOfStream at the end
            except anyio.EndOfStream:
                chunk = b""
            except self._read_failures as exc:
                self._fail_from(exc, "receiving from the broker failed")
                return
            if not chunk:
                self.fail(ConnectionLost(f"the broker at {self.address} closed the connection"))
                return
            for line in self._lines.feed(chunk):
                if isinstance(line, LineTooLong):
                    # Some call's answer is gone and we cannot tell which: failing them all
                    # beats leaving one to wait for ever.
                    self.fail(ConnectionLost(f"the broker sent a line over {line.limit} bytes"))
                    return
                await self._deliver(line)

    async def _deliver(self, line: bytes) -> None:
        incoming = parse_incoming(line)
        if isinstance(incoming, Response):
            waiter = self._waiting.get(incoming.id) if type(incoming.id) is int else None
            if waiter is not None:
                waiter.settle(incoming)
            elif incoming.id is None and incoming.error is not None:
                log.warning("broker reported an error for no call: %s", incoming.error)
            else:
                log.debug("dropping the answer to call %r: nobody waits for it", incoming.id)
        elif isinstance(incoming, Push):
            if incoming.method == "message":
                self.messages_pushed += 1
            if self.notifications.closed:
                return
            if self._on_push is not None:
                try:
                    self._on_push(incoming.method, incoming.params)
                except Exception:
                    log.exception("handling a %r push failed", incoming.method)
                return
            try:
                await self._pushes.send((incoming.method, incoming.params))
            except anyio.BrokenResourceError:
                pass  # the consumer closed its end: it does not want pushes
            except anyio.ClosedResourceError:
                pass  # the connection failed meanwhile; the stream has ended
        elif isinstance(incoming, Malformed):
            log.warning("ignoring a line from the broker: %s", incoming.reason)

    def _fail_from(self, cause: BaseException, what: str) -> None:
        exc = ConnectionLost(f"{what}: {cause}")
        exc.__cause__ = cause
        self.fail(exc)


def _raw_socket_under_trio(stream: anyio.abc.ByteStream) -> socket.socket | None:
    """The stream's socket, to be used directly: under trio only (:mod:`slm_mesh.direct_read`
    and :func:`slm_mesh.client.eager.nonblocking_writer` wait on trio's epoll)."""
    raw: socket.socket | None = stream.extra(anyio.abc.SocketAttribute.raw_socket, None)
    return raw if raw is not None and _in_trio() else None


def _in_trio() -> bool:
    trio = sys.modules.get("trio")
    if trio is None:
        return False  # nothing runs under trio without having imported it
    try:
        trio.lowlevel.current_task()
    except RuntimeError:
        return False
    return True
