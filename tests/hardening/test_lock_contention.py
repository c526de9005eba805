"""Lock safety under contention, through the real broker on a real socket, in virtual time.

Sessions take, renew and release locks on overlapping paths and globs, with and without
waiting, let their TTLs run out, walk away in the middle of a wait, drop their connections
and come back (resuming, or as new sessions whose old ones end after the grace). After
every step of every session:

- the invariant holds: never two overlapping exclusive holders, never an exclusive and a
  shared holder overlapping (``locks.invariant_violations(now) == []``);
- a call that waited got its answer within its wait: granted (and then holding the lock),
  or -32003 saying who holds it or that it is promised to someone queued first.

At the end nobody waits for nothing and the locks in memory are the locks in the store.
The default run is small; ``-m slow`` adds 50 sessions x 1,000 rounds.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field

import pytest
import trio
import trio.testing

from slm_mesh.config import Settings
from slm_mesh.protocol import errors
from tests.wire import InProcessBroker, RawConn, in_process_broker

PATHS = (
    "/r/a.py",
    "/r/b.py",
    "/r/src/x.py",
    "/r/src/y.py",
    "/r/src/*",
    "/r/src/**",
    "/r/**",
    "/r/*.py",
    "src/x.py",  # relative: /r/src/x.py
    "/r/src/[xy].py",
)
TTLS = (0.5, 3.0, 30.0, None)
WAITS = (0, 0, 0, 0.5, 2.0, 10.0)


@dataclass
class Tally:
    steps: int = 0
    checks: int = 0
    granted: int = 0
    waited_and_granted: int = 0
    conflicts: int = 0
    timed_out: int = 0
    renewed: int = 0
    released: int = 0
    reconnects: int = 0
    abandoned_waits: int = 0
    seeds: list[int] = field(default_factory=list)


class Contention:
    def __init__(self, b: InProcessBroker, rounds: int, seed: int, tally: Tally) -> None:
        self.b = b
        self.rounds = rounds
        self.seed = seed
        self.tally = tally

    def check(self) -> None:
        broker = self.b.broker
        assert broker.mesh.locks.invariant_violations(broker.now()) == [], self.seed
        self.tally.checks += 1

    async def session(self, n: int) -> None:
        rnd = random.Random(self.seed * 1000 + n)
        conn = await self.b.connect()
        reg = await conn.register(f"s{n}", cwd="/r")
        for _ in range(self.rounds):
            op = rnd.random()
            if op < 0.45:
                await self.acquire(conn, reg["peer_id"], rnd)
            elif op < 0.65:
                await conn.call("lock.release", path=rnd.choice(PATHS))
                self.tally.released += 1
            elif op < 0.72:
                await conn.call("lock.release", all=True)
                self.tally.released += 1
            elif op < 0.82:
                answer = await conn.request(
                    "lock.renew", {"path": rnd.choice(PATHS), "ttl": rnd.choice((0.5, 5.0, 60.0))}
                )
                if "result" in answer:
                    self.tally.renewed += 1
                else:  # not (or no longer) held: said so
                    assert answer["error"]["code"] == errors.INVALID_PARAMS, answer
            elif op < 0.92:
                await trio.sleep(rnd.choice((0.1, 1.0, 5.0)))  # TTLs run out meanwhile
            elif op < 0.96:
                conn, reg = await self.abandon_a_wait(conn, reg, rnd)
            else:
                conn, reg = await self.reconnect(conn, reg, rnd)
            self.tally.steps += 1
            self.check()
        await conn.aclose()
        self.b.opened.remove(conn)

    async def acquire(self, conn: RawConn, peer_id: str, rnd: random.Random) -> None:
        wait = rnd.choice(WAITS)
        params = {
            "path": rnd.choice(PATHS),
            "mode": rnd.choice(("exclusive", "shared")),
            "ttl": rnd.choice(TTLS),
            "wait": wait,
        }
        start = trio.current_time()
        with trio.fail_after(wait + 1):  # virtual time: answered within its wait
            answer = await conn.request("lock.acquire", params)
        elapsed = trio.current_time() - start
        assert elapsed <= wait + 1e-6, (self.seed, elapsed, params)
        if "result" in answer:
            lock = answer["result"]["lock"]
            assert answer["result"]["granted"] is True and lock["peer_id"] == peer_id
            assert lock["mode"] == params["mode"]
            self.tally.granted += 1
            self.tally.waited_and_granted += elapsed > 0
            return
        error = answer["error"]
        assert error["code"] == errors.LOCK_CONFLICT, (self.seed, answer)
        assert error["data"]["holders"] or error["data"]["queued"], answer  # told why
        if elapsed > 0:
            assert elapsed == pytest.approx(wait), (self.seed, elapsed, wait)
            self.tally.timed_out += 1
        else:
            self.tally.conflicts += 1

    async def abandon_a_wait(
        self, conn: RawConn, reg: dict[str, str], rnd: random.Random
    ) -> tuple[RawConn, dict[str, str]]:
        """Ask for a lock with a long wait, then drop the connection before the answer."""
        await conn.send_line(
            '{"jsonrpc":"2.0","id":"w","method":"lock.acquire",'
            f'"params":{{"path":"{rnd.choice(PATHS)}","wait":60}}}}'
        )
        await trio.sleep(rnd.choice((0.0, 0.2, 2.0)))
        self.tally.abandoned_waits += 1
        return await self.reconnect(conn, reg, rnd)

    async def reconnect(
        self, conn: RawConn, reg: dict[str, str], rnd: random.Random
    ) -> tuple[RawConn, dict[str, str]]:
        await conn.aclose()
        self.b.opened.remove(conn)
        self.tally.reconnects += 1
        if rnd.random() < 0.3:
            await trio.sleep(rnd.choice((1.0, 40.0)))  # 40 s: past the grace, its locks end
        again = await self.b.connect()
        if rnd.random() < 0.7:  # resume (a new session if the grace is over)
            got = await again.call("peer.register", cwd="/r", resume=reg["resume_token"])
        else:
            got = await again.register(reg["name"], cwd="/r")
        return again, got


async def contend(settings: Settings, sessions: int, rounds: int, seed: int) -> Tally:
    tally = Tally(seeds=[seed])
    async with in_process_broker(settings) as b:
        run = Contention(b, rounds, seed, tally)
        async with trio.open_nursery() as nursery:
            for n in range(sessions):
                nursery.start_soon(run.session, n)
        broker = b.broker
        with trio.fail_after(120):  # the last graces and TTLs run out
            while broker.mesh.locks.waiters or broker.conns:  # noqa: ASYNC110
                await trio.sleep(1)
        await trio.sleep(700)  # every TTL and grace is over
        locks = broker.mesh.locks
        assert locks.waiters == []
        assert locks.invariant_violations(broker.now()) == []
        stored = {(r["path"], r["peer_id"]) for r in broker.store.all_locks()}
        assert set(locks.held) == stored
        assert [r for r in locks.held.values() if r["expires_at"] > broker.now()] == []
    return tally


SEED = int(os.environ.get("SLM_MESH_LOCK_SEED", random.randrange(10**6)))


async def test_locks_stay_safe_under_contention_through_the_broker(
    settings: Settings, autojump_clock: trio.testing.MockClock
) -> None:
    tally = await contend(settings, sessions=16, rounds=150, seed=SEED)
    print(f"\nlocks (seed {SEED}): {tally}")
    assert tally.granted and tally.conflicts and tally.timed_out and tally.waited_and_granted


@pytest.mark.slow
async def test_locks_stay_safe_with_50_sessions_for_1000_rounds(
    settings: Settings, autojump_clock: trio.testing.MockClock
) -> None:
    tally = await contend(settings, sessions=50, rounds=1000, seed=SEED)
    print(f"\nlocks (seed {SEED}): {tally}")
    assert tally.steps == 50 * 1000
