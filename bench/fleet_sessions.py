"""Agent sessions for ``bench/fleet.py``: a server process and the client that drives it.

``SdkSession`` drives it with the mcp SDK's ``ClientSession``, as an agent does
(``initialize`` at 2025-11-25, ``tools/list``, ``tools/call``; channel notifications
through a ``NotificationBinding``). ``RawSession`` writes the same JSON-RPC lines by hand,
which costs the driving process far less CPU.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

if TYPE_CHECKING:
    from bench.fleet_adapters import Adapter

BOUND_S = 60.0
PROTOCOL_VERSION = "2025-11-25"


@dataclass
class CallResult:
    structured: dict[str, Any] | None
    text: str


def _text(content: list[Any]) -> str:
    return "".join(
        (c.get("text", "") if isinstance(c, dict) else getattr(c, "text", "")) for c in content
    )


class RawSession:
    """One agent session: a server process and MCP lines written by hand on its pipes."""

    def __init__(self, proc: trio.Process, name: str) -> None:
        self.proc = proc
        self.name = name
        self.pid = proc.pid
        self.ids = 0
        self.waiting: dict[int, tuple[trio.Event, list[Any]]] = {}
        self.channel: list[tuple[float, dict[str, Any]]] = []
        self.channel_event = trio.Event()

    async def read_loop(self) -> None:
        assert self.proc.stdout is not None
        buf = b""
        async for chunk in self.proc.stdout:
            buf += chunk
            while b"\n" in buf:
                line, _, buf = buf.partition(b"\n")
                msg = json.loads(line)
                if "id" in msg and msg["id"] in self.waiting:
                    event, box = self.waiting.pop(msg["id"])
                    box.append(msg)
                    event.set()
                elif msg.get("method") == "notifications/claude/channel":
                    self.channel.append((time.perf_counter(), msg["params"]))
                    self.channel_event.set()

    async def send(self, msg: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        await self.proc.stdin.send_all(json.dumps(msg).encode() + b"\n")

    async def request(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        self.ids += 1
        event, box = trio.Event(), list[Any]()
        self.waiting[self.ids] = (event, box)
        await self.send({"jsonrpc": "2.0", "id": self.ids, "method": method, "params": params})
        with trio.fail_after(BOUND_S):
            await event.wait()
        answer: dict[str, Any] = box[0]
        if "error" in answer:
            raise RuntimeError(answer["error"])
        return answer

    async def initialize(self) -> None:
        await self.request(
            "initialize",
            {
                "protocolVersion": PROTOCOL_VERSION,
                "capabilities": {},
                "clientInfo": {"name": "claude-code", "version": "bench"},
            },
        )
        await self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})

    async def list_tools(self) -> int:
        return len((await self.request("tools/list", {}))["result"]["tools"])

    async def call(self, name: str, arguments: dict[str, Any]) -> CallResult:
        answer = await self.request("tools/call", {"name": name, "arguments": arguments})
        result: dict[str, Any] = answer["result"]
        if result.get("isError"):
            raise RuntimeError(result)
        return CallResult(result.get("structuredContent"), _text(result.get("content", [])))

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await self.read_loop()

    async def close(self) -> None:
        """End the session as an agent does: close the server's stdin."""
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            assert self.proc.stdin is not None
            await self.proc.stdin.aclose()


class SdkSession:
    """One agent session driven by the mcp SDK's ``ClientSession``."""

    def __init__(self, proc: trio.Process, name: str) -> None:
        self.proc = proc
        self.name = name
        self.pid = proc.pid
        self.channel: list[tuple[float, dict[str, Any]]] = []
        self.channel_event = trio.Event()
        self._session: Any = None
        self._release = trio.Event()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        import mcp_types
        from mcp.client.extension import NotificationBinding
        from mcp.client.session import ClientSession
        from tests.mcp.harness import CHANNEL_METHOD, ChannelParams, process_streams

        async def on_channel(params: ChannelParams) -> None:
            self.channel.append((time.perf_counter(), params.model_dump()))
            self.channel_event.set()

        binding = NotificationBinding(
            method=CHANNEL_METHOD, params_type=ChannelParams, handler=on_channel
        )
        async with (
            process_streams(self.proc) as (read, write),
            ClientSession(
                read,
                write,
                client_info=mcp_types.Implementation(name="claude-code", version="bench"),
                notification_bindings=[binding],
            ) as session,
        ):
            self._session = session
            task_status.started()
            await self._release.wait()

    async def initialize(self) -> None:
        with trio.fail_after(BOUND_S):
            await self._session.initialize()

    async def list_tools(self) -> int:
        with trio.fail_after(BOUND_S):
            return len((await self._session.list_tools()).tools)

    async def call(self, name: str, arguments: dict[str, Any]) -> CallResult:
        with trio.fail_after(BOUND_S):
            result = await self._session.call_tool(name, arguments)
        if result.is_error:
            raise RuntimeError(result)
        return CallResult(result.structured_content, _text(result.content))

    async def close(self) -> None:
        self._release.set()


Session = RawSession | SdkSession
CLIENTS: dict[str, type[RawSession] | type[SdkSession]] = {"sdk": SdkSession, "raw": RawSession}
Spawn = Callable[[str], Awaitable[Session]]


async def end(adapter: Adapter, s: Session, *, wait: bool = True) -> None:
    """End a session as an agent does: close the server's stdin (then SIGTERM, for a
    server that stays); with ``wait``, until the process is gone."""
    if not adapter.exits_on_eof:
        with contextlib.suppress(ProcessLookupError):
            s.proc.terminate()
    await s.close()
    if wait:
        with trio.fail_after(BOUND_S):
            await s.proc.wait()


@contextlib.asynccontextmanager
async def fleet(adapter: Adapter, client: str, data_dir: Path) -> AsyncIterator[Spawn]:
    """``spawn(name) -> Session``; at the end every session is closed (stdin EOF) and
    every process of the cluster killed by pid."""
    sessions: list[Session] = []
    async with trio.open_nursery() as nursery:

        async def spawn(name: str) -> Session:
            proc = await trio.lowlevel.open_process(
                adapter.command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                env=adapter.env(data_dir, name),
            )
            session = CLIENTS[client](proc, name)
            sessions.append(session)
            await nursery.start(session.run)
            return session

        try:
            yield spawn
        finally:
            try:
                for s in sessions:
                    await end(adapter, s, wait=False)
                with trio.move_on_after(5):
                    for s in sessions:
                        await s.proc.wait()
            finally:  # even when cancelled: nothing of the cluster outlives it
                adapter.kill_all(data_dir)
                for s in sessions:
                    with contextlib.suppress(ProcessLookupError):
                        s.proc.kill()
                nursery.cancel_scope.cancel()
