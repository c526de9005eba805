"""The lock invariant under contention, checked after every step of random sessions.

Eight sessions (half in /r, half in /r/src, so relative paths differ) take, renew, release
and wait for locks on overlapping paths and globs, drop their connections, resume, leave,
and let time pass so that TTLs, waits and graces run out. The machine plays the broker: it
keeps the timers the mesh arms, fires them at their deadlines, and gives up a wait when it
runs out or its connection closes. After every step:

- never two overlapping exclusive holders, never an exclusive and a shared one;
- every waiter granted got a lock that really is held, in the mode it asked for;
- no waiter is left queued for nothing (each conflicts with a holder or an earlier waiter);
- no lock or waiter belongs to a session that is gone, and the store mirrors the locks.
"""

from __future__ import annotations

from typing import Any

import hypothesis.strategies as st
from hypothesis import HealthCheck, settings
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from slm_mesh.mesh import Emit, Granted, Waiter
from slm_mesh.mesh.paths import overlaps
from slm_mesh.protocol import errors
from tests.mesh.harness import GRACE_S, Bench, Peer

SESSIONS = 8
PATHS = (
    "/r/a",
    "/r/b",
    "/r/src/x.ts",
    "/r/src/y.ts",
    "/r/src/*",
    "/r/src/*.ts",
    "/r/src/**",
    "/r/**",
    "x.ts",  # /r/x.ts or /r/src/x.ts, by the session's cwd
    "src/*",
)
MODES = ("exclusive", "shared")
TTLS = (None, 0.5, 5.0, 45.0)
WAITS = (0, 0, 1.0, 10.0, 100.0)
STEPS = (0.1, 1.0, 5.0, GRACE_S, 100.0, 700.0)

slots = st.integers(0, SESSIONS - 1)


class LockContention(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.bench = Bench(grace_s=GRACE_S)
        self.peers: dict[int, Peer] = {}  # slot → its peer while not gone
        self.bound: dict[int, bool] = {}  # slot → a connection carries the peer
        self.detached: list[int] = []  # connections that a resume took the peer from
        self.pending: dict[Waiter, tuple[int, float]] = {}  # waiter → (conn, gives up at)
        self.grants = 0

    # -- playing the broker --------------------------------------------------------------

    def settle(self) -> None:
        """Check the grants among the effects of one mesh call, then forget the effects.

        A grant must hand out the lock that was just written (the ``lock_acquired`` event
        before it), and when the call is over that lock must be held and live. Its mode
        then is the one of the last grant on that path: a session may hold one lock per
        path, and a later request of its own may change the mode.
        """
        written: dict[tuple[str, str], dict[str, Any]] = {}
        granted: list[Waiter] = []
        for effect in self.bench.take():
            if isinstance(effect, Emit) and effect.event["type"].startswith("lock_"):
                data = effect.event["data"]
                key = (data["path"], data["peer_id"])
                if effect.event["type"] == "lock_acquired":
                    written[key] = data
                else:
                    written.pop(key, None)
            elif isinstance(effect, Granted):
                waiter = effect.waiter
                assert waiter.lock is not None
                lock = written.get((waiter.path, waiter.peer_id))
                assert lock is not None, "granted a lock that was not written"
                assert (lock["mode"], lock["expires_at"]) == (
                    waiter.mode,
                    waiter.lock["expires_at"],
                )
                granted.append(waiter)
        for waiter in granted:
            self.check_grant(waiter, written[(waiter.path, waiter.peer_id)])

    def check_grant(self, waiter: Waiter, last: dict[str, Any]) -> None:
        locks = self.bench.mesh.locks
        assert waiter in self.pending, "granted a waiter nobody is waiting on"
        del self.pending[waiter]
        assert waiter not in locks.waiters
        row = locks.held.get((waiter.path, waiter.peer_id))
        assert row is not None, "granted a lock that is not held"
        assert row["expires_at"] > self.bench.now
        assert (row["mode"], row["expires_at"]) == (last["mode"], last["expires_at"])
        self.grants += 1

    def call(self, conn: int, method: str, **params: Any) -> Any:
        try:
            return self.bench.call(conn, method, **params)
        finally:
            self.settle()

    def give_up(self, waiter: Waiter) -> None:
        del self.pending[waiter]
        self.bench.cancel_wait(waiter)
        self.settle()
        assert waiter.lock is None
        assert waiter not in self.bench.mesh.locks.waiters

    def close(self, conn: int) -> None:
        self.bench.disconnect(conn)
        self.settle()
        for waiter, (wconn, _) in list(self.pending.items()):
            if wconn == conn and waiter in self.pending:
                self.give_up(waiter)

    def gone(self, slot: int) -> None:
        """The slot's session left: the mesh dropped its waiters, whose calls now wait in
        vain until they give up (cancel_wait is then a no-op)."""
        peer = self.peers.pop(slot)
        self.bound.pop(slot, None)
        assert self.bench.peer_state(peer.peer_id) == "gone"
        for waiter in [w for w in self.pending if w.peer_id == peer.peer_id]:
            assert waiter not in self.bench.mesh.locks.waiters
            self.give_up(waiter)

    # -- rules ---------------------------------------------------------------------------

    @initialize()
    def everyone_joins(self) -> None:
        for slot in range(SESSIONS):
            self.register(slot)

    @rule(slot=slots)
    def register(self, slot: int) -> None:
        if slot in self.peers:
            return
        cwd = "/r" if slot % 2 == 0 else "/r/src"
        self.peers[slot] = self.bench.register(f"s{slot}", cwd=cwd)
        self.bound[slot] = True
        self.settle()

    @rule(
        slot=slots,
        path=st.sampled_from(PATHS),
        mode=st.sampled_from(MODES),
        ttl=st.sampled_from(TTLS),
        wait=st.sampled_from(WAITS),
    )
    def acquire(self, slot: int, path: str, mode: str, ttl: float | None, wait: float) -> None:
        self.try_lock(slot, path, mode, ttl, wait)

    @rule(
        slot=slots,
        path=st.sampled_from(PATHS),
        mode=st.sampled_from(MODES),
        wait=st.sampled_from(WAITS[2:]),
    )
    def acquire_and_wait(self, slot: int, path: str, mode: str, wait: float) -> None:
        self.try_lock(slot, path, mode, None, wait)

    def try_lock(self, slot: int, path: str, mode: str, ttl: float | None, wait: float) -> None:
        if not self.bound.get(slot):
            return
        peer = self.peers[slot]
        conflict: errors.LockConflict | None = None
        try:
            out = self.call(peer.conn, "lock.acquire", path=path, mode=mode, ttl=ttl, wait=wait)
        except errors.LockConflict as exc:
            conflict = exc
        if conflict is not None:
            assert wait == 0
            assert conflict.code == errors.LOCK_CONFLICT
            assert conflict.data["holders"] or conflict.data["queued"]
            return
        if isinstance(out, Waiter):
            assert wait > 0
            self.pending[out] = (peer.conn, self.bench.now + wait)
            return
        lock = out["lock"]
        row = self.bench.mesh.locks.held[(lock["path"], peer.peer_id)]
        assert (row["mode"], row["expires_at"]) == (mode, lock["expires_at"])

    def held_by(self, slot: int) -> list[str]:
        peer_id = self.peers[slot].peer_id
        return sorted(path for path, holder in self.bench.mesh.locks.held if holder == peer_id)

    @rule(slot=slots, path=st.sampled_from(PATHS))
    def release(self, slot: int, path: str) -> None:
        if self.bound.get(slot):
            self.call(self.peers[slot].conn, "lock.release", path=path)

    @rule(slot=slots, data=st.data())
    def release_one_held(self, slot: int, data: st.DataObject) -> None:
        if self.bound.get(slot) and (held := self.held_by(slot)):
            path = data.draw(st.sampled_from(held))
            out = self.call(self.peers[slot].conn, "lock.release", path=path)
            assert out == {"released": 1}

    @rule(slot=slots)
    def release_all(self, slot: int) -> None:
        if self.bound.get(slot):
            self.call(self.peers[slot].conn, "lock.release", all=True)
            peer_id = self.peers[slot].peer_id
            assert not [k for k in self.bench.mesh.locks.held if k[1] == peer_id]

    @rule(slot=slots, path=st.sampled_from(PATHS), ttl=st.sampled_from((0.5, 5.0, 45.0)))
    def renew(self, slot: int, path: str, ttl: float) -> None:
        if not self.bound.get(slot):
            return
        try:
            out = self.call(self.peers[slot].conn, "lock.renew", path=path, ttl=ttl)
        except errors.InvalidParams:
            return
        assert out["lock"]["expires_at"] == self.bench.now + ttl

    @rule(slot=slots, data=st.data(), ttl=st.sampled_from((0.5, 5.0, 45.0)))
    def renew_one_held(self, slot: int, data: st.DataObject, ttl: float) -> None:
        if self.bound.get(slot) and (held := self.held_by(slot)):
            self.renew(slot, data.draw(st.sampled_from(held)), ttl)

    @rule(slot=slots)
    def disconnect(self, slot: int) -> None:
        if self.bound.get(slot):
            self.bound[slot] = False
            self.close(self.peers[slot].conn)
            assert self.bench.peer_state(self.peers[slot].peer_id) == "away"

    @rule(slot=slots)
    def resume(self, slot: int) -> None:
        if slot not in self.peers:
            return
        old = self.peers[slot]
        back = self.bench.resume(old, cwd="/r" if slot % 2 == 0 else "/r/src")
        self.settle()
        assert back.peer_id == old.peer_id
        if self.bound[slot]:
            self.detached.append(old.conn)  # still open, now anonymous
        self.peers[slot] = back
        self.bound[slot] = True

    @precondition(lambda self: bool(self.detached))
    @rule(data=st.data())
    def close_detached(self, data: st.DataObject) -> None:
        conn = data.draw(st.sampled_from(self.detached))
        self.detached.remove(conn)
        self.close(conn)

    @rule(slot=slots)
    def unregister(self, slot: int) -> None:
        if self.bound.get(slot):
            self.call(self.peers[slot].conn, "peer.unregister")
            self.gone(slot)

    @rule(seconds=st.sampled_from(STEPS))
    def advance(self, seconds: float) -> None:
        """Let time pass: fire timers and give up waits at their deadlines, in order."""
        bench = self.bench
        until = bench.now + seconds
        while True:
            due: list[tuple[float, int, Any]] = [
                (at, 0, tk) for tk, at in bench.timers.items() if at <= until
            ]
            due += [(at, 1, w) for w, (_, at) in self.pending.items() if at <= until]
            if not due:
                break
            at, kind, what = min(due, key=lambda d: (d[0], d[1]))
            bench.now = max(bench.now, at)
            if kind == 0:
                bench.fire(*what)
                self.settle()
            else:
                self.give_up(what)
        bench.now = until
        for slot in [s for s, p in self.peers.items() if bench.peer_state(p.peer_id) == "gone"]:
            self.gone(slot)

    # -- invariants ----------------------------------------------------------------------

    @invariant()
    def no_incompatible_holders_overlap(self) -> None:
        now = self.bench.now
        assert self.bench.mesh.locks.invariant_violations(now) == []
        # The same, worked out here rather than trusted to the mesh's own rule.
        live = [r for r in self.bench.mesh.locks.held.values() if r["expires_at"] > now]
        for i, a in enumerate(live):
            for b in live[i + 1 :]:
                if a["peer_id"] != b["peer_id"] and overlaps(a["path"], b["path"]):
                    assert a["mode"] == b["mode"] == "shared", (a, b)

    @invariant()
    def no_waiter_waits_for_nothing(self) -> None:
        locks, now = self.bench.mesh.locks, self.bench.now
        queue = locks.waiters
        assert set(queue) == set(self.pending)
        rows = self.bench.store.waiters()
        assert [r["id"] for r in rows] == [w.id for w in queue]
        for i, w in enumerate(queue):
            blocked = locks.holders_against(w.peer_id, w.where, w.mode, now)
            assert blocked or locks._queued_against(w.peer_id, w.where, w.mode, rows[:i])

    @invariant()
    def locks_and_waiters_belong_to_sessions_in_the_mesh(self) -> None:
        live = {p.peer_id for p in self.peers.values()}
        locks = self.bench.mesh.locks
        assert {peer_id for _, peer_id in locks.held} <= live
        assert {w.peer_id for w in locks.waiters} <= live
        stored = {(r["path"], r["peer_id"]) for r in self.bench.store.all_locks()}
        assert stored == set(locks.held)

    def teardown(self) -> None:
        self.bench.store.close()


LockContention.TestCase.settings = settings(
    max_examples=200,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_the_lock_invariant_holds_under_contention = LockContention.TestCase
