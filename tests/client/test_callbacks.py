"""MeshClient without a task per call: answers handed to a callback by the reader
(``call_soon``), pushes taken by an ``on_push`` callback as they are read. Against a
scripted in-test broker."""

from __future__ import annotations

from typing import Any

import pytest
import trio

from slm_mesh.client import ConnectionLost, MeshClient
from slm_mesh.client.wire import Response
from slm_mesh.config import Limits, Settings
from slm_mesh.protocol.errors import LockConflict, TooLarge

from .fakebroker import fake_broker

BOUND_S = 5


class Answers:
    """Collects what callbacks get, and says when the expected number came."""

    def __init__(self) -> None:
        self.got: list[Any] = []
        self.changed = trio.Event()

    def __call__(self, outcome: Any) -> None:
        self.got.append(outcome)
        self.changed.set()

    async def wait_for(self, n: int) -> list[Any]:
        while len(self.got) < n:
            self.changed = trio.Event()
            await self.changed.wait()
        return self.got


async def test_answers_reach_their_callbacks_whatever_their_order(settings: Settings) -> None:
    answers = Answers()
    with trio.fail_after(BOUND_S):
        async with fake_broker(settings) as broker, MeshClient.open(settings) as client:
            conn = await broker.connection()
            assert client.call_soon("state.get", {"key": "a"}, answers)
            assert client.call_soon("state.get", {"key": "b"}, answers)
            first, second = await conn.receive(), await conn.receive()
            assert [first["params"], second["params"]] == [{"key": "a"}, {"key": "b"}]
            await conn.reply(second, "B")
            await conn.fail(first, LockConflict.code, "held", {"path": "a"})
            got = await answers.wait_for(2)
    assert isinstance(got[0], Response) and got[0].result == "B"
    assert isinstance(got[1], Response) and isinstance(got[1].error, LockConflict)


async def test_a_callback_gets_connection_lost_when_the_broker_closes(settings: Settings) -> None:
    answers = Answers()
    with trio.fail_after(BOUND_S):
        async with fake_broker(settings) as broker, MeshClient.open(settings) as client:
            conn = await broker.connection()
            assert client.call_soon("lock.acquire", {"path": "x", "wait": 60}, answers)
            await conn.receive()
            await conn.aclose()
            (lost,) = await answers.wait_for(1)
            assert isinstance(lost, ConnectionLost)
            assert not client.call_soon("mesh.ping", None, answers)  # nothing goes out now
    assert len(answers.got) == 1  # each callback is called once


async def test_a_request_over_the_cap_is_refused_before_it_is_sent(settings: Settings) -> None:
    small = Settings(
        data_dir=settings.data_dir,
        socket_path=settings.socket_path,
        limits=Limits(max_line_bytes=1024, client_max_line_bytes=1024),
    )
    answers = Answers()
    with trio.fail_after(BOUND_S):
        async with fake_broker(small), MeshClient.open(small) as client:
            with pytest.raises(TooLarge):
                client.call_soon("message.send", {"to": "x", "body": "y" * 2000}, answers)
    assert answers.got == []


async def test_a_failing_callback_is_logged_and_the_reader_carries_on(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(outcome: Any) -> None:
        raise RuntimeError("a bug in the callback")

    with trio.fail_after(BOUND_S):
        async with fake_broker(settings) as broker, MeshClient.open(settings) as client:
            conn = await broker.connection()
            assert client.call_soon("mesh.ping", None, broken)
            await conn.reply(await conn.receive(), "pong")
            async with trio.open_nursery() as nursery:

                async def serve() -> None:
                    await conn.reply(await conn.receive(), "pong")

                nursery.start_soon(serve)
                assert await client.call("mesh.ping") == "pong"
    assert "a bug in the callback" in caplog.text


async def test_on_push_takes_each_push_in_order_as_it_is_read(settings: Settings) -> None:
    seen: list[tuple[str, Any]] = []
    with trio.fail_after(BOUND_S):
        async with (
            fake_broker(settings) as broker,
            MeshClient.open(settings, on_push=lambda m, p: seen.append((m, p))) as client,
        ):
            conn = await broker.connection()
            async with trio.open_nursery() as nursery:

                async def serve() -> None:
                    request = await conn.receive()
                    await conn.push("message", {"id": 1})
                    await conn.push("event", {"seq": 1})
                    await conn.reply(request, {"last_seq": 0})

                nursery.start_soon(serve)
                assert await client.call("event.subscribe") == {"last_seq": 0}
                # Taken by the time the answer after them is: in the reader, not later.
                assert seen == [("message", {"id": 1}), ("event", {"seq": 1})]
                assert client.messages_pushed == 1
            await conn.aclose()
            # The stream holds none of them, and still ends when the connection drops.
            assert [push async for push in client.notifications] == []
