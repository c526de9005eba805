"""slm_mesh.direct_read: reads straight from a non-blocking pipe under trio (its rules)."""

from __future__ import annotations

import contextlib
import errno
import functools
import os
from collections.abc import Iterator

import pytest
import trio

from slm_mesh.direct_read import READS_BEFORE_YIELD, DirectReader


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    r, w = os.pipe()
    os.set_blocking(r, False)
    yield r, w
    for fd in (r, w):
        with contextlib.suppress(OSError):  # closed by the test
            os.close(fd)


def reader(fd: int, size: int = 1024) -> DirectReader:
    return DirectReader(functools.partial(os.read, fd), fd, size)


async def test_reads_what_is_there_then_the_end(pipe: tuple[int, int]) -> None:
    r, w = pipe
    os.write(w, b"hello\n")
    os.close(w)
    direct = reader(r)
    assert await direct.receive() == b"hello\n"
    assert await direct.receive() == b""


async def test_waits_for_input(pipe: tuple[int, int]) -> None:
    r, w = pipe
    direct = reader(r)
    got: list[bytes] = []
    async with trio.open_nursery() as nursery:

        async def read() -> None:
            got.append(await direct.receive())

        nursery.start_soon(read)
        await trio.testing.wait_all_tasks_blocked()
        assert got == []  # nothing to read: it waits, it does not spin or return b""
        os.write(w, b"late")
    assert got == [b"late"]


async def test_a_cancelled_caller_reads_nothing(pipe: tuple[int, int]) -> None:
    r, w = pipe
    os.write(w, b"kept")
    direct = reader(r)
    with trio.CancelScope() as scope:
        scope.cancel()
        await direct.receive()
    assert scope.cancelled_caught
    assert await direct.receive() == b"kept"  # the bytes stayed for the next caller


async def test_a_reader_that_always_finds_input_lets_others_run(pipe: tuple[int, int]) -> None:
    r, w = pipe
    os.write(w, b"x" * (READS_BEFORE_YIELD * 4))
    direct = reader(r, size=1)
    reads_before_other_ran: list[int] = []
    reads = 0

    async def other() -> None:
        reads_before_other_ran.append(reads)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(other)
        # trio.sleep(0) would let ``other`` run; the reader alone must yield by itself.
        for _ in range(READS_BEFORE_YIELD * 4):
            assert await direct.receive() == b"x"
            reads += 1
    # Every READS_BEFORE_YIELD-th read yields (after reading, before returning its bytes);
    # trio runs a batch of ready tasks in random order, so the reader may win the first
    # time. Without the yield, ``other`` would run only after all the reads.
    (ran_after,) = reads_before_other_ran
    assert ran_after in (READS_BEFORE_YIELD - 1, 2 * READS_BEFORE_YIELD - 1)


async def test_a_failed_read_raises_its_oserror() -> None:
    def broken(size: int) -> bytes:
        raise OSError(errno.EBADF, "Bad file descriptor")

    with pytest.raises(OSError, match="Bad file descriptor"):
        await DirectReader(broken, 0, 1024).receive()
