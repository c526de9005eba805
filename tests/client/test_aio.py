"""MeshClient against a scripted in-test broker: matching, pushes, errors, drops, reconnect."""

from __future__ import annotations

import contextlib
from typing import Any

import anyio
import pytest
import trio
import trio.testing

from slm_mesh.client import BrokerUnreachable, ConnectionLost, MeshClient
from slm_mesh.config import Limits, Settings
from slm_mesh.protocol.errors import (
    LOCK_CONFLICT,
    LockConflict,
    MeshError,
    NotRegistered,
    TooLarge,
    Unauthorized,
)

from .fakebroker import HELLO_RESULT, TOKEN, fake_broker

BOUND_S = 5  # no test waits longer than this for anything


async def test_hello_names_the_client_and_its_answer_is_kept(settings: Settings) -> None:
    with trio.fail_after(BOUND_S):
        async with (
            fake_broker(settings) as broker,
            MeshClient.open(settings, client_name="tester/1") as client,
        ):
            assert client.hello == HELLO_RESULT
            assert client.connected
            assert client.address is not None and client.address.kind == "unix"
    assert broker.hellos[0]["params"] == {"client": "tester/1"}  # no token on the socket


async def test_answers_that_come_out_of_order_reach_their_callers(settings: Settings) -> None:
    results: dict[int, Any] = {}
    with trio.fail_after(BOUND_S):
        async with fake_broker(settings) as broker, MeshClient.open(settings) as client:
            conn = await broker.connection()

            async def ask(n: int) -> None:
                results[n] = await client.call("state.get", {"key": f"k{n}"})

            async with trio.open_nursery() as nursery:
                for n in range(3):
                    nursery.start_soon(ask, n)
                requests = [await conn.receive() for _ in range(3)]
                for request in reversed(requests):
                    await conn.reply(request, request["params"]["key"])
    assert results == {0: "k0", 1: "k1", 2: "k2"}
    ids = [r["id"] for r in requests]
    assert len(set(ids)) == 3 and all(type(i) is int for i in ids)


async def test_many_concurrent_calls_share_one_connection(settings: Settings) -> None:
    count = 200
    results: list[Any] = []
    with trio.fail_after(BOUND_S):
        async with fake_broker(settings) as broker, MeshClient.open(settings) as client:
            conn = await broker.connection()

            async def echo_server() -> None:
                for _ in range(count):
                    request = await conn.receive()
                    await conn.reply(request, request["params"]["n"])

            async def ask(n: int) -> None:
                results.append(await client.call("mesh.ping", {"n": n}))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(echo_server)
                for n in range(count):
                    nursery.start_soon(ask, n)
    assert sorted(results) == list(range(count))
    assert len(broker.hellos) == 1


async def test_error_answers_raise_the_class_of_their_code(settings: Settings) -> None:
    holders = [{"peer_id": "p1", "path": "/src/a.py"}]
    with trio.fail_after(BOUND_S):
        async with fake_broker(settings) as broker, MeshClient.open(settings) as client:
            conn = await broker.connection()
            async with trio.open_nursery() as nursery:

                async def answer() -> None:
                    await conn.fail(
                        await conn.receive(), LOCK_CONFLICT, "held", {"holders": holders}
                    )
                    await conn.fail(await conn.receive(), -32099, "odd")

                nursery.start_soon(answer)
                with pytest.raises(LockConflict) as conflict:
                    await client.call("lock.acquire", {"path": "/src/a.py"})
                with pytest.raises(MeshError) as unknown:
                    await client.call("mesh.ping")
    assert conflict.value.code == LOCK_CONFLICT
    assert conflict.value.data == {"holders": holders}
    assert type(unknown.value) is MeshError and unknown.value.code == -32099


async def test_an_error_raised_in_the_body_is_not_wrapped_in_a_group(settings: Settings) -> None:
    with trio.fail_after(BOUND_S):
        async with fake_broker(settings) as broker, trio.open_nursery() as nursery:

            async def serve() -> None:
                conn = await broker.connection()
                await conn.fail(await conn.receive(), -32001, "register first")

            nursery.start_soon(serve)
            with pytest.raises(NotRegistered):
                async with MeshClient.open(settings) as client:
                    await client.call("peer.whoami")


async def test_pushes_arrive_in_order_between_answers(settings: Settings) -> None:
    with trio.fail_after(BOUND_S):
        async with fake_broker(settings) as broker, MeshClient.open(settings) as client:
            conn = await broker.connection()
            async with trio.open_nursery() as nursery:

                async def serve() -> None:
                    request = await conn.receive()
                    await conn.push("message", {"id": 1})
                    await conn.reply(request, {"last_seq": 0})
                    await conn.push("event", {"seq": 1})
                    await conn.send({"jsonrpc": "2.0", "method": "mesh.shutdown"})

                nursery.start_soon(serve)
                assert await client.call("event.subscribe") == {"last_seq": 0}
                received = [await client.notifications.receive() for _ in range(3)]
    assert received == [("message", {"id": 1}), ("event", {"seq": 1}), ("mesh.shutdown", {})]


async def test_pending_calls_fail_and_pushes_end_when_the_broker_closes(
    settings: Settings,
) -> None:
    outcomes: list[BaseException] = []
    with trio.fail_after(BOUND_S):
        async with fake_broker(settings) as broker, MeshClient.open(settings) as client:
            conn = await broker.connection()

            async def ask() -> None:
                try:
                    await client.call("lock.acquire", {"path": "x", "wait": 60})
                except ConnectionLost as exc:
                    outcomes.append(exc)

            async with trio.open_nursery() as nursery:
                for _ in range(3):
                    nursery.start_soon(ask)
                for _ in range(3):
                    await conn.receive()
                await conn.push("message", {"id": 7})
                await conn.aclose()
            # What was buffered is still read, then the stream ends.
            pushes = [push async for push in client.notifications]
            assert not client.connected
            with pytest.raises(ConnectionLost):
                await client.call("mesh.ping")
    assert len(outcomes) == 3
    assert pushes == [("message", {"id": 7})]


async def test_a_line_over_the_cap_drops_the_connection(settings: Settings) -> None:
    small = Settings(
        data_dir=settings.data_dir,
        socket_path=settings.socket_path,
        limits=Limits(max_line_bytes=1024, client_max_line_bytes=1024),
    )
    with trio.fail_after(BOUND_S):
        async with fake_broker(small) as broker, MeshClient.open(small) as client:
            conn = await broker.connection()
            async with trio.open_nursery() as nursery:

                async def serve() -> None:
                    request = await conn.receive()
                    # Sent in pieces: the client must give up without buffering it all.
                    head = b'{"jsonrpc":"2.0","id":%d,"result":"' % request["id"]
                    with contextlib.suppress(anyio.BrokenResourceError, OSError):
                        await conn.send_raw(head)
                        for _ in range(64):
                            await conn.send_raw(b"x" * 1024)

                nursery.start_soon(serve)
                with pytest.raises(ConnectionLost, match="over 1024 bytes"):
                    await client.call("state.get", {"key": "big"})


async def test_a_request_over_the_cap_is_refused_before_it_is_sent(settings: Settings) -> None:
    small = Settings(
        data_dir=settings.data_dir,
        socket_path=settings.socket_path,
        limits=Limits(max_line_bytes=1024, client_max_line_bytes=1024),
    )
    with trio.fail_after(BOUND_S):
        async with fake_broker(small) as broker, MeshClient.open(small) as client:
            conn = await broker.connection()
            with pytest.raises(TooLarge):
                await client.call("state.set", {"key": "k", "value": "v" * 2000})
            async with trio.open_nursery() as nursery:
                nursery.start_soon(client.call, "mesh.ping")
                request = await conn.receive()
                assert request["method"] == "mesh.ping"  # the big one never went out
                await conn.reply(request, "pong")


async def test_garbage_lines_are_skipped(settings: Settings) -> None:
    with trio.fail_after(BOUND_S):
        async with fake_broker(settings) as broker, MeshClient.open(settings) as client:
            conn = await broker.connection()
            async with trio.open_nursery() as nursery:

                async def serve() -> None:
                    request = await conn.receive()
                    await conn.send_raw(b"not json\n[1,2]\n\n{}\n")
                    await conn.reply(request, "pong")

                nursery.start_soon(serve)
                assert await client.call("mesh.ping") == "pong"


async def test_a_cancelled_call_leaves_the_connection_usable(settings: Settings) -> None:
    with trio.fail_after(BOUND_S):
        async with fake_broker(settings) as broker, MeshClient.open(settings) as client:
            conn = await broker.connection()
            with trio.move_on_after(0.05):
                await client.call("lock.acquire", {"path": "x", "wait": 60})
            late = await conn.receive()
            async with trio.open_nursery() as nursery:

                async def serve() -> None:
                    request = await conn.receive()
                    await conn.reply(late, {"granted": True})  # nobody waits for this one
                    await conn.reply(request, "pong")

                nursery.start_soon(serve)
                assert await client.call("mesh.ping") == "pong"


async def test_a_full_push_buffer_holds_the_reader_back_and_loses_nothing(
    settings: Settings,
) -> None:
    answered = trio.Event()
    with trio.fail_after(BOUND_S):
        async with (
            fake_broker(settings) as broker,
            MeshClient.open(settings, notification_buffer=2) as client,
        ):
            conn = await broker.connection()
            async with trio.open_nursery() as nursery:

                async def ask() -> None:
                    await client.call("mesh.ping")
                    answered.set()

                nursery.start_soon(ask)
                request = await conn.receive()
                for n in range(5):
                    await conn.push("event", {"seq": n})
                await conn.reply(request, "pong")
                await trio.testing.wait_all_tasks_blocked()
                assert not answered.is_set()  # the answer waits behind unread pushes
                seqs = [(await client.notifications.receive())[1]["seq"] for _ in range(5)]
                await answered.wait()
    assert seqs == [0, 1, 2, 3, 4]


async def test_closing_the_push_stream_drops_pushes_but_not_answers(settings: Settings) -> None:
    with trio.fail_after(BOUND_S):
        async with (
            fake_broker(settings) as broker,
            MeshClient.open(settings, notification_buffer=1) as client,
        ):
            conn = await broker.connection()
            client.notifications.close()
            async with trio.open_nursery() as nursery:

                async def serve() -> None:
                    request = await conn.receive()
                    for n in range(10):
                        await conn.push("event", {"seq": n})
                    await conn.reply(request, "pong")

                nursery.start_soon(serve)
                assert await client.call("mesh.ping") == "pong"


async def test_tcp_hello_carries_the_token_from_the_data_dir(settings: Settings) -> None:
    with trio.fail_after(BOUND_S):
        async with fake_broker(settings, tcp=True) as broker, MeshClient.open(settings) as client:
            assert client.address is not None and client.address.kind == "tcp"
    assert broker.hellos[0]["params"] == {"client": "slm-mesh", "token": TOKEN}


async def test_a_refused_hello_raises_its_error(settings: Settings) -> None:
    with trio.fail_after(BOUND_S):
        async with fake_broker(settings, tcp=True):
            settings.token_path.write_text("00" * 32)
            with pytest.raises(Unauthorized):
                async with MeshClient.open(settings):
                    pass


async def test_a_stale_socket_file_falls_back_to_tcp(settings: Settings) -> None:
    settings.socket_path.touch()  # left behind by a dead broker: connecting is refused
    with trio.fail_after(BOUND_S):
        async with fake_broker(settings, tcp=True), MeshClient.open(settings) as client:
            assert client.address is not None and client.address.kind == "tcp"


async def test_no_broker_raises_unreachable_with_how_to_start_one(settings: Settings) -> None:
    with trio.fail_after(BOUND_S), pytest.raises(BrokerUnreachable, match="slm-mesh start"):
        async with MeshClient.open(settings):
            pass


async def test_reconnect_waits_for_the_broker_and_resumes_the_peer(settings: Settings) -> None:
    params = {"cwd": "/work", "name": "alice", "summary": "tests"}
    first_gone = trio.Event()
    done = trio.Event()
    resumes: list[dict[str, Any]] = []

    async def first_broker(*, task_status: trio.TaskStatus[None]) -> None:
        async with fake_broker(settings) as broker:
            task_status.started()
            conn = await broker.connection()
            request = await conn.receive()
            assert request["method"] == "peer.register"
            await conn.reply(request, {"peer_id": "p1", "name": "alice", "resume_token": "t1"})
            await first_gone.wait()
        # Leaving closed every connection and removed the socket file.

    async def second_broker() -> None:
        await trio.sleep(0.2)  # meanwhile reconnect finds nothing and retries
        async with fake_broker(settings) as broker:
            conn = await broker.connection()
            request = await conn.receive()
            resumes.append(request)
            await conn.reply(request, {"peer_id": "p1", "name": "alice", "resume_token": "t2"})
            await done.wait()

    with trio.fail_after(BOUND_S):
        async with trio.open_nursery() as nursery:
            await nursery.start(first_broker)
            async with MeshClient.open(settings) as client:
                assert (await client.register(**params))["peer_id"] == "p1"
                first_gone.set()
                async for _ in client.notifications:
                    pass  # the stream ends when the connection drops
                nursery.start_soon(second_broker)
                await client.reconnect(retry_for=BOUND_S)
                assert client.connected
                assert (client.peer_id, client.resume_token) == ("p1", "t2")
                done.set()
    assert resumes[0]["method"] == "peer.register"
    assert resumes[0]["params"] == {**params, "resume": "t1"}


async def test_reconnect_of_an_anonymous_client_only_says_hello(settings: Settings) -> None:
    with trio.fail_after(BOUND_S):
        async with fake_broker(settings) as broker, MeshClient.open(settings) as client:
            first = await broker.connection()
            await first.aclose()
            await client.reconnect(retry_for=1)
            second = await broker.connection()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(client.call, "mesh.ping")
                request = await second.receive()
                assert request["method"] == "mesh.ping"  # not peer.register
                await second.reply(request, "pong")
    assert len(broker.hellos) == 2


async def test_reconnect_gives_up_after_retry_for(settings: Settings) -> None:
    with trio.fail_after(BOUND_S):
        async with trio.open_nursery() as nursery:
            stop = trio.Event()

            async def broker(*, task_status: trio.TaskStatus[None]) -> None:
                async with fake_broker(settings):
                    task_status.started()
                    await stop.wait()

            await nursery.start(broker)
            async with MeshClient.open(settings) as client:
                stop.set()
                async for _ in client.notifications:
                    pass  # the stream ends when the connection drops
                started = trio.current_time()
                with pytest.raises(BrokerUnreachable, match="slm-mesh start"):
                    await client.reconnect(retry_for=0.3)
                assert trio.current_time() - started >= 0.3


async def test_reconnect_while_connected_does_nothing(settings: Settings) -> None:
    with trio.fail_after(BOUND_S):
        async with fake_broker(settings) as broker, MeshClient.open(settings) as client:
            await client.reconnect()
            assert client.connected
    assert len(broker.hellos) == 1


async def test_tasks_that_saw_the_same_drop_share_one_new_connection(settings: Settings) -> None:
    with trio.fail_after(BOUND_S):
        async with fake_broker(settings) as broker, MeshClient.open(settings) as client:
            await (await broker.connection()).aclose()
            async for _ in client.notifications:
                pass
            async with trio.open_nursery() as nursery:
                for _ in range(5):
                    nursery.start_soon(client.reconnect)
            assert client.connected
    assert len(broker.hellos) == 2


async def test_no_call_goes_out_before_the_peer_is_resumed(settings: Settings) -> None:
    with trio.fail_after(BOUND_S):
        async with fake_broker(settings) as broker, MeshClient.open(settings) as client:
            first = await broker.connection()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(client.register)
                request = await first.receive()
                await first.reply(request, {"peer_id": "p1", "resume_token": "t1"})
            await first.aclose()
            async for _ in client.notifications:
                pass
            async with trio.open_nursery() as nursery:
                nursery.start_soon(client.reconnect)
                second = await broker.connection()
                resume = await second.receive()
                assert resume["params"] == {"resume": "t1"}
                # While the resume is unanswered the new connection is not the client's yet.
                with pytest.raises(ConnectionLost):
                    await client.call("lock.acquire", {"path": "a"})
                await second.reply(resume, {"peer_id": "p1", "resume_token": "t2"})
            assert client.resume_token == "t2"
            async with trio.open_nursery() as nursery:
                nursery.start_soon(client.call, "peer.whoami")
                request = await second.receive()
                assert request["method"] == "peer.whoami"  # the refused lock never went out
                await second.reply(request, {})


async def test_after_unregister_a_reconnect_does_not_resume(settings: Settings) -> None:
    with trio.fail_after(BOUND_S):
        async with fake_broker(settings) as broker, MeshClient.open(settings) as client:
            conn = await broker.connection()
            async with trio.open_nursery() as nursery:

                async def serve() -> None:
                    await conn.reply(await conn.receive(), {"peer_id": "p1", "resume_token": "t"})
                    await conn.reply(await conn.receive(), {})

                nursery.start_soon(serve)
                await client.register(cwd="/w")
                await client.unregister()
            assert client.peer_id is None
            await conn.aclose()
            async for _ in client.notifications:
                pass
            await client.reconnect()
            second = await broker.connection()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(client.call, "mesh.ping")
                request = await second.receive()
                assert request["method"] == "mesh.ping"
                await second.reply(request, "pong")


async def test_aclose_fails_the_waiting_calls(settings: Settings) -> None:
    with trio.fail_after(BOUND_S):
        async with fake_broker(settings) as broker, MeshClient.open(settings) as client:
            conn = await broker.connection()
            async with trio.open_nursery() as nursery:

                async def ask() -> None:
                    with pytest.raises(ConnectionLost):
                        await client.call("lock.acquire", {"path": "a", "wait": 60})

                nursery.start_soon(ask)
                await conn.receive()
                await client.aclose()
            assert not client.connected
            with pytest.raises(anyio.ClosedResourceError):
                await client.reconnect()
