"""Locks through the real broker: conflicts, FIFO queueing, TTL and concurrency."""

import trio
import trio.testing

from slm_mesh.config import Settings
from slm_mesh.protocol import errors
from tests.wire import RawConn, in_process_broker, person_of


async def test_a_held_lock_is_refused_to_another_session_naming_the_holder(
    settings: Settings,
) -> None:
    async with in_process_broker(settings) as b:
        a, c = await b.connect(), await b.connect()
        await a.register("backend", agent="claude-code")
        await c.register("frontend")
        await a.call("lock.acquire", path="src/auth.ts", reason="refactoring login")
        err = await c.error("lock.acquire", path="/repo/src/auth.ts")
        assert err["code"] == errors.LOCK_CONFLICT
        [holder] = err["data"]["holders"]
        assert (holder["holder"], holder["agent"], holder["reason"]) == (
            "backend",
            "claude-code",
            "refactoring login",
        )
        glob = await c.error("lock.acquire", path="src/**")
        assert glob["code"] == errors.LOCK_CONFLICT
        assert (await c.call("lock.acquire", path="src/db.ts"))["granted"] is True


async def test_waiters_are_granted_in_fifo_order(settings: Settings) -> None:
    async with in_process_broker(settings) as b:
        holder = await b.connect()
        await holder.register("holder")
        await holder.call("lock.acquire", path="/r/f")
        order: list[str] = []
        waiters = [await b.connect() for _ in range(3)]
        for i, w in enumerate(waiters):
            await w.register(f"w{i}")

        async def wait_turn(i: int, w: RawConn) -> None:
            got = await w.call("lock.acquire", path="/r/f", wait=30)
            assert got["granted"] is True
            order.append(f"w{i}")
            await w.call("lock.release", path="/r/f")

        async with trio.open_nursery() as nursery:
            for i, w in enumerate(waiters):
                nursery.start_soon(wait_turn, i, w)
                # Let each request reach the queue before the next one is sent.
                with trio.fail_after(5):
                    # The broker's state has no event to wait on; poll it (bounded).
                    while len(b.broker.mesh.locks.waiters) < i + 1:  # noqa: ASYNC110
                        await trio.sleep(0.001)
            await holder.call("lock.release", path="/r/f")
        assert order == ["w0", "w1", "w2"]


async def test_a_waiting_acquire_does_not_hold_up_the_connection(settings: Settings) -> None:
    async with in_process_broker(settings) as b:
        a, c = await b.connect(), await b.connect()
        await a.register("a")
        await c.register("c")
        await a.call("lock.acquire", path="/r/f")
        await c.send_line(
            '{"jsonrpc":"2.0","id":"slow","method":"lock.acquire",'
            '"params":{"path":"/r/f","wait":60}}'
        )
        await c.send_line('{"jsonrpc":"2.0","id":"fast","method":"mesh.ping"}')
        with trio.fail_after(5):
            first = await c.answer()
        assert first == {"jsonrpc": "2.0", "id": "fast", "result": "pong"}
        await a.call("lock.release", path="/r/f")
        with trio.fail_after(5):
            second = await c.answer()
        assert second["id"] == "slow"
        assert second["result"]["granted"] is True


async def test_a_wait_that_runs_out_is_a_lock_conflict(
    settings: Settings, autojump_clock: trio.testing.MockClock
) -> None:
    async with in_process_broker(settings) as b:
        a, c = await b.connect(), await b.connect()
        await a.register("a")
        await c.register("c")
        await a.call("lock.acquire", path="/r/f")
        start = trio.current_time()
        err = await c.error("lock.acquire", path="/r/f", wait=5)
        assert err["code"] == errors.LOCK_CONFLICT
        assert trio.current_time() - start == 5
        assert b.broker.mesh.locks.waiters == []


async def test_a_lock_expires_exactly_at_its_ttl_and_renew_moves_it(
    settings: Settings, autojump_clock: trio.testing.MockClock
) -> None:
    async with in_process_broker(settings) as b:
        watch = await b.connect()
        await watch.call("event.subscribe", types=["lock_expired"])
        a = await b.connect()
        await a.register("a")
        start = trio.current_time()
        await a.call("lock.acquire", path="/r/f", ttl=60)
        await trio.sleep(30)
        await a.call("lock.renew", path="/r/f", ttl=60)
        with trio.fail_after(1000):
            expired = await watch.notification("event")
        assert expired["params"]["data"]["path"] == "/r/f"
        assert trio.current_time() - start == 90
        assert (await a.call("lock.list"))["locks"] == []


async def test_a_queued_waiter_gets_a_lock_freed_by_expiry(
    settings: Settings, autojump_clock: trio.testing.MockClock
) -> None:
    async with in_process_broker(settings) as b:
        a, c = await b.connect(), await b.connect()
        await a.register("a")
        await c.register("c")
        await a.call("lock.acquire", path="/r/**", ttl=10)
        start = trio.current_time()
        got = await c.call("lock.acquire", path="/r/x.py", wait=100)
        assert got["granted"] is True
        assert trio.current_time() - start == 10


async def test_lock_check_reports_what_others_hold(settings: Settings) -> None:
    async with in_process_broker(settings) as b:
        a, shell = await b.connect(), await b.connect()
        await a.register("a")
        await a.call("lock.acquire", path="src/a.ts", mode="shared")
        got = await shell.call("lock.check", paths=["src/a.ts", "src/b.ts"], cwd="/repo")
        assert [c["path"] for c in got["conflicts"]] == ["/repo/src/a.ts"]
        mine = await a.call("lock.check", paths=["src/a.ts"])
        assert mine["conflicts"] == []


async def test_a_waiter_that_disconnects_leaves_the_queue_at_once(settings: Settings) -> None:
    async with in_process_broker(settings) as b:
        a, c = await b.connect(), await b.connect()
        await a.register("a")
        await c.register("c")
        await a.call("lock.acquire", path="/r/f")
        await c.send_line(
            '{"jsonrpc":"2.0","id":1,"method":"lock.acquire","params":{"path":"/r/f","wait":600}}'
        )
        with trio.fail_after(5):
            while not b.broker.mesh.locks.waiters:  # noqa: ASYNC110 - no event to wait on
                await trio.sleep(0.001)
        await c.aclose()
        with trio.fail_after(5):
            while b.broker.mesh.locks.waiters:  # noqa: ASYNC110
                await trio.sleep(0.001)
        await a.call("lock.release", path="/r/f")
        assert (await a.call("lock.list"))["locks"] == []  # nobody was granted it


async def test_the_person_releases_an_agents_lock_from_an_anonymous_connection(
    settings: Settings,
) -> None:
    async with in_process_broker(settings) as b:
        agent, waiter, person, watcher = [await b.connect() for _ in range(4)]
        await agent.register("backend", cwd="/repo")
        await waiter.register("frontend", cwd="/repo")
        await agent.call("lock.acquire", path="src/auth.ts")
        await watcher.call("event.subscribe", types=["lock_released", "lock_acquired"])
        async with trio.open_nursery() as nursery:

            async def wait_for_it() -> None:
                got = await waiter.call("lock.acquire", path="/repo/src/auth.ts", wait=30)
                assert got["lock"]["holder"] == "frontend"

            nursery.start_soon(wait_for_it)
            with trio.fail_after(5):
                while not b.broker.mesh.locks.waiters:  # noqa: ASYNC110
                    await trio.sleep(0.001)  # no event says "queued": poll (bounded)
            # Without force, an anonymous connection may not release anything.
            refused = await person.error("lock.release", path="/repo/src/auth.ts")
            assert refused["code"] == errors.NOT_REGISTERED
            out = await person.call(
                "lock.release", path="/repo/src/auth.ts", holder="backend", force=True
            )
        assert out["released"] == 1
        with trio.fail_after(5):
            told = await agent.notification("message")
        assert told["params"]["id"] == out["message_id"]
        assert (told["params"]["from"], told["params"]["from_name"]) == person_of(settings)
        assert "released your exclusive lock on /repo/src/auth.ts" in told["params"]["body"]
        with trio.fail_after(5):
            released = await watcher.notification("event")
            granted = await watcher.notification("event")
        assert released["params"]["type"] == "lock_released"
        assert released["params"]["data"]["released_by"] == person_of(settings)[1]
        assert released["params"]["data"]["reason"] == "forced"
        assert granted["params"]["data"]["holder"] == "frontend"
