"""The mesh when the store refuses a write (disk full, read-only): the call fails, the
store rolls back, and nothing of it lingers in memory or in the effects; timers whose work
was refused try again. Synchronous, on the mesh test bench: the store's event append (the
last write of every transaction) raises ``StorageError`` while the disk is "full".
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from slm_mesh.mesh import Effect, Emit
from slm_mesh.mesh.context import STORAGE_RETRY_S
from slm_mesh.protocol import errors
from slm_mesh.store import StorageError, Store
from tests.mesh.harness import GRACE_S, Bench, Peer


class FullDisk:
    def __init__(self, store: Store) -> None:
        self.full = False
        self._append = store.append_event
        store.append_event = self._refuse  # type: ignore[method-assign, assignment]

    def _refuse(self, *args: Any) -> int:
        if self.full:
            raise StorageError("database can't be written (database or disk is full)")
        return self._append(*args)


@pytest.fixture
def bench() -> Iterator[Bench]:
    b = Bench()
    yield b
    b.store.close()


@pytest.fixture
def disk(bench: Bench) -> FullDisk:
    return FullDisk(bench.store)


def mirrored(bench: Bench) -> set[tuple[str, str]]:
    """The locks in memory, checked to be exactly the locks in the store."""
    stored = {(r["path"], r["peer_id"]) for r in bench.store.all_locks()}
    assert set(bench.mesh.locks.held) == stored
    for key, row in bench.mesh.locks.held.items():
        assert row == next(r for r in bench.store.all_locks() if (r["path"], r["peer_id"]) == key)
    return stored


def collect(bench: Bench) -> None:
    """Take the effects a failed timer or disconnect left (the broker applies them after
    a failure too; the bench's fire/disconnect only do so on success)."""
    bench._collect()


def refused(bench: Bench, conn: int, method: str, **params: Any) -> list[Effect]:
    """Make a call the store refuses; return the effects it left (never an event)."""
    bench.take()
    with pytest.raises(StorageError):
        bench.call(conn, method, **params)
    effects = bench.take()
    assert not [e for e in effects if isinstance(e, Emit)]  # no phantom event
    return effects


@pytest.fixture
def a(bench: Bench) -> Peer:
    return bench.register("a")


@pytest.fixture
def b(bench: Bench) -> Peer:
    return bench.register("b")


def test_a_refused_acquire_leaves_no_lock_behind(
    bench: Bench, disk: FullDisk, a: Peer, b: Peer
) -> None:
    disk.full = True
    refused(bench, a.conn, "lock.acquire", path="/r/x")
    assert mirrored(bench) == set()
    assert ("lock", ("/r/x", a.peer_id)) not in bench.timers
    disk.full = False
    assert bench.call(b.conn, "lock.acquire", path="/r/x")["granted"] is True


def test_a_refused_release_keeps_the_lock_held_in_memory_as_in_the_store(
    bench: Bench, disk: FullDisk, a: Peer, b: Peer
) -> None:
    bench.call(a.conn, "lock.acquire", path="/r/x")
    bench.call(a.conn, "lock.acquire", path="/r/y")
    disk.full = True
    refused(bench, a.conn, "lock.release", all=True)
    assert mirrored(bench) == {("/r/x", a.peer_id), ("/r/y", a.peer_id)}
    with pytest.raises(errors.LockConflict):
        bench.call(b.conn, "lock.acquire", path="/r/x")
    disk.full = False
    assert bench.call(a.conn, "lock.release", all=True) == {"released": 2}
    assert mirrored(bench) == set()


def test_a_refused_renew_keeps_the_old_expiry_and_its_timer(
    bench: Bench, disk: FullDisk, a: Peer
) -> None:
    lock = bench.call(a.conn, "lock.acquire", path="/r/x", ttl=60)["lock"]
    disk.full = True
    bench.store.put_lock = _refusing(bench.store.put_lock, disk)  # type: ignore[method-assign]
    with pytest.raises(StorageError):
        bench.call(a.conn, "lock.renew", path="/r/x", ttl=600)
    mirrored(bench)
    assert bench.mesh.locks.held[("/r/x", a.peer_id)]["expires_at"] == lock["expires_at"]
    assert bench.timers[("lock", ("/r/x", a.peer_id))] == lock["expires_at"]


def _refusing(fn: Any, disk: FullDisk) -> Any:
    def refuse(*args: Any) -> Any:
        if disk.full:
            raise StorageError("database can't be written (database or disk is full)")
        return fn(*args)

    return refuse


def test_a_refused_expiry_is_tried_again_and_then_frees_the_lock_for_a_waiter(
    bench: Bench, disk: FullDisk, a: Peer, b: Peer
) -> None:
    bench.call(a.conn, "lock.acquire", path="/r/x", ttl=10)
    waiter = bench.call(b.conn, "lock.acquire", path="/r/x", wait=100)
    disk.full = True
    bench.now += 10
    with pytest.raises(StorageError):
        bench.fire("lock", ("/r/x", a.peer_id))
    collect(bench)
    assert mirrored(bench) == {("/r/x", a.peer_id)}
    assert bench.timers[("lock", ("/r/x", a.peer_id))] == bench.now + STORAGE_RETRY_S
    assert bench.mesh.locks.waiters == [waiter]  # still queued, not lost
    disk.full = False
    bench.advance(STORAGE_RETRY_S)
    assert waiter.lock is not None
    assert mirrored(bench) == {("/r/x", b.peer_id)}


def test_a_disconnect_that_cannot_be_recorded_still_ends_the_session_after_the_grace(
    bench: Bench, disk: FullDisk, a: Peer
) -> None:
    bench.call(a.conn, "lock.acquire", path="/r/x")
    disk.full = True
    with pytest.raises(StorageError):
        bench.disconnect(a.conn)
    collect(bench)
    assert bench.peer_state(a.peer_id) == "live"  # the store could not say otherwise
    assert ("grace", a.peer_id) in bench.timers  # but the grace runs
    bench.now += GRACE_S
    with pytest.raises(StorageError):  # still full: tried again later
        bench.fire("grace", a.peer_id)
    collect(bench)
    assert bench.timers[("grace", a.peer_id)] == bench.now + STORAGE_RETRY_S
    disk.full = False
    bench.advance(STORAGE_RETRY_S)
    assert bench.peer_state(a.peer_id) == "gone"
    assert mirrored(bench) == set()


def test_a_refused_unregister_keeps_the_session(bench: Bench, disk: FullDisk, a: Peer) -> None:
    disk.full = True
    refused(bench, a.conn, "peer.unregister")
    disk.full = False
    assert bench.call(a.conn, "peer.whoami")["peer_id"] == a.peer_id
    assert bench.call(a.conn, "peer.unregister") == {}


def test_a_refused_resume_leaves_the_old_connection_its_session(
    bench: Bench, disk: FullDisk, a: Peer
) -> None:
    disk.full = True
    with pytest.raises(StorageError):
        bench.resume(a)
    assert bench.mesh.sessions.conn_of[a.peer_id] == a.conn
    assert bench.detached() == []


def test_a_refused_write_emits_nothing_and_timers_are_only_for_what_was_committed(
    bench: Bench, disk: FullDisk, a: Peer
) -> None:
    disk.full = True
    calls: list[tuple[str, dict[str, Any]]] = [
        ("state.set", {"key": "k", "value": 1}),
        ("message.send", {"to": "a", "body": "hi"}),
        ("lock.acquire", {"path": "/r/**"}),
        ("peer.update", {"summary": "refused"}),
    ]
    for method, params in calls:
        assert refused(bench, a.conn, method, **params) == []
    disk.full = False
    seq = bench.call(a.conn, "state.set", key="k", value=1)
    assert seq == {"version": 1}
    [event] = bench.events("state_changed")
    assert event["seq"] == bench.store.last_seq()  # the log and the fan-out agree
