"""Peers and their sessions: register, names, away and grace, resume, restart."""

from __future__ import annotations

from typing import Any

import pytest

from slm_mesh.mesh import ArmTimer, Detach, DisarmTimer
from slm_mesh.protocol import errors
from slm_mesh.store import Store
from tests.mesh.harness import GRACE_S, PERSON, T0, Bench


def test_register_gives_a_peer_id_its_name_and_a_resume_token(bench: Bench) -> None:
    out = bench.call(1, "peer.register", name="backend", agent="claude-code", cwd="/r")
    assert out["name"] == "backend"
    assert out["peer_id"]
    assert out["resume_token"]
    assert out["resumed"] is False
    [joined] = bench.events("peer_joined")
    assert joined["data"]["peer_id"] == out["peer_id"]
    assert joined["data"]["resumed"] is False
    me = bench.call(1, "peer.whoami")
    assert me["peer_id"] == out["peer_id"]
    assert me["agent"] == "claude-code"
    assert me["connected"] is True
    assert me["status"] == "active"


def test_each_peer_gets_its_own_id_and_resume_token(bench: Bench) -> None:
    a, b = bench.register("a"), bench.register("b")
    assert a.peer_id != b.peer_id
    assert a.token != b.token


def test_a_name_defaults_to_the_agent_and_then_to_peer(bench: Bench) -> None:
    assert bench.register(agent="cursor").name == "cursor"
    assert bench.register().name == "peer"


def test_a_taken_name_gets_a_numeric_suffix(bench: Bench) -> None:
    names = [bench.register("backend").name for _ in range(3)]
    assert names == ["backend", "backend-2", "backend-3"]


def test_an_away_peer_keeps_its_name_reserved(bench: Bench) -> None:
    first = bench.register("backend")
    bench.disconnect(first.conn)
    assert bench.register("backend").name == "backend-2"


def test_a_gone_peers_name_is_free_again(bench: Bench) -> None:
    first = bench.register("backend")
    bench.call(first.conn, "peer.unregister")
    assert bench.register("backend").name == "backend"


def test_registering_twice_on_one_connection_is_an_invalid_request(bench: Bench) -> None:
    peer = bench.register("a")
    with pytest.raises(errors.InvalidRequest) as exc:
        bench.call(peer.conn, "peer.register", cwd="/r")
    assert exc.value.code == errors.INVALID_REQUEST


def test_a_summary_over_the_limit_is_too_large(bench: Bench) -> None:
    limit = bench.mesh.ctx.limits.max_summary_chars
    with pytest.raises(errors.TooLarge) as exc:
        bench.call(1, "peer.register", cwd="/r", summary="x" * (limit + 1))
    assert exc.value.code == errors.TOO_LARGE
    assert exc.value.data["limit"] == limit
    assert bench.mesh.peer_of(1) is None


SESSION_CALLS: list[tuple[str, dict[str, Any]]] = [
    ("peer.update", {"summary": "x"}),
    ("peer.whoami", {}),
    ("peer.unregister", {}),
    ("lock.acquire", {"path": "/r/a"}),
    ("lock.release", {"path": "/r/a"}),
    ("lock.renew", {"path": "/r/a", "ttl": 5}),
]


@pytest.mark.parametrize(("method", "params"), SESSION_CALLS)
def test_calls_that_need_a_session_are_refused_on_an_anonymous_connection(
    bench: Bench, method: str, params: dict[str, Any]
) -> None:
    with pytest.raises(errors.NotRegistered) as exc:
        bench.call(7, method, **params)
    assert exc.value.code == errors.NOT_REGISTERED


def test_update_changes_summary_and_status_and_emits_peer_updated(bench: Bench) -> None:
    peer = bench.register("a")
    bench.take()
    out = bench.call(peer.conn, "peer.update", summary="fixing auth", status="busy")
    assert out["summary"] == "fixing auth"
    assert out["status"] == "busy"
    [event] = bench.events("peer_updated")
    assert event["data"] == {
        "peer_id": peer.peer_id,
        "name": "a",
        "summary": "fixing auth",
        "status": "busy",
    }


def test_update_with_nothing_to_change_is_invalid_params(bench: Bench) -> None:
    peer = bench.register("a")
    with pytest.raises(errors.InvalidParams) as exc:
        bench.call(peer.conn, "peer.update")
    assert exc.value.code == errors.INVALID_PARAMS


def test_update_of_the_branch_writes_it_and_tells_where_the_session_is(bench: Bench) -> None:
    peer = bench.register("a", git_root="/r", git_branch="main", repo="example.com/r")
    bench.take()
    out = bench.call(peer.conn, "peer.update", git_branch="feature-x")
    assert (out["git_branch"], out["status"]) == ("feature-x", "active")
    listed = bench.call(bench.new_conn(), "peer.list")["peers"]
    assert [p["git_branch"] for p in listed] == ["feature-x"]
    [event] = bench.events("peer_updated")
    assert event["data"] == {  # the shape a hooks-only session's move has
        "peer_id": peer.peer_id,
        "name": "a",
        "summary": "",
        "status": "active",
        "cwd": "/r",
        "git_root": "/r",
        "git_branch": "feature-x",
        "repo": "example.com/r",
    }


def test_update_to_the_branch_the_session_is_on_writes_nothing(bench: Bench) -> None:
    peer = bench.register("a", git_root="/r", git_branch="main")
    bench.take()
    writes = bench.peer_writes()
    assert bench.call(peer.conn, "peer.update", git_branch="main")["git_branch"] == "main"
    assert (writes, bench.events("peer_updated")) == ([], [])
    bench.call(peer.conn, "peer.update", git_branch="main", summary="s")  # as before
    assert [e["data"].get("git_branch") for e in bench.events("peer_updated")] == [None]


def test_a_branch_over_the_limit_is_too_large(bench: Bench) -> None:
    peer = bench.register("a", git_root="/r", git_branch="main")
    with pytest.raises(errors.TooLarge):
        bench.call(peer.conn, "peer.update", git_branch="b" * 257)


def test_peer_list_leaves_out_the_caller_unless_asked(bench: Bench) -> None:
    a, b = bench.register("a"), bench.register("b")
    others = bench.call(a.conn, "peer.list")["peers"]
    assert [p["peer_id"] for p in others] == [b.peer_id]
    everyone = bench.call(a.conn, "peer.list", include_self=True)["peers"]
    assert {p["peer_id"] for p in everyone} == {a.peer_id, b.peer_id}


def test_peer_list_counts_each_peers_unread_messages_when_asked(bench: Bench) -> None:
    a, b = bench.register("a"), bench.register("b")
    assert "unread" not in bench.call(a.conn, "peer.list")["peers"][0]
    for body in ("one", "two"):
        bench.call(a.conn, "message.send", to="b", body=body)
    bench.call(b.conn, "message.send", to="a", body="three")

    def unread() -> dict[str, int]:
        peers = bench.call(0, "peer.list", include_unread=True)["peers"]
        return {p["name"]: p["unread"] for p in peers}

    assert unread() == {"a": 1, "b": 2}
    bench.call(b.conn, "message.inbox")
    assert unread() == {"a": 1, "b": 0}


def test_peer_list_scopes_by_directory_and_by_repo(bench: Bench) -> None:
    me = bench.register("me", cwd="/r/web", git_root="/r")
    same_dir = bench.register("same-dir", cwd="/r/web", git_root="/r")
    same_repo = bench.register("same-repo", cwd="/r/api", git_root="/r")
    bench.register("elsewhere", cwd="/q", git_root="/q")

    def names(**params: Any) -> set[str]:
        return {p["name"] for p in bench.call(me.conn, "peer.list", **params)["peers"]}

    assert names(scope="directory") == {same_dir.name}
    assert names(scope="repo") == {same_dir.name, same_repo.name}
    assert names(scope="directory", cwd="/q") == {"elsewhere"}
    assert len(names(scope="machine")) == 3


def test_peer_list_by_directory_from_an_anonymous_connection_needs_a_cwd(bench: Bench) -> None:
    with pytest.raises(errors.InvalidParams) as exc:
        bench.call(9, "peer.list", scope="directory")
    assert exc.value.data == {"field": "cwd"}


# -- away, grace and resume ---------------------------------------------------------------


def test_a_dropped_connection_makes_its_peer_away_for_the_grace(bench: Bench) -> None:
    peer = bench.register("a")
    bench.take()
    bench.disconnect(peer.conn)
    assert bench.peer_state(peer.peer_id) == "away"
    assert ArmTimer("grace", peer.peer_id, T0 + GRACE_S) in bench.log
    [listed] = bench.call(0, "peer.list")["peers"]
    assert listed["status"] == "away"
    assert listed["connected"] is False
    assert bench.call(0, "peer.list", include_away=False)["peers"] == []


def test_a_connection_without_a_peer_can_close_without_effect(bench: Bench) -> None:
    bench.disconnect(42)
    assert bench.take() == []


def test_resuming_within_the_grace_gives_back_the_peer_its_inbox_and_its_locks(
    bench: Bench,
) -> None:
    peer = bench.register("backend")
    bench.call(peer.conn, "lock.acquire", path="/r/a")
    bench.disconnect(peer.conn)
    sender = bench.register("sender")
    sent = bench.call(sender.conn, "message.send", to="backend", body="while you were out")
    bench.advance(GRACE_S - 1)
    bench.take()

    back = bench.resume(peer)

    assert back.peer_id == peer.peer_id
    assert back.name == "backend"
    assert bench.peer_state(peer.peer_id) == "live"
    assert DisarmTimer("grace", peer.peer_id) in bench.log
    assert [m["id"] for m in bench.delivered(back.conn)] == sent["ids"]
    assert bench.lock_paths() == [("/r/a", "backend", "exclusive")]
    [joined] = bench.events("peer_joined")
    assert joined["data"]["resumed"] is True
    inbox = bench.call(back.conn, "message.inbox")
    assert [m["body"] for m in inbox["messages"]] == ["while you were out"]


def test_the_grace_timer_of_a_resumed_peer_does_nothing(bench: Bench) -> None:
    peer = bench.register("a")
    bench.disconnect(peer.conn)
    back = bench.resume(peer)
    bench.take()
    bench.fire("grace", peer.peer_id)
    assert bench.peer_state(back.peer_id) == "live"
    assert bench.events("peer_left") == []


def test_after_the_grace_a_peer_is_gone_its_locks_released_and_peer_left_emitted(
    bench: Bench,
) -> None:
    peer = bench.register("a")
    bench.call(peer.conn, "lock.acquire", path="/r/a")
    bench.disconnect(peer.conn)
    bench.take()

    bench.advance(GRACE_S)

    assert bench.peer_state(peer.peer_id) == "gone"
    assert bench.lock_paths() == []
    [released] = bench.events("lock_released")
    assert released["data"]["reason"] == "session_gone"
    [left] = bench.events("peer_left")
    assert left["data"] == {"peer_id": peer.peer_id, "name": "a", "reason": "grace_expired"}
    assert bench.call(0, "peer.list")["peers"] == []


def test_a_gone_peers_token_registers_a_new_peer(bench: Bench) -> None:
    peer = bench.register("a")
    bench.disconnect(peer.conn)
    bench.advance(GRACE_S)
    again = bench.resume(peer, name="a")
    assert again.peer_id != peer.peer_id
    assert again.token != peer.token
    assert again.name == "a"


def test_a_gone_peer_can_not_be_resumed_even_on_a_fresh_connection(bench: Bench) -> None:
    peer = bench.register("a")
    bench.call(peer.conn, "peer.unregister")
    out = bench.call(bench.new_conn(), "peer.register", cwd="/r", resume=peer.token)
    assert out["resumed"] is False
    assert out["peer_id"] != peer.peer_id


def test_an_unknown_resume_token_registers_a_new_peer(bench: Bench) -> None:
    out = bench.call(1, "peer.register", cwd="/r", resume="no-such-token")
    assert out["resumed"] is False


def test_resuming_while_the_old_connection_is_still_bound_detaches_it(bench: Bench) -> None:
    peer = bench.register("a")
    bench.take()
    back = bench.resume(peer)
    assert back.peer_id == peer.peer_id
    assert bench.detached() == [peer.conn]
    assert Detach(peer.conn, peer.peer_id, "resumed") in bench.log
    assert bench.mesh.peer_of(peer.conn) is None
    assert bench.mesh.peer_of(back.conn) == peer.peer_id
    with pytest.raises(errors.NotRegistered):
        bench.call(peer.conn, "peer.whoami")
    # The old connection closing later must not take the resumed peer away.
    bench.disconnect(peer.conn)
    assert bench.peer_state(peer.peer_id) == "live"


def test_unregister_ends_the_session_at_once(bench: Bench) -> None:
    peer = bench.register("a")
    bench.call(peer.conn, "lock.acquire", path="/r/a")
    bench.take()
    assert bench.call(peer.conn, "peer.unregister") == {}
    assert bench.peer_state(peer.peer_id) == "gone"
    assert bench.lock_paths() == []
    [left] = bench.events("peer_left")
    assert left["data"]["reason"] == "unregistered"
    with pytest.raises(errors.NotRegistered):
        bench.call(peer.conn, "peer.whoami")
    # The connection may register again, as a new peer.
    assert bench.call(peer.conn, "peer.register", cwd="/r")["peer_id"] != peer.peer_id


# -- restart -----------------------------------------------------------------------------


def test_a_restart_keeps_peers_away_for_one_grace_and_ends_locks_whose_time_is_up() -> None:
    store = Store.open(None)
    before = Bench(store)
    alive = before.register("alive")
    before.call(alive.conn, "lock.acquire", path="/r/long", ttl=3600)
    before.call(alive.conn, "lock.acquire", path="/r/short", ttl=10)
    away = before.register("away")
    before.disconnect(away.conn)
    gone = before.register("gone")
    before.call(gone.conn, "lock.acquire", path="/r/gone")
    before.call(gone.conn, "peer.unregister")

    # The broker dies; a new one starts on the same store a minute later.
    after = Bench(store, now=T0 + 60)
    after.mesh.start(after.now)
    after._collect()

    assert after.peer_state(alive.peer_id) == "away"
    assert after.peer_state(away.peer_id) == "away"
    assert after.peer_state(gone.peer_id) == "gone"
    assert after.timers[("grace", alive.peer_id)] == T0 + 60 + GRACE_S
    assert after.timers[("grace", away.peer_id)] == T0 + 60 + GRACE_S
    assert after.timers[("lock", ("/r/long", alive.peer_id))] == T0 + 3600
    [expired] = after.events("lock_expired")
    assert expired["data"]["path"] == "/r/short"
    assert after.lock_paths() == [("/r/long", "alive", "exclusive")]

    back = after.resume(alive)
    assert back.peer_id == alive.peer_id
    assert after.lock_paths() == [("/r/long", "alive", "exclusive")]

    after.advance(GRACE_S)
    assert after.peer_state(away.peer_id) == "gone"
    assert after.peer_state(alive.peer_id) == "live"
    store.close()


def test_the_reserved_names_all_cli_person_and_the_persons_name_get_a_suffix(
    bench: Bench,
) -> None:
    assert bench.register("all").name == "all-2"
    assert bench.register("cli").name == "cli-2"
    assert bench.register("person").name == "person-2"
    assert bench.register(PERSON).name == f"{PERSON}-2"


# -- a restarted MCP server takes its name back (rule 5) ----------------------------------

AGENT_PID = 4242


def test_a_restarted_server_of_the_same_agent_takes_its_name_and_session_back_at_once(
    bench: Bench,
) -> None:
    crashed = bench.register("backend", pid=AGENT_PID)
    bench.call(crashed.conn, "lock.acquire", path="/r/api.py")
    other = bench.register("other")
    bench.call(other.conn, "message.send", to="backend", body="while you were out")
    bench.disconnect(crashed.conn)  # the MCP server crashed: its connection dropped
    bench.advance(1.0)  # well within the grace
    again = bench.register("backend", pid=AGENT_PID)
    assert (again.peer_id, again.name) == (crashed.peer_id, "backend")
    assert bench.peer_state(again.peer_id) == "live"
    assert bench.lock_paths() == [("/r/api.py", "backend", "exclusive")]
    [waiting] = bench.call(again.conn, "message.inbox")["messages"]
    assert waiting["body"] == "while you were out"
    joined = bench.events("peer_joined")[-1]
    assert joined["data"]["resumed"] is True
    # Its grace timer is gone: the session does not end 30 s later.
    bench.advance(GRACE_S * 2)
    assert bench.peer_state(again.peer_id) == "live"


def test_another_agent_asking_for_an_away_name_still_gets_a_suffix(bench: Bench) -> None:
    away = bench.register("backend", pid=AGENT_PID)
    bench.disconnect(away.conn)
    assert bench.register("backend", pid=AGENT_PID + 1).name == "backend-2"
    assert bench.register("backend").name == "backend-3"  # no pid: no proof either
    assert bench.peer_state(away.peer_id) == "away"


def test_a_live_session_of_the_same_agent_keeps_its_name(bench: Bench) -> None:
    live = bench.register("backend", pid=AGENT_PID)
    second = bench.register("backend", pid=AGENT_PID)
    assert second.name == "backend-2"
    assert second.peer_id != live.peer_id
    assert bench.detached() == []


def test_a_resume_token_takes_the_name_back_within_the_grace(bench: Bench) -> None:
    peer = bench.register("backend")
    bench.disconnect(peer.conn)
    back = bench.resume(peer, name="backend")
    assert (back.peer_id, back.name) == (peer.peer_id, "backend")


def test_scope_repo_outside_a_git_repository_says_so_and_which_scopes_work(
    bench: Bench,
) -> None:
    loose = bench.register("loose", cwd="/tmp/scratch")  # joined with no git_root
    with pytest.raises(errors.InvalidParams) as exc:
        bench.call(loose.conn, "peer.list", scope="repo")
    assert exc.value.code == errors.INVALID_PARAMS
    assert "not inside a git repository" in exc.value.message
    assert "scope=machine or scope=directory" in exc.value.message
    assert bench.call(loose.conn, "peer.list", scope="directory") == {"peers": []}
    with pytest.raises(errors.InvalidParams) as anonymous:
        bench.call(bench.new_conn(), "peer.list", scope="repo")
    assert "give git_root" in anonymous.value.message
