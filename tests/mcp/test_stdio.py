"""The stdio transport under a client that does not read: responses wait (bounded), come
out whole and in full once it reads, and the server still exits at once when told to."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
from collections.abc import AsyncIterator
from typing import Any

import trio

from slm_mesh.config import Settings
from slm_mesh.protocol.framing import LineBuffer
from tests.mcp.harness import SERVER_ARGV, server_env, stop_pid
from tests.wire import processes_in

VALUE = "".join(f"{i:05d}," for i in range(10_000))  # 60 KB; each response carries it twice
PIPELINED = 60  # ~7 MB of responses: far past the pipe and the server's high water
BOUND_S = 60.0


class RawClient:
    """MCP as raw lines over the server's pipes, read only when the test says so."""

    def __init__(self, process: trio.Process) -> None:
        assert process.stdin is not None and process.stdout is not None
        self.process = process
        self.stdin = process.stdin
        self.stdout = process.stdout
        self.lines = LineBuffer(1 << 30)
        self.pending: list[bytes] = []

    async def send(self, message: dict[str, Any]) -> None:
        await self.stdin.send_all(json.dumps(message).encode() + b"\n")

    async def read_message(self) -> dict[str, Any]:
        while not self.pending:
            chunk = await self.stdout.receive_some(1 << 20)
            assert chunk, "the server closed stdout"
            fed = self.lines.feed(bytes(chunk))
            self.pending += [line for line in fed if isinstance(line, bytes)]
        message: dict[str, Any] = json.loads(self.pending.pop(0))  # whole lines only
        return message

    async def answer(self, id_: int) -> dict[str, Any]:
        while True:
            message = await self.read_message()
            if message.get("id") == id_:
                return message

    async def initialize(self) -> None:
        await self.send(
            {
                "jsonrpc": "2.0",
                "id": 0,
                "method": "initialize",
                "params": {
                    "protocolVersion": "2025-11-25",
                    "capabilities": {},
                    "clientInfo": {"name": "claude-code", "version": "test"},
                },
            }
        )
        await self.answer(0)
        await self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})

    async def tool(self, id_: int, name: str, **arguments: Any) -> None:
        params = {"name": name, "arguments": arguments}
        await self.send({"jsonrpc": "2.0", "id": id_, "method": "tools/call", "params": params})


@contextlib.asynccontextmanager
async def raw_server(settings: Settings) -> AsyncIterator[RawClient]:
    process = await trio.lowlevel.open_process(
        SERVER_ARGV,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=server_env(settings, "raw"),
    )
    try:
        client = RawClient(process)
        with trio.fail_after(BOUND_S):
            await client.initialize()
        yield client
    finally:
        with trio.CancelScope(shield=True):
            for pid in [process.pid, *processes_in(settings.data_dir)]:
                await stop_pid(pid)
            await process.wait()


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
