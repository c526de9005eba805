"""Time on the shared store, in real time: what tests/broker/ checks on virtual time
(autojump_clock) for SQLite, here with short TTLs and grace on PostgreSQL. Mesh time
there is the store's clock, so bounds are checked against the lock's own ``expires_at``."""

from __future__ import annotations

import time
from dataclasses import replace

import trio

from slm_mesh.config import Settings
from slm_mesh.protocol import errors
from tests.wire import in_process_broker


async def test_a_wait_that_runs_out_is_a_lock_conflict(pg_settings: Settings) -> None:
    async with in_process_broker(pg_settings) as b:
        a, c = await b.connect(), await b.connect()
        await a.register("a")
        await c.register("c")
        await a.call("lock.acquire", path="/r/f")
        start = trio.current_time()
        with trio.fail_after(10):
            err = await c.error("lock.acquire", path="/r/f", wait=0.5)
        assert err["code"] == errors.LOCK_CONFLICT
        assert trio.current_time() - start >= 0.5
        assert b.broker.mesh.locks.waiters == []
        await a.call("lock.release", path="/r/f")
        assert (await c.call("lock.acquire", path="/r/f"))["granted"] is True


async def test_a_lock_expires_at_its_ttl_and_renew_moves_it(pg_settings: Settings) -> None:
    async with in_process_broker(pg_settings) as b:
        watch = await b.connect()
        await watch.call("event.subscribe", types=["lock_expired"])
        a = await b.connect()
        await a.register("a")
        await a.call("lock.acquire", path="/r/f", ttl=1)
        renewed = (await a.call("lock.renew", path="/r/f", ttl=1.5))["lock"]
        with trio.fail_after(10):
            expired = await watch.notification("event")
        assert expired["params"]["data"]["path"] == "/r/f"
        assert expired["params"]["ts"] >= renewed["expires_at"]  # not before the new deadline
        assert (await a.call("lock.list"))["locks"] == []


async def test_a_queued_waiter_gets_a_lock_freed_by_expiry(pg_settings: Settings) -> None:
    async with in_process_broker(pg_settings) as b:
        a, c = await b.connect(), await b.connect()
        await a.register("a")
        await c.register("c")
        held = (await a.call("lock.acquire", path="/r/**", ttl=1))["lock"]
        with trio.fail_after(10):
            got = await c.call("lock.acquire", path="/r/x.py", wait=30)
        assert got["granted"] is True
        assert got["lock"]["acquired_at"] >= held["expires_at"]


async def test_a_peer_resumes_within_its_grace_and_leaves_after_it(pg_settings: Settings) -> None:
    settings = replace(pg_settings, grace_s=1.5)
    async with in_process_broker(settings) as b:
        watcher = await b.connect()
        await watcher.call("event.subscribe", types=["peer_left", "lock_released"])
        a = await b.connect()
        reg = await a.register("backend")
        await a.call("lock.acquire", path="/repo/x")
        await a.aclose()
        again = await b.connect()
        back = await again.call("peer.register", cwd="/repo", resume=reg["resume_token"])
        assert (back["peer_id"], back["resumed"]) == (reg["peer_id"], True)
        assert [lk["path"] for lk in (await again.call("lock.list"))["locks"]] == ["/repo/x"]
        gone_at = time.monotonic()
        await again.aclose()
        with trio.fail_after(15):
            kinds = {(await watcher.notification("event"))["params"]["type"] for _ in range(2)}
        assert kinds == {"peer_left", "lock_released"}
        assert time.monotonic() - gone_at >= settings.grace_s
        assert (await watcher.call("lock.list"))["locks"] == []
