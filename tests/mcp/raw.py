"""A raw MCP client for a real ``slm-mesh mcp`` process: JSON lines written and read by
hand, for what the SDK's ``ClientSession`` would not do (read late, send odd requests)."""

from __future__ import annotations

import contextlib
import json
import subprocess
from collections.abc import AsyncIterator
from typing import Any

import trio

from slm_mesh.config import Settings
from slm_mesh.protocol.framing import LineBuffer
from tests.mcp.harness import SERVER_ARGV, server_env, stop_pid
from tests.wire import processes_in

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
