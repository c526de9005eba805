"""An in-test broker that the test scripts line by line.

It answers ``mesh.hello`` by itself (checking the token on TCP), then hands each connection
to the test as a :class:`ServerConn`, which receives requests and sends whatever the test
wants: answers out of order, pushes, errors, garbage, or nothing at all.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.abc

from slm_mesh.config import Settings
from slm_mesh.protocol.framing import LineBuffer, LineTooLong

TOKEN = "ab" * 32
HELLO_RESULT = {"version": "0.1.0", "protocol": 1, "session": 1}


class ServerConn:
    """The broker's end of one client connection."""

    def __init__(self, stream: anyio.abc.ByteStream) -> None:
        self.stream = stream
        self._lines = LineBuffer(16 * 1024 * 1024)
        self._ready: deque[bytes] = deque()

    async def receive(self) -> dict[str, Any]:
        """The next request the client sent."""
        while not self._ready:
            for line in self._lines.feed(await self.stream.receive()):
                assert not isinstance(line, LineTooLong)
                self._ready.append(line)
        message: dict[str, Any] = json.loads(self._ready.popleft())
        return message

    async def send(self, message: Any) -> None:
        await self.send_raw(json.dumps(message).encode() + b"\n")

    async def send_raw(self, data: bytes) -> None:
        await self.stream.send(data)

    async def reply(self, request: dict[str, Any], result: Any) -> None:
        await self.send({"jsonrpc": "2.0", "id": request["id"], "result": result})

    async def fail(
        self, request: dict[str, Any], code: int, message: str = "no", data: Any = None
    ) -> None:
        error: dict[str, Any] = {"code": code, "message": message}
        if data is not None:
            error["data"] = data
        await self.send({"jsonrpc": "2.0", "id": request["id"], "error": error})

    async def push(self, method: str, params: Any) -> None:
        await self.send({"jsonrpc": "2.0", "method": method, "params": params})

    async def aclose(self) -> None:
        await self.stream.aclose()


class FakeBroker:
    """Accepts connections, does the hello, queues them for the test."""

    def __init__(self, token: str | None) -> None:
        self.token = token
        self.hellos: list[dict[str, Any]] = []
        self.hello_error: dict[str, Any] | None = None  # answer hellos with this error
        self._all: list[ServerConn] = []
        self._send, self._receive = anyio.create_memory_object_stream[ServerConn](100)

    async def connection(self) -> ServerConn:
        """The next connection that got past its hello."""
        return await self._receive.receive()

    async def serve(self, listener: anyio.abc.SocketListener) -> None:
        async with listener, anyio.create_task_group() as task_group:
            while True:
                stream = await listener.accept()
                conn = ServerConn(stream)
                self._all.append(conn)
                task_group.start_soon(self._greet, conn)

    async def _greet(self, conn: ServerConn) -> None:
        try:
            hello = await conn.receive()
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
            return
        self.hellos.append(hello)
        assert hello["method"] == "mesh.hello", hello
        if self.token is not None and hello["params"].get("token") != self.token:
            await conn.fail(hello, -32010, "unauthorized")
            await conn.aclose()
            return
        if self.hello_error is not None:
            await conn.fail(hello, **self.hello_error)
            return
        await conn.reply(hello, HELLO_RESULT)
        await self._send.send(conn)

    async def aclose(self) -> None:
        self._send.close()
        self._receive.close()
        with anyio.CancelScope(shield=True):
            for conn in self._all:
                await conn.aclose()


@asynccontextmanager
async def fake_broker(settings: Settings, *, tcp: bool = False) -> AsyncIterator[FakeBroker]:
    """Listen where ``settings`` say: the Unix socket, or (``tcp``) loopback with the port
    and token files written to the data dir, as the real broker does."""
    listener: anyio.abc.SocketListener
    if tcp:
        multi = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
        (tcp_listener,) = multi.listeners  # one host, one listener
        assert isinstance(tcp_listener, anyio.abc.SocketListener)
        listener = tcp_listener
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        settings.port_path.write_text(f"{port}\n")
        settings.token_path.write_text(TOKEN + "\n")
        broker = FakeBroker(TOKEN)
    else:
        listener = await anyio.create_unix_listener(settings.socket_path)
        broker = FakeBroker(None)
    try:
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(broker.serve, listener)
            yield broker
            task_group.cancel_scope.cancel()
    finally:
        await broker.aclose()
        # A stopped broker leaves no trace, so the next one can start cleanly.
        for path in (settings.socket_path, settings.port_path, settings.token_path):
            path.unlink(missing_ok=True)
