"""Sessions of agents whose hooks speak to the mesh: tied to a process, attached to from
other connections, adopted by the agent's MCP server."""

from __future__ import annotations

from typing import Any

import pytest

from slm_mesh.mesh import Detach, ReadElsewhere
from slm_mesh.protocol import errors
from slm_mesh.protocol.errors import MeshError
from tests.mesh.harness import Bench, Peer

AGENT_PID = 4242


def error_code(bench: Bench, conn: int, method: str, **params: Any) -> int:
    with pytest.raises(MeshError) as caught:
        bench.call(conn, method, **params)
    return caught.value.code


def hooks_session(bench: Bench, pid: int = AGENT_PID, cwd: str = "/r", **params: Any) -> Peer:
    conn = bench.new_conn()
    out = bench.call(
        conn, "peer.register", cwd=cwd, agent="codex", pid=pid, lifetime="process", **params
    )
    return Peer(conn, out["peer_id"], out["name"], out["resume_token"])


def test_a_session_tied_to_a_process_is_live_without_a_connection(bench: Bench) -> None:
    peer = hooks_session(bench)
    assert bench.watched == {peer.peer_id: AGENT_PID}
    bench.disconnect(peer.conn)  # the hook that registered it exits
    assert bench.peer_state(peer.peer_id) == "live"
    assert bench.timers == {}  # no grace: the process is what keeps it
    [view] = bench.call(bench.new_conn(), "peer.list")["peers"]
    assert (view["name"], view["connected"], view["lifetime"]) == ("codex", True, "process")


def test_it_is_gone_with_its_locks_the_moment_its_process_exits(bench: Bench) -> None:
    peer = hooks_session(bench)
    bench.call(peer.conn, "lock.acquire", path="/r/a.py")
    bench.disconnect(peer.conn)
    bench.take()
    bench.exit_process(AGENT_PID)
    assert bench.peer_state(peer.peer_id) == "gone"
    [left] = bench.events("peer_left")
    assert left["data"]["reason"] == "process_exited"
    assert bench.lock_paths() == []


def test_registering_for_a_process_with_a_live_session_attaches_to_it(bench: Bench) -> None:
    mcp = bench.register("backend", pid=AGENT_PID)
    out = bench.call(
        hook := bench.new_conn(), "peer.register", cwd="/r", pid=AGENT_PID, lifetime="process"
    )
    assert (out["peer_id"], out["attached"]) == (mcp.peer_id, True)
    assert bench.watched == {}  # its MCP server's connection carries it
    assert bench.call(hook, "peer.whoami")["name"] == "backend"
    again = hooks_session(bench)
    assert again.peer_id == mcp.peer_id
    assert len(bench.call(bench.new_conn(), "peer.list")["peers"]) == 1


def test_the_agents_mcp_server_adopts_the_session_its_hooks_started(bench: Bench) -> None:
    hooks = hooks_session(bench)
    bench.call(hooks.conn, "lock.acquire", path="/r/a.py")
    bench.call(bench.new_conn(), "message.send", to=hooks.name, body="hello")
    mcp = bench.register("codex-mcp", pid=AGENT_PID)
    assert mcp.peer_id == hooks.peer_id
    assert bench.watched == {}
    assert [m["body"] for m in bench.delivered(mcp.conn)] == ["hello"]
    assert bench.lock_paths() == [("/r/a.py", "codex", "exclusive")]
    bench.exit_process(AGENT_PID)  # no longer watched: its connection decides now
    assert bench.peer_state(mcp.peer_id) == "live"
    bench.disconnect(mcp.conn)
    assert bench.peer_state(mcp.peer_id) == "away"


def test_an_away_session_of_a_running_process_is_taken_back(bench: Bench) -> None:
    mcp = bench.register("backend", pid=AGENT_PID)
    bench.disconnect(mcp.conn)
    hooks = hooks_session(bench)
    assert hooks.peer_id == mcp.peer_id
    assert bench.peer_state(mcp.peer_id) == "live"
    assert bench.timers == {}
    assert bench.watched == {mcp.peer_id: AGENT_PID}


def test_a_session_for_a_process_needs_a_running_pid(bench: Bench) -> None:
    conn = bench.new_conn()
    for params in ({}, {"pid": 999}):
        bench.exited.add(999)
        code = error_code(bench, conn, "peer.register", cwd="/r", lifetime="process", **params)
        assert code == errors.INVALID_PARAMS
    code = error_code(
        bench, conn, "peer.register", cwd="/r", lifetime="process", pid=AGENT_PID, resume="x"
    )
    assert code == errors.INVALID_PARAMS
    code = error_code(bench, conn, "peer.register", cwd="/r", lifetime="forever")
    assert code == errors.INVALID_PARAMS


def test_attach_finds_the_session_by_pid_then_by_the_agents_session_id(bench: Bench) -> None:
    mcp = bench.register("backend", pid=AGENT_PID)
    hook = bench.new_conn()
    view = bench.call(hook, "peer.attach", pid=AGENT_PID, agent_session="sess-1")
    assert view["peer_id"] == mcp.peer_id
    later = bench.new_conn()  # a hook run by another process of the agent
    assert bench.call(later, "peer.attach", pid=1, agent_session="sess-1")["name"] == "backend"


def test_attach_without_a_live_session_is_peer_not_found(bench: Bench) -> None:
    conn = bench.new_conn()
    assert error_code(bench, conn, "peer.attach", pid=AGENT_PID) == errors.PEER_NOT_FOUND
    assert error_code(bench, conn, "peer.attach", agent_session="x") == errors.PEER_NOT_FOUND
    assert error_code(bench, conn, "peer.attach") == errors.INVALID_PARAMS
    away = bench.register("away", pid=7)
    bench.disconnect(away.conn)
    assert error_code(bench, conn, "peer.attach", pid=7) == errors.PEER_NOT_FOUND
    me = bench.register("me")
    assert error_code(bench, me.conn, "peer.attach", pid=7) == errors.INVALID_REQUEST


def test_an_attached_connection_acts_as_the_session_and_ends_nothing(bench: Bench) -> None:
    mcp = bench.register("backend", pid=AGENT_PID)
    bench.call(bench.new_conn(), "message.send", to="backend", body="hi")
    hook = bench.new_conn()
    bench.call(hook, "peer.attach", pid=AGENT_PID)
    [msg] = bench.call(hook, "message.inbox")["messages"]
    assert msg["body"] == "hi"
    bench.call(hook, "lock.acquire", path="/r/x")
    bench.disconnect(hook)
    assert bench.peer_state(mcp.peer_id) == "live"
    assert bench.lock_paths() == [("/r/x", "backend", "exclusive")]
    assert error_code(bench, hook, "peer.whoami") == errors.NOT_REGISTERED


def test_unregister_on_an_attached_connection_ends_the_session_at_once(bench: Bench) -> None:
    mcp = bench.register("backend", pid=AGENT_PID)
    hook = bench.new_conn()
    bench.call(hook, "peer.attach", pid=AGENT_PID)
    bench.take()
    bench.call(hook, "peer.unregister")
    assert bench.peer_state(mcp.peer_id) == "gone"
    assert [e for e in bench.take() if isinstance(e, Detach)] == [
        Detach(mcp.conn, mcp.peer_id, "ended", "unregistered")
    ]
    assert error_code(bench, mcp.conn, "peer.whoami") == errors.NOT_REGISTERED
    assert error_code(bench, hook, "peer.whoami") == errors.NOT_REGISTERED


def test_a_broadcast_reaches_a_session_tied_to_a_process(bench: Bench) -> None:
    hooks = hooks_session(bench)
    bench.disconnect(hooks.conn)
    sent = bench.call(bench.new_conn(), "message.send", to="all", body="schema v2")
    [recipient] = sent["recipients"]
    assert (recipient["peer_id"], recipient["connected"]) == (hooks.peer_id, True)
    assert bench.delivered() == []  # no connection to push to: it waits in the inbox


def test_an_inbox_page_can_be_bounded_in_characters(bench: Bench) -> None:
    me = bench.register("me")
    for body in ("a" * 30, "b" * 30, "c" * 30):
        bench.call(bench.new_conn(), "message.send", to="me", body=body)
    page = bench.call(me.conn, "message.inbox", max_chars=70)
    assert [m["body"][0] for m in page["messages"]] == ["a", "b"]
    assert page["unread_left"] == 1
    one = bench.call(me.conn, "message.inbox", max_chars=1)  # always at least one
    assert [m["body"][0] for m in one["messages"]] == ["c"]


def test_reads_by_an_attached_connection_are_told_to_the_carrying_one(bench: Bench) -> None:
    mcp = bench.register("backend", pid=AGENT_PID)
    for body in ("one", "two"):
        bench.call(bench.new_conn(), "message.send", to="backend", body=body)
    hook = bench.new_conn()
    bench.call(hook, "peer.attach", pid=AGENT_PID)
    bench.take()
    [first, second] = bench.call(hook, "message.inbox", mark_read=False)["messages"]
    bench.call(hook, "message.ack", ids=[first["id"]])
    bench.call(hook, "message.inbox")
    told = [e for e in bench.take() if isinstance(e, ReadElsewhere)]
    assert told == [
        ReadElsewhere(mcp.conn, mcp.peer_id, (first["id"],), 1),
        ReadElsewhere(mcp.conn, mcp.peer_id, (second["id"],), 0),
    ]
    bench.call(bench.new_conn(), "message.send", to="backend", body="three")
    bench.call(mcp.conn, "message.inbox")  # its own reads: nothing to tell
    assert [e for e in bench.take() if isinstance(e, ReadElsewhere)] == []


def test_a_hooks_session_is_where_its_latest_registration_says(bench: Bench) -> None:
    where: dict[str, Any] = {"git_root": "/r", "git_branch": "main", "repo": "example.com/r"}
    hooks = hooks_session(bench, **where)
    bench.take()
    writes = bench.peer_writes()
    hooks_session(bench, **where)  # every hook registers: nothing changed, nothing written
    assert (writes, bench.events("peer_updated")) == ([], [])
    again = hooks_session(bench, cwd="/s/sub", git_root="/s", git_branch="dev")
    assert again.peer_id == hooks.peer_id
    view = bench.call(again.conn, "peer.whoami")
    assert (view["cwd"], view["git_root"], view["git_branch"], view["repo"]) == (
        "/s/sub",
        "/s",
        "dev",
        None,
    )
    [moved] = bench.events("peer_updated")
    assert moved["data"] == {
        "peer_id": hooks.peer_id,
        "name": "codex",
        "summary": "",
        "status": "active",
        "cwd": "/s/sub",
        "git_root": "/s",
        "git_branch": "dev",
        "repo": None,
    }


def test_a_hooks_registration_leaves_the_workspace_its_mcp_server_registered(
    bench: Bench,
) -> None:
    mcp = bench.register("backend", pid=AGENT_PID, git_root="/r", git_branch="main")
    hooks_session(bench, cwd="/s", git_root="/s", git_branch="dev")
    view = bench.call(mcp.conn, "peer.whoami")
    assert (view["cwd"], view["git_root"], view["git_branch"]) == ("/r", "/r", "main")
    assert bench.events("peer_updated") == []
