"""The person at the shell releases a lock an agent holds (``lock.release`` with ``force``):
the event says who released it, the holder is told, waiters get their turn."""

from __future__ import annotations

import pytest

from slm_mesh.mesh import Waiter
from slm_mesh.person import PERSON_ID
from slm_mesh.protocol import errors
from tests.mesh.harness import PERSON, Bench, Peer

ANONYMOUS = 0  # a connection that never registered: the person at the shell


@pytest.fixture
def agent(bench: Bench) -> Peer:
    peer = bench.register("backend", agent="claude-code", cwd="/repo")
    bench.call(peer.conn, "lock.acquire", path="src/auth.ts", reason="refactor")
    bench.take()
    return peer


def test_the_person_releases_an_agents_lock_and_the_event_says_so(
    bench: Bench, agent: Peer
) -> None:
    out = bench.call(
        ANONYMOUS, "lock.release", path="/repo/src/auth.ts", holder="backend", force=True
    )
    assert out["released"] == 1
    assert out["holder"] == "backend"
    assert bench.lock_paths() == []
    [released] = bench.events("lock_released")
    assert released["data"]["path"] == "/repo/src/auth.ts"
    assert released["data"]["holder"] == "backend"
    assert released["data"]["reason"] == "forced"
    assert released["data"]["released_by"] == PERSON  # the person at the shell, by name


def test_the_holder_is_told_by_a_message_from_the_person(bench: Bench, agent: Peer) -> None:
    out = bench.call(
        ANONYMOUS,
        "lock.release",
        path="/repo/src/auth.ts",
        holder=agent.peer_id,
        force=True,
        reason="the session went astray",
    )
    [told] = bench.delivered(agent.conn)
    assert told["id"] == out["message_id"]
    assert (told["from"], told["from_name"]) == (PERSON_ID, PERSON)
    assert told["type"] == "alert"
    assert "released your exclusive lock on /repo/src/auth.ts" in told["body"]
    assert told["body"].endswith(": the session went astray")
    # The message is in the holder's inbox, unread, even if it was not connected.
    inbox = bench.call(agent.conn, "message.inbox")
    assert [m["id"] for m in inbox["messages"]] == [out["message_id"]]


def test_a_holder_that_is_away_keeps_the_message_for_when_it_resumes(
    bench: Bench, agent: Peer
) -> None:
    bench.disconnect(agent.conn)
    out = bench.call(
        ANONYMOUS, "lock.release", path="/repo/src/auth.ts", holder="backend", force=True
    )
    assert out["released"] == 1
    back = bench.resume(agent)
    assert [m["id"] for m in bench.delivered(back.conn)] == [out["message_id"]]


def test_a_waiter_gets_the_lock_the_person_released(bench: Bench, agent: Peer) -> None:
    other = bench.register("frontend", cwd="/repo")
    waiter = bench.call(other.conn, "lock.acquire", path="/repo/src/auth.ts", wait=60)
    assert isinstance(waiter, Waiter)
    bench.call(ANONYMOUS, "lock.release", path="/repo/src/auth.ts", holder="backend", force=True)
    assert bench.granted() == [waiter]
    assert bench.lock_paths() == [("/repo/src/auth.ts", "frontend", "exclusive")]


def test_a_session_releasing_another_sessions_lock_is_named_in_the_event(
    bench: Bench, agent: Peer
) -> None:
    other = bench.register("frontend", cwd="/repo/src")
    out = bench.call(other.conn, "lock.release", path="auth.ts", holder="backend", force=True)
    assert out["released"] == 1  # the path is taken against the caller's cwd
    [released] = bench.events("lock_released")
    assert released["data"]["released_by"] == "frontend"
    [told] = bench.delivered(agent.conn)
    assert told["from_name"] == "frontend"


def test_nothing_to_release_is_not_an_error_and_tells_nobody(bench: Bench, agent: Peer) -> None:
    out = bench.call(
        ANONYMOUS, "lock.release", path="/repo/src/db.ts", holder="backend", force=True
    )
    assert out == {"released": 0, "holder": "backend"}
    assert bench.events() == []
    assert bench.delivered() == []
    assert bench.lock_paths() == [("/repo/src/auth.ts", "backend", "exclusive")]


def test_only_the_named_holders_lock_is_released(bench: Bench) -> None:
    a = bench.register("a", cwd="/repo")
    b = bench.register("b", cwd="/repo")
    for peer in (a, b):
        bench.call(peer.conn, "lock.acquire", path="/repo/docs", mode="shared")
    bench.call(ANONYMOUS, "lock.release", path="/repo/docs", holder="b", force=True)
    assert bench.lock_paths() == [("/repo/docs", "a", "shared")]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"path": "/repo/src/auth.ts", "holder": "backend"}, "force"),
        ({"path": "/repo/src/auth.ts", "force": True}, "holder"),
        ({"holder": "backend", "force": True}, "path"),
        ({"all": True, "holder": "backend", "force": True}, "all"),
        ({"path": "src/auth.ts", "holder": "backend", "force": True}, "path"),  # no cwd
    ],
)
def test_a_forced_release_needs_a_path_a_holder_and_force(
    bench: Bench, agent: Peer, params: dict[str, object], field: str
) -> None:
    with pytest.raises(errors.InvalidParams) as exc:
        bench.call(ANONYMOUS, "lock.release", **params)
    assert exc.value.code == errors.INVALID_PARAMS
    assert exc.value.data["field"] == field
    assert bench.lock_paths() == [("/repo/src/auth.ts", "backend", "exclusive")]


def test_an_unknown_holder_is_peer_not_found(bench: Bench, agent: Peer) -> None:
    with pytest.raises(errors.PeerNotFound) as exc:
        bench.call(ANONYMOUS, "lock.release", path="/repo/src/auth.ts", holder="ghost", force=True)
    assert exc.value.code == errors.PEER_NOT_FOUND


def test_without_force_an_anonymous_release_still_needs_a_session(bench: Bench) -> None:
    with pytest.raises(errors.NotRegistered) as exc:
        bench.call(ANONYMOUS, "lock.release", path="/repo/src/auth.ts")
    assert exc.value.code == errors.NOT_REGISTERED


def test_lock_list_counts_the_requests_waiting_on_each_lock(bench: Bench, agent: Peer) -> None:
    others = [bench.register(f"w{i}", cwd="/repo") for i in range(2)]
    for peer in others:
        bench.call(peer.conn, "lock.acquire", path="/repo/src/**", wait=60)
    free = bench.register("free", cwd="/repo")
    bench.call(free.conn, "lock.acquire", path="/repo/README.md")
    waiters = {lk["path"]: lk["waiters"] for lk in bench.call(0, "lock.list")["locks"]}
    assert waiters == {"/repo/src/auth.ts": 2, "/repo/README.md": 0}
