"""Advisory locks: modes, globs, the FIFO wait queue, TTLs and the events they emit."""

from __future__ import annotations

from typing import Any

import pytest

from slm_mesh.mesh import ArmTimer, DisarmTimer, Emit, Waiter
from slm_mesh.protocol import errors
from tests.mesh.harness import GRACE_S, LOCK_TTL_S, T0, Bench, Peer


def acquire(bench: Bench, peer: Peer, path: str, **params: Any) -> dict[str, Any]:
    out = bench.call(peer.conn, "lock.acquire", path=path, **params)
    assert isinstance(out, dict), "expected a grant, got a queued waiter"
    assert out["granted"] is True
    lock: dict[str, Any] = out["lock"]
    return lock


def refused(bench: Bench, peer: Peer, path: str, **params: Any) -> errors.LockConflict:
    with pytest.raises(errors.LockConflict) as exc:
        bench.call(peer.conn, "lock.acquire", path=path, **params)
    assert exc.value.code == errors.LOCK_CONFLICT
    return exc.value


def queue(bench: Bench, peer: Peer, path: str, **params: Any) -> Waiter:
    params.setdefault("wait", 60)
    out = bench.call(peer.conn, "lock.acquire", path=path, **params)
    assert isinstance(out, Waiter), f"expected to wait, got {out!r}"
    return out


def holder_names(exc: errors.LockConflict) -> list[str]:
    return [h["holder"] for h in exc.data["holders"]]


@pytest.fixture
def a(bench: Bench) -> Peer:
    return bench.register("alice", agent="claude-code", cwd="/r")


@pytest.fixture
def b(bench: Bench) -> Peer:
    return bench.register("bob", cwd="/r/src")


@pytest.fixture
def c(bench: Bench) -> Peer:
    return bench.register("carol", cwd="/r")


# -- modes -------------------------------------------------------------------------------


def test_a_granted_lock_says_who_holds_it_and_until_when(bench: Bench, a: Peer) -> None:
    lock = acquire(bench, a, "/r/a", reason="refactor", ttl=60)
    assert lock["path"] == "/r/a"
    assert lock["mode"] == "exclusive"
    assert lock["holder"] == "alice"
    assert lock["agent"] == "claude-code"
    assert lock["reason"] == "refactor"
    assert lock["acquired_at"] == T0
    assert lock["expires_at"] == T0 + 60
    assert bench.timers[("lock", ("/r/a", a.peer_id))] == T0 + 60


def test_a_lock_without_ttl_gets_the_default(bench: Bench, a: Peer) -> None:
    assert acquire(bench, a, "/r/a")["expires_at"] == T0 + LOCK_TTL_S


def test_an_exclusive_lock_refuses_another_sessions_exclusive_lock(
    bench: Bench, a: Peer, b: Peer
) -> None:
    acquire(bench, a, "/r/a", reason="refactor")
    exc = refused(bench, b, "/r/a")
    assert holder_names(exc) == ["alice"]
    [holder] = exc.data["holders"]
    assert holder["peer_id"] == a.peer_id
    assert holder["reason"] == "refactor"
    assert exc.data["path"] == "/r/a"


def test_shared_locks_coexist(bench: Bench, a: Peer, b: Peer, c: Peer) -> None:
    for peer in (a, b, c):
        acquire(bench, peer, "/r/a", mode="shared")
    assert {h for _, h, _ in bench.lock_paths()} == {"alice", "bob", "carol"}


def test_shared_and_exclusive_conflict_both_ways(bench: Bench, a: Peer, b: Peer) -> None:
    acquire(bench, a, "/r/a", mode="shared")
    assert holder_names(refused(bench, b, "/r/a")) == ["alice"]
    acquire(bench, a, "/r/b")
    assert holder_names(refused(bench, b, "/r/b", mode="shared")) == ["alice"]


def test_a_conflict_lists_every_holder(bench: Bench, a: Peer, b: Peer, c: Peer) -> None:
    acquire(bench, a, "/r/a", mode="shared")
    acquire(bench, b, "/r/a", mode="shared")
    assert sorted(holder_names(refused(bench, c, "/r/a"))) == ["alice", "bob"]


def test_a_session_never_conflicts_with_itself_and_reacquiring_renews(
    bench: Bench, a: Peer
) -> None:
    first = acquire(bench, a, "/r/a", ttl=60, reason="first")
    bench.now += 30
    bench.take()
    again = acquire(bench, a, "/r/a", ttl=60)
    assert again["expires_at"] == T0 + 90
    assert again["acquired_at"] == first["acquired_at"]
    assert again["reason"] == "first"
    [event] = bench.events("lock_acquired")
    assert event["data"]["renewed"] is True
    assert bench.timers[("lock", ("/r/a", a.peer_id))] == T0 + 90
    acquire(bench, a, "/r/a", mode="shared")
    acquire(bench, a, "/r/**")
    assert len(bench.lock_paths()) == 2


def test_a_first_grant_is_not_reported_as_renewed(bench: Bench, a: Peer) -> None:
    bench.take()
    acquire(bench, a, "/r/a")
    [event] = bench.events("lock_acquired")
    assert event["data"]["renewed"] is False


def test_a_holder_can_renew_by_acquiring_again_while_others_wait(
    bench: Bench, a: Peer, b: Peer
) -> None:
    acquire(bench, a, "/r/a", ttl=60)
    waiter = queue(bench, b, "/r/a")
    bench.now += 30
    again = acquire(bench, a, "/r/a", ttl=60)
    assert again["expires_at"] == bench.now + 60
    assert waiter.lock is None


def test_reacquiring_a_lock_whose_ttl_ran_out_is_a_new_lock_not_a_renewal(
    bench: Bench, a: Peer
) -> None:
    acquire(bench, a, "/r/a", ttl=10)
    bench.now += 20  # the lock's timer has not fired yet
    bench.take()
    lock = acquire(bench, a, "/r/a", ttl=10)
    assert lock["acquired_at"] == bench.now
    assert [e["type"] for e in bench.events() if e["type"].startswith("lock_")] == [
        "lock_expired",
        "lock_acquired",
    ]
    assert bench.events("lock_acquired")[0]["data"]["renewed"] is False


# -- paths and globs ---------------------------------------------------------------------


def test_relative_paths_are_taken_against_the_sessions_cwd(bench: Bench, a: Peer, b: Peer) -> None:
    # alice works in /r, bob in /r/src: "src/x.ts" and "x.ts" are one file.
    assert acquire(bench, a, "src/x.ts")["path"] == "/r/src/x.ts"
    assert holder_names(refused(bench, b, "x.ts")) == ["alice"]
    assert holder_names(refused(bench, b, "../src/./x.ts")) == ["alice"]
    assert bench.call(b.conn, "lock.release", path="x.ts") == {"released": 0}
    assert bench.call(a.conn, "lock.release", path="/r//src/x.ts") == {"released": 1}


@pytest.mark.parametrize(
    ("held", "wanted"),
    [
        ("/r/src/*", "/r/src/x.ts"),
        ("/r/src/x.ts", "/r/src/*"),
        ("/r/src/**", "/r/src/deep/x.ts"),
        ("/r/**", "/r/src/*.ts"),
        ("/r/src/*.ts", "/r/src/x.ts"),
    ],
)
def test_a_glob_conflicts_with_the_files_inside_it(
    bench: Bench, a: Peer, b: Peer, held: str, wanted: str
) -> None:
    acquire(bench, a, held)
    assert holder_names(refused(bench, b, wanted)) == ["alice"]


@pytest.mark.parametrize(
    ("held", "wanted"),
    [
        ("/r/src/*.ts", "/r/src/*.py"),
        ("/r/src/*", "/r/src/deep/x.ts"),
        ("/r/src/**", "/r/lib/x.ts"),
        ("/r/a", "/r/b"),
    ],
)
def test_locks_on_disjoint_patterns_coexist(
    bench: Bench, a: Peer, b: Peer, held: str, wanted: str
) -> None:
    acquire(bench, a, held)
    acquire(bench, b, wanted)


def test_an_unusable_path_is_invalid_params(bench: Bench) -> None:
    peer = bench.register("rel", cwd="not/absolute")
    with pytest.raises(errors.InvalidParams) as exc:
        bench.call(peer.conn, "lock.acquire", path="a.ts")
    assert exc.value.data == {"field": "path"}


# -- the wait queue ----------------------------------------------------------------------


def test_a_request_that_may_wait_is_queued_and_granted_when_the_lock_frees(
    bench: Bench, a: Peer, b: Peer
) -> None:
    acquire(bench, a, "/r/a")
    waiter = queue(bench, b, "/r/a", reason="next")
    assert waiter.lock is None
    bench.take()
    bench.call(a.conn, "lock.release", path="/r/a")
    assert bench.granted() == [waiter]
    assert waiter.lock is not None
    assert waiter.lock["holder"] == "bob"
    assert waiter.lock["reason"] == "next"
    assert bench.lock_paths() == [("/r/a", "bob", "exclusive")]
    types = [e["type"] for e in bench.events()]
    assert types == ["lock_released", "lock_acquired"]


def test_waiters_are_granted_in_the_order_they_queued(bench: Bench, a: Peer) -> None:
    acquire(bench, a, "/r/a")
    peers = [bench.register(f"w{i}") for i in range(4)]
    waiters = [queue(bench, p, "/r/a") for p in peers]
    order: list[str] = []
    holder = a
    for _ in peers:
        bench.take()
        bench.call(holder.conn, "lock.release", path="/r/a")
        [granted] = bench.granted()
        assert granted.lock is not None
        order.append(granted.lock["holder"])
        holder = next(p for p in peers if p.peer_id == granted.peer_id)
    assert order == ["w0", "w1", "w2", "w3"]
    assert all(w.lock is not None for w in waiters)


def test_queued_shared_requests_are_granted_together(
    bench: Bench, a: Peer, b: Peer, c: Peer
) -> None:
    acquire(bench, a, "/r/a")
    wb = queue(bench, b, "/r/a", mode="shared")
    wc = queue(bench, c, "/r/a", mode="shared")
    bench.take()
    bench.call(a.conn, "lock.release", path="/r/a")
    assert bench.granted() == [wb, wc]


def test_a_later_shared_request_can_not_jump_a_queued_exclusive_waiter(
    bench: Bench, a: Peer, b: Peer, c: Peer
) -> None:
    acquire(bench, a, "/r/a", mode="shared")
    wb = queue(bench, b, "/r/a", mode="exclusive")
    exc = refused(bench, c, "/r/a", mode="shared")
    assert exc.data["queued"] is True
    assert exc.data["holders"] == []
    wc = queue(bench, c, "/r/a", mode="shared")
    bench.take()
    bench.call(a.conn, "lock.release", path="/r/a")
    assert bench.granted() == [wb]
    bench.take()
    bench.call(b.conn, "lock.release", path="/r/a")
    assert bench.granted() == [wc]


def test_a_queued_glob_holds_back_later_requests_inside_it(
    bench: Bench, a: Peer, b: Peer, c: Peer
) -> None:
    acquire(bench, a, "/r/src/x.ts")
    queue(bench, b, "/r/src/**")
    # /r/src/y.ts is free, but bob is promised all of /r/src first.
    refused(bench, c, "/r/src/y.ts")
    acquire(bench, c, "/r/lib/y.ts")


def test_cancelling_a_wait_lets_the_next_waiter_in(bench: Bench, a: Peer, b: Peer, c: Peer) -> None:
    acquire(bench, a, "/r/a", mode="shared")
    wb = queue(bench, b, "/r/a", mode="exclusive")
    wc = queue(bench, c, "/r/a", mode="shared")
    bench.take()
    bench.cancel_wait(wb)
    assert bench.granted() == [wc]
    assert wb.lock is None
    bench.cancel_wait(wb)  # twice is harmless
    assert sorted(h for _, h, _ in bench.lock_paths()) == ["alice", "carol"]


def test_a_wait_that_runs_out_reports_the_holders(bench: Bench, a: Peer, b: Peer) -> None:
    acquire(bench, a, "/r/a")
    waiter = queue(bench, b, "/r/a")
    bench.cancel_wait(waiter)
    exc = bench.mesh.locks.conflict_for(waiter, bench.now)
    assert exc.code == errors.LOCK_CONFLICT
    assert holder_names(exc) == ["alice"]


def test_a_waiter_whose_session_is_gone_is_dropped(bench: Bench, a: Peer, b: Peer, c: Peer) -> None:
    acquire(bench, a, "/r/a")
    wb = queue(bench, b, "/r/a")
    wc = queue(bench, c, "/r/a")
    bench.call(b.conn, "peer.unregister")
    bench.take()
    bench.call(a.conn, "lock.release", path="/r/a")
    assert bench.granted() == [wc]
    assert wb.lock is None


# -- TTL ---------------------------------------------------------------------------------


def test_a_lock_expires_when_its_timer_fires_at_its_time(bench: Bench, a: Peer, b: Peer) -> None:
    acquire(bench, a, "/r/a", ttl=10)
    waiter = queue(bench, b, "/r/a")
    key = ("/r/a", a.peer_id)
    bench.now = T0 + 9
    bench.fire("lock", key)  # early: nothing happens
    assert bench.lock_paths() == [("/r/a", "alice", "exclusive")]
    bench.take()
    bench.now = T0 + 10
    bench.fire("lock", key)
    [expired] = bench.events("lock_expired")
    assert expired["data"]["reason"] == "ttl"
    assert expired["data"]["holder"] == "alice"
    assert bench.granted() == [waiter]
    assert bench.lock_paths() == [("/r/a", "bob", "exclusive")]


def test_renewing_moves_the_expiry_so_the_old_deadline_does_nothing(bench: Bench, a: Peer) -> None:
    acquire(bench, a, "/r/a", ttl=10)
    bench.now = T0 + 5
    bench.take()
    out = bench.call(a.conn, "lock.renew", path="/r/a", ttl=10)
    assert out["lock"]["expires_at"] == T0 + 15
    assert ArmTimer("lock", ("/r/a", a.peer_id), T0 + 15) in bench.log
    bench.now = T0 + 10
    bench.fire("lock", ("/r/a", a.peer_id))
    assert bench.lock_paths() == [("/r/a", "alice", "exclusive")]
    bench.advance(5)
    assert bench.lock_paths() == []


def test_a_lock_past_its_ttl_counts_as_ended_before_its_timer_fires(
    bench: Bench, a: Peer, b: Peer
) -> None:
    acquire(bench, a, "/r/a", ttl=10)
    bench.now = T0 + 10
    assert bench.lock_paths() == []
    assert bench.call(0, "lock.check", paths=["/r/a"]) == {"conflicts": []}
    acquire(bench, b, "/r/a")
    assert bench.mesh.locks.invariant_violations(bench.now) == []


def test_renewing_a_lock_you_do_not_hold_is_invalid_params(bench: Bench, a: Peer) -> None:
    with pytest.raises(errors.InvalidParams):
        bench.call(a.conn, "lock.renew", path="/r/a", ttl=10)
    acquire(bench, a, "/r/a", ttl=10)
    bench.now = T0 + 10
    with pytest.raises(errors.InvalidParams):
        bench.call(a.conn, "lock.renew", path="/r/a", ttl=10)


def test_a_lock_is_released_when_its_session_is_gone(bench: Bench, a: Peer, b: Peer) -> None:
    acquire(bench, a, "/r/a")
    waiter = queue(bench, b, "/r/a")
    bench.disconnect(a.conn)
    assert bench.lock_paths() == [("/r/a", "alice", "exclusive")]  # kept while away
    assert waiter.lock is None
    bench.take()
    bench.advance(GRACE_S)
    assert bench.granted() == [waiter]
    assert DisarmTimer("lock", ("/r/a", a.peer_id)) in bench.log
    assert bench.lock_paths() == [("/r/a", "bob", "exclusive")]


# -- release, list, check ----------------------------------------------------------------


def test_release_ends_one_lock_or_all_of_a_sessions_locks(bench: Bench, a: Peer, b: Peer) -> None:
    for path in ("/r/a", "/r/b", "/r/c/**"):
        acquire(bench, a, path)
    acquire(bench, b, "/r/d")
    bench.take()
    assert bench.call(a.conn, "lock.release", path="/r/a") == {"released": 1}
    assert bench.call(a.conn, "lock.release", path="/r/a") == {"released": 0}
    assert bench.call(a.conn, "lock.release", all=True) == {"released": 2}
    assert bench.lock_paths() == [("/r/d", "bob", "exclusive")]
    released = bench.events("lock_released")
    assert sorted(e["data"]["path"] for e in released) == ["/r/a", "/r/b", "/r/c/**"]
    assert {e["data"]["reason"] for e in released} == {"released"}
    assert ("lock", ("/r/a", a.peer_id)) not in bench.timers


def test_release_needs_a_path_or_all(bench: Bench, a: Peer) -> None:
    with pytest.raises(errors.InvalidParams) as exc:
        bench.call(a.conn, "lock.release")
    assert exc.value.code == errors.INVALID_PARAMS


def test_one_session_can_not_release_anothers_lock(bench: Bench, a: Peer, b: Peer) -> None:
    acquire(bench, a, "/r/a")
    assert bench.call(b.conn, "lock.release", path="/r/a") == {"released": 0}
    assert bench.call(b.conn, "lock.release", all=True) == {"released": 0}
    assert bench.lock_paths() == [("/r/a", "alice", "exclusive")]


def test_list_filters_by_prefix(bench: Bench, a: Peer) -> None:
    for path in ("/r/src/a", "/r/lib/b", "/r/src/**"):
        acquire(bench, a, path)
    locks = bench.call(0, "lock.list", prefix="/r/src")["locks"]
    assert [lk["path"] for lk in locks] == ["/r/src/**", "/r/src/a"]


def test_check_reports_other_sessions_locks_of_any_mode_and_ignores_your_own(
    bench: Bench, a: Peer, b: Peer
) -> None:
    acquire(bench, a, "/r/src/**", mode="shared")
    acquire(bench, b, "/r/lib/x.ts")
    # bob works in /r/src: "x.ts" is /r/src/x.ts, under alice's glob.
    out = bench.call(b.conn, "lock.check", paths=["x.ts", "/r/lib/x.ts", "/r/README"])
    [conflict] = out["conflicts"]
    assert conflict["path"] == "/r/src/x.ts"
    assert [h["holder"] for h in conflict["holders"]] == ["alice"]
    # From the shell every lock counts, and relative paths need a cwd.
    shell = bench.call(0, "lock.check", paths=["src/x.ts", "lib/x.ts"], cwd="/r")
    assert [c["path"] for c in shell["conflicts"]] == ["/r/src/x.ts", "/r/lib/x.ts"]
    with pytest.raises(errors.InvalidParams):
        bench.call(0, "lock.check", paths=["lib/x.ts"])


def test_check_changes_nothing(bench: Bench, a: Peer, b: Peer) -> None:
    acquire(bench, a, "/r/a")
    bench.take()
    bench.call(b.conn, "lock.check", paths=["/r/a"])
    assert bench.take() == []


# -- events ------------------------------------------------------------------------------


def test_grant_release_and_expiry_each_emit_an_event_with_a_growing_seq(
    bench: Bench, a: Peer, b: Peer
) -> None:
    bench.take()
    acquire(bench, a, "/r/a", ttl=10)
    acquire(bench, b, "/r/b")
    bench.call(b.conn, "lock.release", path="/r/b")
    bench.advance(10)
    events = [e.event for e in bench.take() if isinstance(e, Emit)]
    assert [(e["type"], e["data"]["path"]) for e in events] == [
        ("lock_acquired", "/r/a"),
        ("lock_acquired", "/r/b"),
        ("lock_released", "/r/b"),
        ("lock_expired", "/r/a"),
    ]
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(set(seqs))
    logged = bench.call(0, "event.read", after=seqs[0] - 1, types=["lock_expired"])
    assert [e["seq"] for e in logged["events"]] == [seqs[-1]]


# -- changing mode -----------------------------------------------------------------------


def test_downgrading_to_shared_lets_queued_shared_requests_in(
    bench: Bench, a: Peer, b: Peer
) -> None:
    acquire(bench, a, "/r/a")
    waiter = queue(bench, b, "/r/a", mode="shared")
    bench.take()
    assert acquire(bench, a, "/r/a", mode="shared")["mode"] == "shared"
    assert bench.granted() == [waiter]
    assert sorted(bench.lock_paths()) == [("/r/a", "alice", "shared"), ("/r/a", "bob", "shared")]


def test_upgrading_to_exclusive_takes_its_turn_behind_queued_requests(
    bench: Bench, a: Peer, b: Peer
) -> None:
    acquire(bench, a, "/r/a", mode="shared")
    waiter = queue(bench, b, "/r/a")
    exc = refused(bench, a, "/r/a")
    assert exc.data["queued"] is True
    assert bench.lock_paths() == [("/r/a", "alice", "shared")]
    bench.call(a.conn, "lock.release", path="/r/a")
    assert waiter.lock is not None


def test_upgrading_to_exclusive_is_refused_while_another_session_shares_the_path(
    bench: Bench, a: Peer, b: Peer
) -> None:
    acquire(bench, a, "/r/a", mode="shared")
    acquire(bench, b, "/r/a", mode="shared")
    assert holder_names(refused(bench, a, "/r/a")) == ["bob"]
    acquire(bench, b, "/r/a", mode="shared")  # renewing what it has is fine
