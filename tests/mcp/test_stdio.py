"""The stdio transport under a client that does not read: responses wait (bounded), come
out whole and in full once it reads, and the server still exits at once when told to; an
answer the launcher wrote already is not written twice."""

from __future__ import annotations

import logging
import os
import signal

import mcp_types
import pytest
import trio
from mcp.shared.message import SessionMessage

from slm_mesh.config import Settings
from slm_mesh.mcp_server.stdio import StdoutMessages, wire_line
from tests.mcp.raw import BOUND_S, raw_server

VALUE = "".join(f"{i:05d}," for i in range(10_000))  # 60 KB; each response carries it twice
PIPELINED = 60  # ~7 MB of responses: far past the pipe and the server's high water


async def test_responses_a_client_does_not_read_yet_wait_and_all_arrive_whole(
    settings: Settings,
) -> None:
    async with raw_server(settings) as client:
        await client.tool(1, "mesh_state", action="set", key="big", value=VALUE)
        with trio.fail_after(BOUND_S):
            assert not (await client.answer(1))["result"].get("isError")
        for i in range(PIPELINED):
            await client.tool(100 + i, "mesh_state", action="get", key="big")
        await trio.sleep(1)  # the server runs into the full pipe, then into its high water
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
        await trio.sleep(1)
        started = trio.current_time()
        os.kill(client.process.pid, signal.SIGTERM)
        with trio.fail_after(BOUND_S):
            await client.process.wait()
        assert trio.current_time() - started < 1.0
        assert client.process.returncode == 0


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
