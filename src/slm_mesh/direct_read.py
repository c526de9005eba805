"""Reads straight from a non-blocking fd or socket under trio.

trio's own streams yield to the scheduler after every read that found data (a
``cancel_shielded_checkpoint``): one more pass of the event loop per message, which for a
process answering one small line at a time is a good part of its CPU. A
:class:`DirectReader` makes the system call itself and waits on epoll only when there is
nothing to read.

Rules:
1. Every :meth:`DirectReader.receive` is a cancellation point: a cancelled caller gets
   ``trio.Cancelled`` before anything is read, so no bytes are lost to it.
2. No caller starves the others: after :data:`READS_BEFORE_YIELD` reads in a row that
   found data, the next one yields (shielded, after the read, so the bytes are returned).
3. The end of the stream is ``b""``; a failed read raises its ``OSError``. Both are the
   caller's to map onto its own errors.

Used by the broker's connections, the MCP server's stdin and the client's broker
connection; the writing side is :mod:`slm_mesh.client.eager`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import trio

READS_BEFORE_YIELD = 8


class HasFileno(Protocol):
    def fileno(self) -> int: ...


class DirectReader:
    __slots__ = ("_handle", "_read", "_size", "_streak")

    def __init__(self, read: Callable[[int], bytes], handle: int | HasFileno, size: int) -> None:
        """``read(size)`` is ``os.read`` on a non-blocking fd bound to it, or ``recv`` on a
        non-blocking socket; ``handle`` is what trio waits on (the fd or the socket)."""
        self._read = read
        self._handle = handle
        self._size = size
        self._streak = 0  # reads in a row that found data, since the last yield

    async def receive(self) -> bytes:
        """The next bytes, at most ``size`` of them; ``b""`` at the end (rules 1-3)."""
        await trio.lowlevel.checkpoint_if_cancelled()
        while True:
            try:
                data = self._read(self._size)
            except BlockingIOError:
                self._streak = 0
                await trio.lowlevel.wait_readable(self._handle)
                continue
            self._streak += 1
            if self._streak >= READS_BEFORE_YIELD:
                self._streak = 0
                await trio.lowlevel.cancel_shielded_checkpoint()
            return data
