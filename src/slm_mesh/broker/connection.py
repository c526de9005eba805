"""One client connection: read lines, run calls concurrently, write answers and pushes.

Rules:
1. Every line received counts against the connection's rate limit (each element of a batch
   too, and lines that fail to parse). Over the limit a call gets -32006 with
   ``data.retry_after``: the seconds until a call is accepted again, rounded up to the
   millisecond.
2. Calls run as tasks of their own, so a ``lock.acquire`` that waits does not hold up the
   connection's other calls; answers go out as they finish, matched by ``id``. At most
   ``max_inflight_calls`` run at once: past that the reader stops reading (backpressure,
   never an unbounded pile of tasks).
3. Answers and pushes share one outgoing queue, bounded in items (``max_outgoing_queue``)
   and in encoded bytes (``max_outgoing_bytes``). An answer waits for room, and answers may
   fill only half the bytes (one answer is always let into an empty queue), so a client that
   pipelines calls with large answers and never reads them stops being read instead of
   growing the broker. A push (``message``, ``event``) never waits: if it finds no room the
   client has fallen too far behind and is disconnected, so a slow reader can never block
   the broker. Undelivered messages stay queued for the peer's next session.
4. When the client closes its end, answers already made are flushed before the connection
   closes; calls still waiting (a queued ``lock.acquire``) are given up: the caller left.
5. No task hop where none is needed: while nothing is queued, an answer or push is written
   by the task that has it, and only what the kernel does not take is queued for the
   writer; input is read straight from the socket (:mod:`slm_mesh.direct_read`, which
   yields now and then so a client that keeps sending never starves the others). A call
   costs the broker's event loop one pass instead of four.
6. What a line's calls need the broker to learn first, off the event loop (the root
   commit of a repository a session registers in: :mod:`slm_mesh.broker.repos`), is
   learned before any of them runs, the connection's later lines waiting meanwhile: a
   batch's calls keep their order. Not before a TCP connection has authenticated.
"""

from __future__ import annotations

import functools
import logging
import math
import os
from collections.abc import Awaitable, Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import trio

from slm_mesh.config import HELLO_TIMEOUT_S
from slm_mesh.direct_read import DirectReader
from slm_mesh.protocol import jsonrpc
from slm_mesh.protocol.errors import RateLimited, TooLarge, Unauthorized
from slm_mesh.protocol.framing import LineBuffer, LineTooLong
from slm_mesh.protocol.jsonrpc import Batch, Call, Invalid, Parsed

from .ratelimit import TokenBucket

if TYPE_CHECKING:
    from slm_mesh.config import Settings


class CallTarget(Protocol):
    """What a connection needs of the broker: its settings, a way to run a call, and a
    place to report messages written to the peer (the broker is one; tests may pass
    another)."""

    settings: Settings

    def call(self, conn: Connection, name: str, raw_params: Any) -> Any: ...

    def prepare(self, parsed: Parsed) -> Awaitable[None] | None:
        """What must be learned off the event loop before this line's calls run (a
        repository's root commit, :mod:`slm_mesh.broker.repos`): None nearly always."""

    def messages_pushed(self, ids: list[int]) -> None: ...


log = logging.getLogger(__name__)

RECEIVE_CHUNK = 64 * 1024


@dataclass(frozen=True, slots=True)
class Pending:
    """A call that has to wait (a queued ``lock.acquire``, an event replay)."""

    call: Call
    coro: Coroutine[Any, Any, Any]


@dataclass(slots=True)
class Outgoing:
    data: bytes
    pushed_ids: list[int] = field(default_factory=list)


class Connection:
    def __init__(
        self, broker: CallTarget, conn_id: int, stream: trio.SocketStream, kind: str
    ) -> None:
        self.broker = broker
        self.id = conn_id
        self.stream = stream
        self.kind = kind  # "unix" | "tcp"
        limits = broker.settings.limits
        self.authenticated = kind == "unix"
        self.buffer = LineBuffer(limits.max_line_bytes)
        self.bucket = TokenBucket(
            limits.rate_limit_per_s, limits.rate_limit_burst, trio.current_time()
        )
        self.inflight = trio.Semaphore(limits.max_inflight_calls)
        self._send, self._receive = trio.open_memory_channel[Outgoing](limits.max_outgoing_queue)
        self.max_outgoing_bytes = limits.max_outgoing_bytes
        self.queued_bytes = 0  # encoded, queued or being written
        self._room = trio.lowlevel.ParkingLot()  # answers waiting for queued_bytes to drop
        self.cancel_scope = trio.CancelScope()
        self.reading = trio.CancelScope()
        self.closed = False
        self.close_after_answer = False  # set by a failed authentication
        self._hello_deadline = trio.CancelScope()  # TCP: until mesh.hello authenticates
        fd = stream.socket.fileno()
        self._fd = fd
        self._input = DirectReader(functools.partial(os.read, fd), fd, RECEIVE_CHUNK)

    # -- outgoing ------------------------------------------------------------------------

    async def send(self, message: Any) -> None:
        """Queue an answer, waiting for room (backpressure on a client that doesn't read)."""
        item = Outgoing(jsonrpc.encode(message))
        if self._write_now(item):
            return
        size = len(item.data)
        while self.queued_bytes and self.queued_bytes + size > self.max_outgoing_bytes // 2:
            await self._room.park()
        self.queued_bytes += size
        try:
            await self._send.send(item)
        except BaseException as exc:
            self.queued_bytes -= size  # it never got into the queue
            if not isinstance(exc, trio.ClosedResourceError | trio.BrokenResourceError):
                raise  # (closed: the connection is ending and the answer has nowhere to go)

    def push(self, method: str, params: Any, message_id: int | None = None) -> None:
        """Queue a notification without waiting; a client this far behind is dropped."""
        if self.closed:
            return
        item = Outgoing(jsonrpc.encode(jsonrpc.notification(method, params)))
        if message_id is not None:
            item.pushed_ids.append(message_id)
        if self._write_now(item):
            return
        try:
            if self.queued_bytes + len(item.data) > self.max_outgoing_bytes:
                raise trio.WouldBlock
            self._send.send_nowait(item)
        except trio.WouldBlock:
            log.warning(
                "connection %d fell behind (%d notifications, %d bytes queued): disconnecting",
                self.id,
                self._send.statistics().current_buffer_used,
                self.queued_bytes,
            )
            self.abort()
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            pass
        else:
            self.queued_bytes += len(item.data)

    def _write_now(self, item: Outgoing) -> bool:
        """Write ``item`` from the calling task if nothing is queued before it (rule 5).
        True if it is taken care of: written, queued in part, or dropped with a connection
        that just failed."""
        if self.queued_bytes or self.closed:
            return False
        try:
            written = os.write(self._fd, item.data)
        except BlockingIOError:
            return False
        except OSError as exc:
            log.debug("connection %d: write failed: %s", self.id, exc)
            self.abort()
            return True
        if written < len(item.data):
            # The queue is empty, so the rest fits: it goes out first, by the writer.
            rest = Outgoing(item.data[written:], item.pushed_ids)
            self._send.send_nowait(rest)
            self.queued_bytes += len(rest.data)
        elif item.pushed_ids:
            self.broker.messages_pushed(item.pushed_ids)
        return True

    async def _read_some(self) -> bytes:
        """The next bytes from the client, b"" at its end (rule 5)."""
        try:
            return await self._input.receive()
        except OSError as exc:
            raise trio.BrokenResourceError(str(exc)) from exc

    def authenticate(self) -> None:
        """A valid ``mesh.hello``: the connection is the owner's, with no deadline."""
        self.authenticated = True
        self._hello_deadline.cancel()

    async def _expect_hello(self) -> None:
        """TCP: a connection that has not authenticated within ``HELLO_TIMEOUT_S`` is told
        so and closed, which frees its place in the unauthenticated quota."""
        with self._hello_deadline:
            await trio.sleep(HELLO_TIMEOUT_S)
            self.close_after_answer = True
            error = Unauthorized(f"unauthorized: no mesh.hello within {HELLO_TIMEOUT_S:g} s")
            await self.send(jsonrpc.error_response(None, error))
            self._close_if_unauthorized()

    def abort(self) -> None:
        self.closed = True
        self.cancel_scope.cancel()

    def stop_reading(self) -> None:
        """Stop taking calls (shutdown): calls in flight finish, answers are flushed."""
        self.reading.cancel()

    async def _writer(self) -> None:
        async with self._receive:
            async for item in self._receive:
                items = [item]
                # Coalesce whatever else is ready into one write.
                while len(items) < 256:
                    try:
                        items.append(self._receive.receive_nowait())
                    except (trio.WouldBlock, trio.EndOfChannel):
                        break
                data = b"".join(i.data for i in items)
                await self.stream.send_all(data)
                self.queued_bytes -= len(data)
                self._room.unpark_all()
                pushed = [mid for i in items for mid in i.pushed_ids]
                if pushed:
                    self.broker.messages_pushed(pushed)

    # -- incoming ------------------------------------------------------------------------

    async def run(self) -> None:
        with self.cancel_scope:
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._writer)
                    if not self.authenticated:
                        nursery.start_soon(self._expect_hello)
                    async with self._send:
                        await self._reader()
                    self._hello_deadline.cancel()
            except* (trio.BrokenResourceError, trio.ClosedResourceError):
                # The client went away: reset the connection, or closed it while we wrote.
                # Nurseries wrap errors in groups, so a plain ``except`` never matched and
                # every such departure was logged as a failed connection.
                pass

    async def refuse(self, error: Exception) -> None:
        """Answer with one error (id null) and close: wrong uid, bad token, over quota."""
        with trio.move_on_after(1.0):
            await self.stream.send_all(jsonrpc.encode(jsonrpc.error_response(None, error)))
            # Closing with unread input makes the kernel reset the connection, and the
            # client would lose the error it was just sent: half-close, drain, then close.
            await self.stream.send_eof()
            drained = 0
            while drained < self.broker.settings.limits.max_line_bytes:
                chunk = await self.stream.receive_some(RECEIVE_CHUNK)
                if not chunk:
                    break
                drained += len(chunk)

    async def _reader(self) -> None:
        async with trio.open_nursery() as calls:
            with self.reading:
                while True:
                    data = await self._read_some()
                    if not data:
                        # The client is gone (or closed its sending side). Calls that were
                        # answered inline are already queued; the ones still waiting (a
                        # queued lock.acquire, an event replay) end here: a waiter must not
                        # be granted a lock its caller will never see.
                        calls.cancel_scope.cancel()
                        break
                    for line in self.buffer.feed(data):
                        await self._on_line(line, calls)
                        if self.closed:
                            return

    async def _on_line(self, line: bytes | LineTooLong, calls: trio.Nursery) -> None:
        if isinstance(line, LineTooLong):
            self._rate_limited()  # counts, but the answer is -32005 either way
            await self.send(jsonrpc.error_response(None, TooLarge("line", line.limit)))
            return
        parsed = jsonrpc.parse_line(line)
        if self.authenticated:
            ready = self.broker.prepare(parsed)
            if ready is not None:
                await ready  # this connection's next line waits: its calls keep their order
        if isinstance(parsed, Batch):
            answers = [self._start(item) for item in parsed.items]
            if any(isinstance(a, Pending) for a in answers):
                await self.inflight.acquire()
                calls.start_soon(self._finish_batch, answers)
            else:
                await self._send_answers([a for a in answers if isinstance(a, dict)])
            return
        answer = self._start(parsed)
        if isinstance(answer, Pending):
            await self.inflight.acquire()
            calls.start_soon(self._finish_single, answer)
        elif answer is not None:
            await self.send(answer)
        self._close_if_unauthorized()

    def _rate_limited(self) -> float:
        return self.bucket.take(trio.current_time())

    def _start(self, item: Call | Invalid) -> dict[str, Any] | Pending | None:
        """Run a call as far as it goes without waiting: its answer (None for a
        notification), or a :class:`Pending` for the few calls that wait."""
        retry = self._rate_limited()
        if retry:
            # Rounded up to the millisecond: never 0, never sooner than a token is back.
            retry = math.ceil(retry * 1000) / 1000
            error: Exception = RateLimited(_retry_msg(retry), {"retry_after": retry})
            if isinstance(item, Call) and item.notification:
                return None
            return jsonrpc.error_response(item.id, error)
        if isinstance(item, Invalid):
            return jsonrpc.error_response(item.id, item.error)
        if not self.authenticated and item.method != "mesh.hello":
            # TCP: the first call must authenticate; anything else ends the connection.
            self.close_after_answer = True
            return jsonrpc.error_response(
                item.id, Unauthorized("unauthorized: call mesh.hello with the broker token")
            )
        try:
            result = self.broker.call(self, item.method, item.params)
        except Exception as exc:
            return self._failed(item, exc)
        if isinstance(result, Coroutine):
            return Pending(item, result)
        return None if item.notification else jsonrpc.response(item.id, result)

    def _failed(self, call: Call, exc: Exception) -> dict[str, Any] | None:
        if isinstance(exc, Unauthorized):
            self.close_after_answer = True
        return None if call.notification else jsonrpc.error_response(call.id, exc)

    async def _finish(self, pending: Pending) -> dict[str, Any] | None:
        call = pending.call
        try:
            result = await pending.coro
        except trio.Cancelled:
            raise
        except Exception as exc:
            return self._failed(call, exc)
        return None if call.notification else jsonrpc.response(call.id, result)

    async def _finish_single(self, pending: Pending) -> None:
        try:
            answer = await self._finish(pending)
            if answer is not None:
                await self.send(answer)
        finally:
            self.inflight.release()

    async def _finish_batch(self, started: list[dict[str, Any] | Pending | None]) -> None:
        try:
            answers = list(started)

            async def finish(i: int, pending: Pending) -> None:
                answers[i] = await self._finish(pending)

            async with trio.open_nursery() as nursery:
                for i, item in enumerate(started):
                    if isinstance(item, Pending):
                        nursery.start_soon(finish, i, item)
            await self._send_answers([a for a in answers if isinstance(a, dict)])
        finally:
            self.inflight.release()

    async def _send_answers(self, answers: list[dict[str, Any]]) -> None:
        if answers:  # a batch of notifications only is not answered at all
            await self.send(answers)
        self._close_if_unauthorized()

    def _close_if_unauthorized(self) -> None:
        """After the error answer is queued: take no more calls, flush, close."""
        if self.close_after_answer:
            self.closed = True
            self._send.close()
            self.stop_reading()


def _retry_msg(retry: float) -> str:
    return f"rate limited: too many calls; retry after {retry:.3f} s"
