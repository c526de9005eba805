"""The server's life: it joins as the agent it serves, leaves cleanly within a second of
stdin closing or SIGTERM, starts exactly one broker however many start at once, and
survives the broker being killed under it."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import trio

from slm_mesh.client.aio import MeshClient
from slm_mesh.config import Settings
from tests.mcp.harness import Mesh, broker_processes, wait_gone
from tests.mcp.test_workflow import wait_for_peer

EXIT_PROMISE_S = 1.0
RESTART_BOUND_S = 30.0


async def peers_at_broker(settings: Settings) -> list[dict[str, Any]]:
    """Every peer the broker knows that is not gone (live or away), asked directly."""
    with trio.fail_after(10):
        async with MeshClient.open(settings) as client:
            result = await client.call("peer.list", {"include_away": True})
    return list(result["peers"])


async def test_the_server_registers_as_the_agent_in_its_directory(
    mesh: Mesh, settings: Settings, tmp_short: Path
) -> None:
    agent = await mesh.start("backend", cwd=tmp_short)
    you = (await agent.ok("mesh_status"))["you"]
    assert you["name"] == "backend"  # SLM_MESH_NAME
    assert you["agent"] == "claude-code"  # from clientInfo
    (peer,) = await peers_at_broker(settings)
    assert peer["peer_id"] == you["peer_id"]
    assert peer["cwd"] == str(tmp_short)
    assert peer["pid"] == os.getpid()  # the agent: the process that started the server
    # tmp_short is in no git repository: scope=repo says so, and what works instead.
    refused = await agent.error("mesh_peers", scope="repo")
    assert "this session is not inside a git repository" in refused
    assert "scope=machine or scope=directory work" in refused


async def test_stdin_closing_or_sigterm_ends_the_server_within_a_second_and_it_leaves(
    mesh: Mesh, settings: Settings
) -> None:
    by_eof, by_sigterm = await mesh.start_all("by-eof", "by-sigterm")
    for agent in (by_eof, by_sigterm):
        await agent.ok("mesh_status")

    started = trio.current_time()
    await by_eof.close_stdin()
    assert await by_eof.wait_exit() == 0
    assert trio.current_time() - started < EXIT_PROMISE_S

    started = trio.current_time()
    os.kill(by_sigterm.pid, signal.SIGTERM)
    assert await by_sigterm.wait_exit() == 0
    assert trio.current_time() - started < EXIT_PROMISE_S

    assert await peers_at_broker(settings) == []  # both unregistered: no ghost, not even away


async def test_ten_servers_started_at_once_leave_exactly_one_broker(
    mesh: Mesh, settings: Settings
) -> None:
    agents = await mesh.start_all(*(f"agent{i}" for i in range(10)))
    statuses = [await agent.ok("mesh_status") for agent in agents]
    assert len({s["you"]["peer_id"] for s in statuses}) == 10
    broker_pids = {s["broker"]["pid"] for s in statuses}
    assert broker_processes(settings.data_dir) == list(broker_pids)
    assert mesh.broker_pid() in broker_pids
    assert statuses[-1]["broker"]["counts"]["peers"] == 10


async def test_a_killed_broker_is_restarted_and_the_session_resumed(
    mesh: Mesh, settings: Settings
) -> None:
    alice, bob = await mesh.start_all("alice", "bob")
    await alice.ok("mesh_lock", action="lock", filePath="src/auth.ts")
    before = await alice.ok("mesh_status")
    old_broker = before["broker"]["pid"]
    await wait_for_peer(alice, "bob")

    os.kill(old_broker, signal.SIGKILL)
    with trio.fail_after(5):
        await wait_gone(old_broker)

    with trio.fail_after(RESTART_BOUND_S):
        after = await alice.ok("mesh_status")
    assert after["broker"]["pid"] != old_broker
    assert after["you"]["peer_id"] == before["you"]["peer_id"]
    # The lock and the peers came back with the sessions.
    locks = (await bob.ok("mesh_lock", action="query", filePath="src/auth.ts"))["holders"]
    assert [lock["holder"] for lock in locks] == ["alice"]
    # And pushes flow on the new connection.
    await bob.ok("mesh_send", to="alice", message="still there?")
    with trio.fail_after(5):
        pushed = await alice.next_channel()
    assert pushed.content == "still there?"


async def test_a_crashed_server_started_again_by_its_agent_takes_its_name_back_at_once(
    mesh: Mesh, settings: Settings
) -> None:
    """Both servers are children of this test process: the same agent pid (issue 13)."""
    first = await mesh.start("backend")
    before = (await first.ok("mesh_status"))["you"]
    await first.ok("mesh_lock", action="lock", filePath="src/api.py")
    first.kill()
    await first.wait_exit()
    with trio.fail_after(10):  # the broker notices the connection drop: the peer is away
        while any(p["connected"] for p in await peers_at_broker(settings)):  # noqa: ASYNC110
            await trio.sleep(0.02)
    again = await mesh.start("backend")
    after = (await again.ok("mesh_status"))["you"]
    assert (after["peer_id"], after["name"]) == (before["peer_id"], "backend")
    held = await again.ok("mesh_lock", action="query", filePath="src/api.py")
    assert held["yours"]["path"].endswith("src/api.py")
    (peer,) = await peers_at_broker(settings)
    assert peer["connected"] is True


async def test_a_broker_an_agent_starts_exits_when_idle_and_says_so(
    mesh: Mesh, settings: Settings
) -> None:
    agent = await mesh.start("first")
    broker = (await agent.ok("mesh_status"))["broker"]
    assert broker["lifetime"] == "idle-exit"  # agents' brokers go when the agents do
    with trio.fail_after(10):
        async with MeshClient.open(settings) as client:
            status = await client.call("mesh.status", {})
    assert status["idle_exit_s"] == settings.idle_exit_s


async def test_a_session_the_agents_own_hook_ended_is_not_joined_again(
    mesh: Mesh, settings: Settings
) -> None:
    """SessionEnd (the agent exits) ends the session from another connection: the server
    (which exits a moment later) must not bring it back (rule 6 of mcp_server/link.py)."""
    agent = await mesh.start("leaving")
    await agent.ok("mesh_events", action="subscribe", types=["state_changed"])
    with trio.fail_after(10):
        async with MeshClient.open(settings) as hook:
            await hook.call("peer.attach", {"pid": os.getpid()})  # the agent's pid
            await hook.call("peer.unregister", {})
            # Pushed after the detach: once the server passes it on, it has handled that.
            await hook.call("state.set", {"key": "after", "value": 1})
    with trio.fail_after(10):
        pushed = await agent.next_channel()
    assert pushed.content.startswith("state_changed: ")
    assert await peers_at_broker(settings) == []
