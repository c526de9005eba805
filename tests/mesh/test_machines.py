"""The rules across machines: two meshes (brokers) of two hosts on one store.

Both benches share one store object, as two brokers share one PostgreSQL database; the
store is the only state they have in common. Pushes between brokers are the broker's job
(tests/broker/ and tests/multi/); here the rules alone.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from slm_mesh.protocol import errors
from slm_mesh.store import Store
from tests.mesh.harness import Bench

REPO = "github.com/acme/app"


@pytest.fixture
def pair() -> Iterator[tuple[Bench, Bench]]:
    store = Store.open(None)
    laptop = Bench(store, host="laptop", broker_id="b-laptop")
    devbox = Bench(store, host="devbox", broker_id="b-devbox")
    yield laptop, devbox
    store.close()


def test_clones_of_one_repository_on_two_machines_lock_the_same_files(
    pair: tuple[Bench, Bench],
) -> None:
    laptop, devbox = pair
    a = laptop.register("a", cwd="/home/ann/app/src", git_root="/home/ann/app", repo=REPO)
    b = devbox.register("b", cwd="/work/app", git_root="/work/app", repo=REPO)
    lock = laptop.call(a.conn, "lock.acquire", path="auth.ts")["lock"]
    assert (lock["path"], lock["host"]) == ("/home/ann/app/src/auth.ts", "laptop")
    with pytest.raises(errors.LockConflict) as exc:
        devbox.call(b.conn, "lock.acquire", path="src/auth.ts")
    assert "on laptop" in str(exc.value)
    with pytest.raises(errors.LockConflict):
        devbox.call(b.conn, "lock.acquire", path="src/**", mode="shared")
    assert devbox.call(b.conn, "lock.acquire", path="src/db.ts")["granted"] is True
    [conflict] = devbox.call(b.conn, "lock.check", paths=["src/auth.ts"])["conflicts"]
    assert conflict["holders"][0]["holder"] == "a"


def test_without_a_repository_identity_paths_on_two_machines_never_collide(
    pair: tuple[Bench, Bench],
) -> None:
    laptop, devbox = pair
    a = laptop.register("a", cwd="/srv", git_root="/srv")  # no repo identity
    b = devbox.register("b", cwd="/srv", git_root="/srv")
    laptop.call(a.conn, "lock.acquire", path="/srv/conf")
    assert devbox.call(b.conn, "lock.acquire", path="/srv/conf")["granted"] is True
    # ...while on one machine the same absolute path still collides.
    c = laptop.register("c", cwd="/srv")
    with pytest.raises(errors.LockConflict):
        laptop.call(c.conn, "lock.acquire", path="/srv/conf")


def test_a_waiter_on_one_machine_keeps_its_place_before_a_later_one_on_another(
    pair: tuple[Bench, Bench],
) -> None:
    laptop, devbox = pair
    holder = laptop.register("holder", cwd="/a", git_root="/a", repo=REPO)
    first = laptop.register("first", cwd="/a", git_root="/a", repo=REPO)
    later = devbox.register("later", cwd="/b", git_root="/b", repo=REPO)
    laptop.call(holder.conn, "lock.acquire", path="f")
    waiter = laptop.call(first.conn, "lock.acquire", path="f", wait=30)
    late = devbox.call(later.conn, "lock.acquire", path="f", wait=30)
    laptop.call(holder.conn, "lock.release", path="f")
    # The laptop grants its own waiter; the devbox's, asked to grant, still finds it first.
    devbox.mesh.locks.grant_waiters(devbox.now)
    devbox._collect()
    assert devbox.granted() == []
    assert laptop.granted() == [waiter]
    laptop.call(first.conn, "lock.release", path="f")
    devbox.mesh.locks.grant_waiters(devbox.now)
    devbox._collect()
    assert devbox.granted() == [late]


def test_peer_scopes_across_machines(pair: tuple[Bench, Bench]) -> None:
    laptop, devbox = pair
    me = laptop.register("me", cwd="/home/ann/app", git_root="/home/ann/app", repo=REPO)
    laptop.register("local", cwd="/tmp")
    devbox.register("clone", cwd="/work/app", git_root="/work/app", repo=REPO)
    devbox.register("remote", cwd="/home/ann/app")  # same path, other machine

    def names(scope: str) -> set[str]:
        peers = laptop.call(me.conn, "peer.list", scope=scope)["peers"]
        return {p["name"] for p in peers}

    assert names("mesh") == {"local", "clone", "remote"}
    assert names("machine") == {"local"}
    assert names("repo") == {"clone"}
    assert names("directory") == set()
    hosts = {p["name"]: p["host"] for p in laptop.call(me.conn, "peer.list")["peers"]}
    assert hosts == {"local": "laptop", "clone": "devbox", "remote": "devbox"}


def test_a_peer_another_broker_carries_is_connected_and_never_ended_by_this_one(
    pair: tuple[Bench, Bench],
) -> None:
    laptop, devbox = pair
    me = laptop.register("me", cwd="/a")
    them = devbox.register("them", cwd="/b")
    [view] = laptop.call(me.conn, "peer.list")["peers"]
    assert view["connected"] is True
    laptop.fire("grace", them.peer_id)  # a stray timer: the devbox carries that peer
    assert laptop.peer_state(them.peer_id) == "live"
    sent = laptop.call(me.conn, "message.send", to="all", body="hi")
    assert [r["name"] for r in sent["recipients"]] == ["them"]
    assert laptop.delivered() == []  # the devbox's broker pushes it, not this one
