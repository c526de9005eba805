"""The MCP stdio transport on trio ``FdStream``\\s: NDJSON on stdin and stdout.

The SDK's ``stdio_server`` reads stdin in a worker thread, which cannot be cancelled: a
server told to stop (SIGTERM) would hang until the next line arrived. Reading the pipe
through ``trio.lowlevel.FdStream`` is cancellable, and end of input ends the read side at
once.

Rules:
1. The wire is a private duplicate of fd 0 and fd 1. While serving, fd 0 reads /dev/null
   and fd 1 writes to stderr, so a stray ``print`` or a child process can neither eat a
   request nor corrupt a response (the SDK does the same). Both are put back on exit, and
   stdin is put back into blocking mode (the parent may share its file description).
2. Each line is one JSON-RPC message. A line that does not parse is handed to the
   dispatcher as an exception (it answers or logs it, as the SDK transport does); a line
   over :data:`MAX_LINE_BYTES` is dropped whole.
3. Stdin at EOF closes the read stream: the dispatcher then finishes and closes the write
   stream, and the writer drains what is left and ends.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import AsyncIterator, Iterator

import anyio
import mcp_types
import trio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from mcp.shared.message import SessionMessage

from slm_mesh.protocol.framing import LineBuffer, LineTooLong

log = logging.getLogger(__name__)

MAX_LINE_BYTES = 16 * 1024 * 1024
RECEIVE_BYTES = 65_536
# A little slack between the pipe tasks and the dispatcher: a message handed over
# without a rendezvous saves task switches on every call.
STREAM_BUFFER = 16

ReadStream = MemoryObjectReceiveStream[SessionMessage | Exception]
WriteStream = MemoryObjectSendStream[SessionMessage]


@contextlib.asynccontextmanager
async def open_stdio() -> AsyncIterator[tuple[ReadStream, WriteStream]]:
    """Serve the process's stdin and stdout as the SDK's ``(read, write)`` stream pair."""
    with _claimed_stdio() as (in_fd, out_fd):
        stdin = trio.lowlevel.FdStream(in_fd)
        stdout = trio.lowlevel.FdStream(out_fd)
        read_send, read_receive = anyio.create_memory_object_stream[SessionMessage | Exception](
            STREAM_BUFFER
        )
        write_send, write_receive = anyio.create_memory_object_stream[SessionMessage](STREAM_BUFFER)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_read_lines, stdin, read_send)
                nursery.start_soon(_write_lines, stdout, write_receive)
                try:
                    yield read_receive, write_send
                finally:
                    nursery.cancel_scope.cancel()
        finally:
            for stream in (read_send, read_receive, write_send, write_receive):
                stream.close()
            await trio.aclose_forcefully(stdin)
            await trio.aclose_forcefully(stdout)


async def _read_lines(
    stdin: trio.lowlevel.FdStream, sink: MemoryObjectSendStream[SessionMessage | Exception]
) -> None:
    lines = LineBuffer(MAX_LINE_BYTES)
    async with sink:
        while True:
            try:
                chunk = await stdin.receive_some(RECEIVE_BYTES)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                log.debug("stdin failed: %s", exc)
                return
            if not chunk:
                return  # EOF: closing the sink ends the dispatcher's read loop
            for line in lines.feed(chunk):
                if isinstance(line, LineTooLong):
                    log.warning("dropped a request line over %d bytes", line.limit)
                    continue
                try:
                    message = mcp_types.jsonrpc_message_adapter.validate_json(line, by_name=False)
                except Exception as exc:  # a pydantic ValidationError, handed on as the SDK does
                    await sink.send(exc)
                    continue
                await sink.send(SessionMessage(message))


async def _write_lines(
    stdout: trio.lowlevel.FdStream, source: MemoryObjectReceiveStream[SessionMessage]
) -> None:
    async with source:
        async for outgoing in source:
            data = outgoing.message.model_dump_json(by_alias=True, exclude_unset=True)
            try:
                await stdout.send_all(data.encode("utf-8") + b"\n")
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                log.debug("stdout failed: %s", exc)
                return


@contextlib.contextmanager
def _claimed_stdio() -> Iterator[tuple[int, int]]:
    """Private duplicates of fd 0 and fd 1 (rule 1)."""
    in_fd = os.dup(0)
    out_fd = os.dup(1)
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
        for fd in (0, 1):  # FdStream made the shared file descriptions non-blocking
            with contextlib.suppress(OSError):
                os.set_blocking(fd, True)
