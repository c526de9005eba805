"""BlockingClient against the scripted in-test broker; the client runs in a worker thread."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import pytest
import trio

from slm_mesh.client import BlockingClient, BrokerUnreachable, ConnectionLost
from slm_mesh.config import Limits, Settings
from slm_mesh.protocol.errors import LockConflict, PeerNotFound, TooLarge, Unauthorized

from .fakebroker import HELLO_RESULT, TOKEN, fake_broker

BOUND_S = 5
T = TypeVar("T")


async def in_thread(fn: Callable[[], T]) -> T:
    return await trio.to_thread.run_sync(fn)


async def test_a_call_gets_its_answer_after_the_hello(settings: Settings) -> None:
    def script() -> tuple[Any, Any]:
        with BlockingClient.connect(settings, client_name="script") as client:
            return client.hello, client.call("state.get", {"key": "k"})

    with trio.fail_after(BOUND_S):
        async with fake_broker(settings) as broker, trio.open_nursery() as nursery:

            async def serve() -> None:
                conn = await broker.connection()
                request = await conn.receive()
                assert (request["method"], request["params"]) == ("state.get", {"key": "k"})
                await conn.reply(request, {"value": 1})

            nursery.start_soon(serve)
            hello, value = await in_thread(script)
    assert hello == HELLO_RESULT
    assert value == {"value": 1}
    assert broker.hellos[0]["params"] == {"client": "script"}


async def test_error_answers_raise_the_class_of_their_code(settings: Settings) -> None:
    def script() -> None:
        with BlockingClient.connect(settings) as client:
            with pytest.raises(LockConflict) as conflict:
                client.call("lock.acquire", {"path": "a"})
            assert conflict.value.data == {"holders": ["p2"]}
            with pytest.raises(PeerNotFound):
                client.call("message.send", {"to": "bob", "body": "hi"})

    with trio.fail_after(BOUND_S):
        async with fake_broker(settings) as broker, trio.open_nursery() as nursery:

            async def serve() -> None:
                conn = await broker.connection()
                await conn.fail(await conn.receive(), -32003, "held", {"holders": ["p2"]})
                await conn.fail(await conn.receive(), -32002, "who?")

            nursery.start_soon(serve)
            await in_thread(script)


async def test_pushes_read_during_a_call_come_out_first(settings: Settings) -> None:
    def script() -> list[tuple[str, Any]]:
        with BlockingClient.connect(settings) as client:
            assert client.call("event.subscribe") == {"last_seq": 2}
            return list(client.notifications())

    with trio.fail_after(BOUND_S):
        async with fake_broker(settings) as broker, trio.open_nursery() as nursery:

            async def serve() -> None:
                conn = await broker.connection()
                request = await conn.receive()
                await conn.push("event", {"seq": 1})
                await conn.push("event", {"seq": 2})
                await conn.reply(request, {"last_seq": 2})
                await conn.push("message", {"id": 9})
                await conn.aclose()  # ends the stream

            nursery.start_soon(serve)
            pushes = await in_thread(script)
    assert pushes == [("event", {"seq": 1}), ("event", {"seq": 2}), ("message", {"id": 9})]


async def test_a_call_that_times_out_leaves_the_connection_usable(settings: Settings) -> None:
    def script() -> Any:
        with BlockingClient.connect(settings) as client:
            with pytest.raises(TimeoutError):
                client.call("lock.acquire", {"path": "a", "wait": 60}, timeout=0.1)
            return client.call("mesh.ping")

    with trio.fail_after(BOUND_S):
        async with fake_broker(settings) as broker, trio.open_nursery() as nursery:

            async def serve() -> None:
                conn = await broker.connection()
                late = await conn.receive()
                ping = await conn.receive()  # sent only after the first call gave up
                await conn.reply(late, {"granted": True})
                await conn.reply(ping, "pong")

            nursery.start_soon(serve)
            assert await in_thread(script) == "pong"


async def test_a_call_fails_with_connection_lost_when_the_broker_closes(
    settings: Settings,
) -> None:
    def script() -> None:
        with BlockingClient.connect(settings) as client:
            with pytest.raises(ConnectionLost):
                client.call("lock.acquire", {"path": "a"})
            with pytest.raises(ConnectionLost):
                client.call("mesh.ping")

    with trio.fail_after(BOUND_S):
        async with fake_broker(settings) as broker, trio.open_nursery() as nursery:

            async def serve() -> None:
                conn = await broker.connection()
                await conn.receive()
                await conn.aclose()

            nursery.start_soon(serve)
            await in_thread(script)


async def test_lines_over_the_cap_drop_the_connection_and_big_requests_stay_home(
    settings: Settings,
) -> None:
    small = Settings(
        settings.data_dir,
        settings.socket_path,
        limits=Limits(max_line_bytes=512, client_max_line_bytes=512),
    )

    def script() -> None:
        with BlockingClient.connect(small) as client:
            with pytest.raises(TooLarge):
                client.call("state.set", {"key": "k", "value": "v" * 600})
            with pytest.raises(ConnectionLost, match="over 512 bytes"):
                client.call("state.get", {"key": "k"})

    with trio.fail_after(BOUND_S):
        async with fake_broker(small) as broker, trio.open_nursery() as nursery:

            async def serve() -> None:
                conn = await broker.connection()
                request = await conn.receive()
                assert request["method"] == "state.get"
                await conn.reply(request, "x" * 4096)

            nursery.start_soon(serve)
            await in_thread(script)


async def test_tcp_hello_carries_the_token(settings: Settings) -> None:
    def script() -> str:
        with BlockingClient.connect(settings) as client:
            return client.address.kind

    with trio.fail_after(BOUND_S):
        async with fake_broker(settings, tcp=True) as broker:
            assert await in_thread(script) == "tcp"
            settings.token_path.write_text("00" * 32)
            with pytest.raises(Unauthorized):
                await in_thread(script)
    assert broker.hellos[0]["params"]["token"] == TOKEN


def test_no_broker_raises_unreachable_with_how_to_start_one(settings: Settings) -> None:
    settings.socket_path.touch()  # stale: refused
    with pytest.raises(BrokerUnreachable, match="slm-mesh start"):
        BlockingClient.connect(settings, timeout=1)


def test_importing_the_blocking_client_loads_no_async_stack() -> None:
    code = (
        "import sys, slm_mesh.client, slm_mesh.client.blocking, slm_mesh.client.autostart;"
        "heavy = [m for m in sys.modules if m.split('.')[0] in"
        " ('anyio', 'trio', 'mcp', 'pydantic', 'cyclopts', 'sqlite_utils')];"
        "print(heavy)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=30
    )
    assert out.stdout.strip() == "[]"
