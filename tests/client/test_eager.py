"""The eager writer: bytes arrive whole and in order however the kernel pushes back, a
cancelled caller never tears a line, memory stays bounded, failure is final."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import anyio
import pytest
import trio
import trio.lowlevel
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from slm_mesh.client.eager import EagerWriter, nonblocking_writer, refuse

Pair = tuple[socket.socket, socket.socket]
SMALL = 4096  # a send buffer this small makes the kernel push back at once


@pytest.fixture
def pair() -> Iterator[Pair]:
    """A connected pair, non-blocking, with buffers small enough to push back."""
    a, b = socket.socketpair()
    with a, b:
        a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SMALL)
        b.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL)
        a.setblocking(False)
        b.setblocking(False)
        yield a, b


async def read_all(sock: socket.socket, n: int) -> bytes:
    got = bytearray()
    while len(got) < n:
        with trio.fail_after(10):
            await trio.lowlevel.wait_readable(sock)
        chunk = sock.recv(65536)
        if not chunk:
            break
        got += chunk
    return bytes(got)


def lines(count: int, size: int) -> list[bytes]:
    return [(f"{i:06d}".encode() * (size // 6 + 1))[:size] + b"\n" for i in range(count)]


async def test_what_the_kernel_refuses_is_flushed_later_in_order(pair: Pair) -> None:
    a, b = pair
    writer = nonblocking_writer(a.send, a, high_water=1 << 30)
    sent = lines(200, 3000)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(writer.flush)
        for line in sent:
            writer.write(line)  # never waits: the rest is queued
        assert writer.queued > 0  # the kernel did push back
        received = await read_all(b, sum(map(len, sent)))
        writer.close()
    assert received == b"".join(sent)
    assert writer.queued == 0


async def test_a_caller_cancelled_after_a_partial_write_does_not_tear_its_line(pair: Pair) -> None:
    a, b = pair
    writer = nonblocking_writer(a.send, a, high_water=1000)
    big = lines(1, 200_000)[0]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(writer.flush)

        async def caller() -> None:
            writer.write(big)
            await writer.wait_for_room()  # blocks: far more than high_water is queued

        with trio.move_on_after(0.05) as scope:
            await caller()
        assert scope.cancelled_caught
        writer.write(b"next\n")
        received = await read_all(b, len(big) + 5)
        writer.close()
    assert received == big + b"next\n"


async def test_a_writer_over_its_high_water_waits_until_the_reader_catches_up(pair: Pair) -> None:
    a, b = pair
    writer = nonblocking_writer(a.send, a, high_water=10_000)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(writer.flush)
        writer.write(b"x" * 100_000)
        waited = trio.Event()

        async def waiter() -> None:
            await writer.wait_for_room()
            waited.set()

        nursery.start_soon(waiter)
        await trio.sleep(0.05)
        assert not waited.is_set()  # nobody reads: it must still wait
        await read_all(b, 100_000)
        with trio.fail_after(5):
            await waited.wait()
        writer.close()


async def test_a_vanished_reader_fails_the_writer_for_good(pair: Pair) -> None:
    a, b = pair
    writer = nonblocking_writer(a.send, a, high_water=1000)
    b.close()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(writer.flush)
        with pytest.raises(anyio.BrokenResourceError):
            writer.write(b"hello\n")  # EPIPE: the peer is gone
        with pytest.raises(anyio.BrokenResourceError):
            writer.write(b"again\n")
        assert isinstance(writer.error, OSError)


async def test_after_close_writes_are_refused_and_the_queue_still_goes_out(pair: Pair) -> None:
    a, b = pair
    writer = nonblocking_writer(a.send, a, high_water=1 << 30)
    data = b"y" * 50_000
    writer.write(data)
    writer.close()
    with pytest.raises(anyio.ClosedResourceError):
        writer.write(b"late\n")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(writer.flush)  # returns once the queue is written
        assert await read_all(b, len(data)) == data


async def test_without_a_direct_path_every_line_goes_through_the_stream() -> None:
    send, receive = anyio.create_memory_object_stream[bytes](100)
    async with send, receive:
        await _through_the_stream(send, receive)


async def _through_the_stream(
    send: MemoryObjectSendStream[bytes], receive: MemoryObjectReceiveStream[bytes]
) -> None:

    async def send_all(data: bytes) -> None:
        await send.send(data)

    writer = EagerWriter(refuse, send_all, high_water=1 << 20)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(writer.flush)
        writer.write(b"a\n")
        writer.write(b"b\n")
        got = b""
        while got != b"a\nb\n":
            got += await receive.receive()
        writer.close()
