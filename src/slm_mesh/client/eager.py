"""Writes that go out at once: lines to a socket or pipe, written by the task that has
them while the kernel takes them, handed to a flusher task only when it doesn't.

A writer task fed through a memory stream costs every line three passes of the event loop
(the hand-over, the send's checkpoint, the receive's checkpoint), each with its own
``epoll_wait``: a good part of a tool call's CPU in the MCP server, counted with a trio
Instrument. Writing from the caller costs none.

Rules:
1. Order is kept: while anything is queued or being flushed, later writes queue behind it.
2. A line is never torn by a cancelled caller: what the kernel did not take is queued
   before :meth:`EagerWriter.write` returns, and the flusher writes it.
3. Memory stays bounded: :meth:`EagerWriter.wait_for_room` blocks while more than
   ``high_water`` bytes wait (a reader that stopped reading).
4. The first failure is final: later writes raise ``anyio.BrokenResourceError``; after
   :meth:`EagerWriter.close`, ``anyio.ClosedResourceError``. The flusher returns once
   what was queued before ``close`` is written, or on a failure.
"""

from __future__ import annotations

import collections
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import anyio

if TYPE_CHECKING:
    from slm_mesh.direct_read import HasFileno


def refuse(data: bytes) -> int:
    """A ``try_write`` for streams that can't be written past their owner: queue all."""
    raise BlockingIOError


class EagerWriter:
    def __init__(
        self,
        try_write: Callable[[bytes], int],
        send_all: Callable[[bytes], Awaitable[None]],
        high_water: int,
    ) -> None:
        """``try_write(data)`` writes what the kernel takes now and returns how much
        (``BlockingIOError`` for none); ``send_all(data)`` writes it all, waiting as
        needed. Both raise ``OSError`` or an anyio stream error when the peer is gone."""
        self._try_write = try_write
        self._send_all = send_all
        self.high_water = high_water
        self._queue: collections.deque[bytes] = collections.deque()
        self.queued = 0  # bytes queued or being flushed
        self.error: BaseException | None = None
        self.closed = False
        self._wake = anyio.Event()
        self._room: anyio.Event | None = None

    def write(self, data: bytes) -> None:
        """Write ``data`` now, or queue it (rules 1, 2, 4)."""
        if self.error is not None:
            raise anyio.BrokenResourceError from self.error
        if self.closed:
            raise anyio.ClosedResourceError
        if not self.queued:
            try:
                written = self._try_write(data)
            except BlockingIOError:
                written = 0
            except OSError as exc:
                self._fail(exc)
                raise anyio.BrokenResourceError from exc
            if written == len(data):
                return
            data = data[written:]
        self._queue.append(data)
        self.queued += len(data)
        self._wake.set()

    async def wait_for_room(self) -> None:
        """Return once no more than ``high_water`` bytes wait (rule 3)."""
        while self.queued > self.high_water and self.error is None and not self.closed:
            if self._room is None:
                self._room = anyio.Event()
            await self._room.wait()

    def close(self) -> None:
        """No more writes; the flusher ends once the queue is written."""
        self.closed = True
        self._wake.set()
        self._release()

    async def flush(self) -> None:
        """The flusher task (rules 1, 4)."""
        while self.error is None:
            if not self._queue:
                if self.closed:
                    return
                self._wake = anyio.Event()
                await self._wake.wait()
                continue
            chunk = b"".join(self._queue)
            self._queue.clear()
            try:
                await self._send_all(chunk)
            except (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError) as exc:
                self._fail(exc)
                return
            self.queued -= len(chunk)
            if self.queued <= self.high_water:
                self._release()

    def _fail(self, exc: BaseException) -> None:
        self.error = exc
        self._queue.clear()
        self.queued = 0
        self._wake.set()
        self._release()

    def _release(self) -> None:
        if self._room is not None:
            self._room.set()
            self._room = None


def nonblocking_writer(
    write: Callable[[bytes], int], handle: int | HasFileno, high_water: int
) -> EagerWriter:
    """An :class:`EagerWriter` on a non-blocking fd or socket under trio: ``write`` is
    ``os.write`` on the fd or ``send`` on the socket, ``handle`` what trio waits on."""
    import trio

    async def send_all(data: bytes) -> None:
        view = memoryview(data)
        while view:
            await trio.lowlevel.wait_writable(handle)
            try:
                view = view[write(view) :]  # type: ignore[arg-type]
            except BlockingIOError:
                continue

    return EagerWriter(write, send_all, high_water)
