"""The MCP stdio transport under trio: NDJSON on stdin and stdout.

The SDK's ``stdio_server`` reads stdin in a worker thread, which cannot be cancelled: a
server told to stop (SIGTERM) would hang until the next line arrived. Here both pipes are
non-blocking fds on trio's epoll, and cancellable.

Rules:
1. The wire is a private duplicate of fd 0 and fd 1. While serving, fd 0 reads /dev/null
   and fd 1 writes to stderr, so a stray ``print`` or a child process can neither eat a
   request nor corrupt a response (the SDK does the same). Both are put back on exit, and
   put back into blocking mode (the parent may share their file descriptions).
2. Each line is one JSON-RPC message. A line that does not parse is handed to the
   dispatcher as an exception (it answers or logs it, as the SDK transport does); a line
   over :data:`MAX_LINE_BYTES` is dropped whole.
3. Stdin at EOF ends the read stream: the dispatcher then finishes and closes the write
   stream, and the flusher writes what is left and ends.
4. No hop through a task where none is needed: the reader reads while there is input and
   hands messages over without a checkpoint, the dispatcher takes them without one, and a
   response is written by the task that has it (:mod:`slm_mesh.client.eager`). A tool call
   costs the event loop 5 passes instead of 15 (counted with a trio Instrument). The
   reader still yields now and then (:mod:`slm_mesh.direct_read`), so a client that never
   stops writing can't starve the calls it starts.
5. Memory is bounded: the reader stops reading while :data:`READ_AHEAD` messages wait,
   and a sender waits while :data:`WRITE_HIGH_WATER` bytes do (a client not reading).
6. A session the launcher opened (:mod:`slm_mesh.zygote.early`) starts with what the
   launcher already read from stdin (``early``): it is read first, as if it came now. The
   launcher answered some of those requests itself (``answered``: id -> the line it
   wrote); this server's own answers to them are not written again, and one that differs
   from the launcher's is logged as an error (the prebuilt answers are stale).
"""

from __future__ import annotations

import collections
import contextlib
import functools
import logging
import os
from collections.abc import AsyncIterator, Callable, Iterator

import anyio
import anyio.abc
import mcp_types
import trio
from mcp.shared.message import SessionMessage

from slm_mesh.client.eager import EagerWriter, nonblocking_writer
from slm_mesh.direct_read import DirectReader
from slm_mesh.protocol.framing import LineBuffer, LineTooLong

log = logging.getLogger(__name__)

MAX_LINE_BYTES = 16 * 1024 * 1024
RECEIVE_BYTES = 65_536
READ_AHEAD = 16  # parsed messages the dispatcher has not taken yet
WRITE_HIGH_WATER = 1024 * 1024
FLUSH_ON_EXIT_S = 0.3

Incoming = SessionMessage | Exception


@contextlib.asynccontextmanager
async def open_stdio(
    early: bytes = b"", answered: dict[int, bytes] | None = None
) -> AsyncIterator[tuple[StdinMessages, StdoutMessages]]:
    """Serve the process's stdin and stdout as the SDK's ``(read, write)`` stream pair
    (``early``, ``answered``: rule 6)."""
    with _claimed_stdio() as (in_fd, out_fd):
        reader = StdinMessages(in_fd, early)
        writer = StdoutMessages(out_fd, answered)
        async with trio.open_nursery() as flushing:
            flushing.start_soon(writer.eager.flush)
            async with trio.open_nursery() as reading:
                reading.start_soon(reader.pump)
                try:
                    yield reader, writer
                finally:
                    reading.cancel_scope.cancel()
            # What is still queued goes out, unless the client has stopped reading.
            writer.eager.close()
            flushing.cancel_scope.deadline = trio.current_time() + FLUSH_ON_EXIT_S


class StdinMessages(anyio.abc.AsyncResource):  # async with: aclose at exit
    """The SDK's read stream (``mcp.shared._stream_protocols.ReadStream``) over stdin."""

    def __init__(self, fd: int, early: bytes = b"") -> None:
        self._input = DirectReader(functools.partial(os.read, fd), fd, RECEIVE_BYTES)
        self._early = early
        self._items: collections.deque[Incoming] = collections.deque()
        self._arrived = trio.Event()
        self._room = trio.Event()
        self._ended = False  # EOF or a read error: what is queued is the last
        self._closed = False  # the consumer closed it
        self.intercept: Callable[[bytes], bool] | None = None  # True: the line is taken

    async def pump(self) -> None:
        """Read stdin until EOF (rules 2, 3, 5)."""
        lines = LineBuffer(MAX_LINE_BYTES)
        try:
            while not self._closed:
                try:
                    chunk, self._early = self._early or await self._input.receive(), b""
                except OSError as exc:
                    log.debug("stdin failed: %s", exc)
                    return
                if not chunk:
                    return
                for line in lines.feed(chunk):
                    if isinstance(line, LineTooLong):
                        log.warning("dropped a request line over %d bytes", line.limit)
                        continue
                    if self.intercept is not None and self.intercept(line):
                        continue  # answered beside the SDK (mcp_server.fastcall)
                    self._put(_parse(line))
                while len(self._items) >= READ_AHEAD and not self._closed:
                    self._room = trio.Event()
                    await self._room.wait()
        finally:
            self._ended = True
            self._arrived.set()

    def _put(self, item: Incoming) -> None:
        self._items.append(item)
        self._arrived.set()

    async def receive(self) -> Incoming:
        while True:
            if self._closed:
                raise anyio.ClosedResourceError
            if self._items:
                item = self._items.popleft()
                self._room.set()
                return item
            if self._ended:
                raise anyio.EndOfStream
            self._arrived = trio.Event()
            await self._arrived.wait()

    def __aiter__(self) -> StdinMessages:
        return self

    async def __anext__(self) -> Incoming:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    async def aclose(self) -> None:
        self._closed = True
        self._items.clear()
        self._room.set()
        self._arrived.set()


class StdoutMessages(anyio.abc.AsyncResource):
    """The SDK's write stream (``mcp.shared._stream_protocols.WriteStream``) to stdout."""

    def __init__(self, fd: int, answered: dict[int, bytes] | None = None) -> None:
        self.eager: EagerWriter = nonblocking_writer(
            lambda data: os.write(fd, data), fd, WRITE_HIGH_WATER
        )
        self._answered = dict(answered or {})

    async def send(self, item: SessionMessage) -> None:
        line = wire_line(item)
        if self._answered and self._already_answered(item, line):
            return
        try:
            self.eager.write(line)
        except anyio.BrokenResourceError as exc:
            log.debug("stdout failed: %s", exc.__cause__)
            raise
        await self.eager.wait_for_room()

    def _already_answered(self, item: SessionMessage, line: bytes) -> bool:
        """Rule 6: True if the launcher wrote the answer to this request already."""
        message = item.message
        if not isinstance(message, mcp_types.JSONRPCResponse | mcp_types.JSONRPCError):
            return False
        if not isinstance(message.id, int) or message.id not in self._answered:
            return False
        sent = self._answered.pop(message.id)
        if sent != line:
            log.error(
                "the launcher answered request %r otherwise than this server: its prebuilt "
                "answers are stale (python -m slm_mesh.mcp_server.prebuild)",
                message.id,
            )
        return True

    async def aclose(self) -> None:
        self.eager.close()


def wire_line(item: SessionMessage) -> bytes:
    """One outgoing message as the line written to stdout."""
    return item.message.model_dump_json(by_alias=True, exclude_unset=True).encode() + b"\n"


def _parse(line: bytes) -> Incoming:
    try:
        message = mcp_types.jsonrpc_message_adapter.validate_json(line, by_name=False)
    except Exception as exc:  # a pydantic ValidationError, handed on as the SDK does
        return exc
    return SessionMessage(message)


@contextlib.contextmanager
def _claimed_stdio() -> Iterator[tuple[int, int]]:
    """Private duplicates of fd 0 and fd 1 (rule 1)."""
    in_fd = os.dup(0)
    out_fd = os.dup(1)
    os.set_blocking(in_fd, False)
    os.set_blocking(out_fd, False)
    saved_in = os.dup(0)
    saved_out = os.dup(1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    try:
        os.dup2(devnull, 0)
        os.dup2(2, 1)
        yield in_fd, out_fd
    finally:
        os.close(devnull)
        os.dup2(saved_in, 0)
        os.dup2(saved_out, 1)
        os.close(saved_in)
        os.close(saved_out)
        for fd in (0, 1):  # serving made the shared file descriptions non-blocking
            with contextlib.suppress(OSError):
                os.set_blocking(fd, True)
        os.close(in_fd)
        os.close(out_fd)
