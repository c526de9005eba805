"""The stdio transport under a client that does not read: responses wait (bounded), come
out whole and in full once it reads, and the server still exits at once when told to; an
answer the launcher wrote already is not written twice."""

from __future__ import annotations

import array
import fcntl
import logging
import os
import signal
import termios

import mcp_types
import pytest
import trio
from mcp.shared.message import SessionMessage

from slm_mesh.config import Settings
from slm_mesh.mcp_server.stdio import StdoutMessages, wire_line
from tests.mcp.raw import BOUND_S, raw_server

VALUE = "".join(f"{i:05d}," for i in range(10_000))  # 60 KB; each response carries it twice
PIPELINED = 60  # ~7 MB of responses: far past the pipe and the server's high water
F_GETPIPE_SZ = 1032  # Linux (fcntl.F_GETPIPE_SZ from Python 3.10, not in every build)
POLL_S = 0.01
PAGE = 4096


async def test_responses_a_client_does_not_read_yet_wait_and_all_arrive_whole(
    settings: Settings,
) -> None:
    async with raw_server(settings) as client:
        await client.tool(1, "mesh_state", action="set", key="big", value=VALUE)
        with trio.fail_after(BOUND_S):
            assert not (await client.answer(1))["result"].get("isError")
        for i in range(PIPELINED):
            await client.tool(100 + i, "mesh_state", action="get", key="big")
        assert isinstance(client.stdout, trio.lowlevel.FdStream)
        with trio.fail_after(BOUND_S):  # until the server runs into the full pipe
            await pipe_full(client.stdout.fileno())
        answered: set[int] = set()
        with trio.fail_after(BOUND_S):
            while len(answered) < PIPELINED:
                message = await client.read_message()
                result = message["result"]
                assert not result.get("isError"), result
                assert result["structuredContent"]["value"] == VALUE
                answered.add(message["id"])
        assert answered == {100 + i for i in range(PIPELINED)}
        # And the session still works.
        await client.tool(2, "mesh_status")
        with trio.fail_after(BOUND_S):
            assert "result" in await client.answer(2)


async def test_a_server_whose_client_stopped_reading_still_exits_on_sigterm(
    settings: Settings,
) -> None:
    async with raw_server(settings) as client:
        await client.tool(1, "mesh_state", action="set", key="big", value=VALUE)
        for i in range(PIPELINED):
            await client.tool(100 + i, "mesh_state", action="get", key="big")
        assert isinstance(client.stdout, trio.lowlevel.FdStream)
        with trio.fail_after(BOUND_S):  # until the server is stuck writing
            await pipe_full(client.stdout.fileno())
        started = trio.current_time()
        os.kill(client.process.pid, signal.SIGTERM)
        with trio.fail_after(BOUND_S):
            await client.process.wait()
        assert trio.current_time() - started < 1.0
        assert client.process.returncode == 0


async def pipe_full(fd: int) -> None:
    """Return once the pipe whose read end is ``fd`` holds all it can (but for the rest
    of a page: a pipe fills by pages, and a large write leaves part of one unused)."""
    size = fcntl.fcntl(fd, F_GETPIPE_SZ)
    while True:
        held = array.array("i", [0])
        fcntl.ioctl(fd, termios.FIONREAD, held)
        if held[0] > size - PAGE:
            return
        await trio.sleep(POLL_S)


async def test_what_the_launcher_answered_is_not_answered_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    r, w = os.pipe()
    os.set_blocking(w, False)
    try:
        same = response(1)
        out = StdoutMessages(w, {1: wire_line(same), 2: b"what a stale launcher sent\n"})
        await out.send(same)  # the launcher wrote exactly this: not again
        with caplog.at_level(logging.ERROR):
            await out.send(response(2))  # it wrote something else: not again, but said
        assert "stale" in caplog.text
        await out.send(response(2))  # a later answer with that id goes out
        notification = SessionMessage(
            mcp_types.JSONRPCNotification(jsonrpc="2.0", method="notifications/x", params={})
        )
        await out.send(notification)
        assert os.read(r, 1 << 16) == wire_line(response(2)) + wire_line(notification)
    finally:
        os.close(r)
        os.close(w)


def response(request_id: int) -> SessionMessage:
    return SessionMessage(mcp_types.JSONRPCResponse(jsonrpc="2.0", id=request_id, result={}))
