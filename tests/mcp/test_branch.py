"""A session its MCP server carries follows its repository's branch (rule 7 of
mcp_server/link.py): after a ``git switch`` the others see the new branch in ``peer.list``
and one ``peer_updated`` carrying it, a detached HEAD as the hooks show it, and a broker
restart resumes the session on the branch it is on now, not the one it started on."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from slm_mesh.client.address import BrokerUnreachable
from slm_mesh.client.aio import MeshClient
from slm_mesh.config import Settings
from tests.gitcmd import git
from tests.mcp.harness import Mesh, wait_gone
from tests.wire import broker_command

FOLLOW_BOUND_S = 10.0
RESTART_BOUND_S = 30.0
POLL_S = 0.02
QUICK_CHECKS = {"SLM_MESH_BRANCH_CHECK_S": "0.02"}
NO_TIMER = {"SLM_MESH_BRANCH_CHECK_S": "3600"}  # only mesh_status looks
# A broker from before peer.update took git_branch: it refuses the param as unknown.
OLD_BROKER = """
import sys
from slm_mesh.protocol.table import METHODS
del METHODS["peer.update"].by_name["git_branch"]
from slm_mesh.entry import main
sys.argv = ["slm-mesh", "broker"]
raise SystemExit(main())
"""
REFUSED = "the broker takes no git_branch in peer.update"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A real repository on ``main`` with one commit."""
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    git(root, "commit", "-q", "--allow-empty", "-m", "first")
    return root


@contextlib.contextmanager
def old_broker(settings: Settings) -> Iterator[subprocess.Popen[bytes]]:
    """A broker that refuses ``peer.update {git_branch}``; stopped by its pid at the end."""
    with broker_command(settings, [sys.executable, "-c", OLD_BROKER]) as proc:
        yield proc


async def wait_connected(settings: Settings, peer_id: str) -> dict[str, Any]:
    """The peer, once a broker answers and the peer's server has resumed it there."""
    while True:  # no event to wait on before the new broker is up
        with contextlib.suppress(BrokerUnreachable):
            peer = await peer_at_broker(settings, peer_id)
            if peer["connected"]:
                return peer
        await trio.sleep(POLL_S)


async def peer_at_broker(settings: Settings, peer_id: str) -> dict[str, Any]:
    """The peer as another connection sees it (``peer.list``)."""
    with trio.fail_after(10):
        async with MeshClient.open(settings) as client:
            peers = (await client.call("peer.list", {"include_away": True}))["peers"]
    [peer] = [p for p in peers if p["peer_id"] == peer_id]
    return dict(peer)


async def branch_events(settings: Settings, peer_id: str) -> list[dict[str, Any]]:
    """The data of every ``peer_updated`` of ``peer_id`` that carries a branch."""
    with trio.fail_after(10):
        async with MeshClient.open(settings) as client:
            read = await client.call("event.read", {"types": ["peer_updated"], "limit": 1000})
    return [
        e["data"]
        for e in read["events"]
        if e["data"]["peer_id"] == peer_id and "git_branch" in e["data"]
    ]


async def wait_branch(settings: Settings, peer_id: str, branch: str) -> dict[str, Any]:
    """The peer as ``peer.list`` shows it, once a ``peer_updated`` put it on ``branch``
    (replayed from the start of the log, then streamed)."""
    with trio.fail_after(FOLLOW_BOUND_S):
        async with MeshClient.open(settings) as client:
            await client.call("event.subscribe", {"types": ["peer_updated"], "after": 0})
            async for method, params in client.notifications:
                data = params.get("data", {}) if method == "event" else {}
                if data.get("peer_id") == peer_id and data.get("git_branch") == branch:
                    break
    return await peer_at_broker(settings, peer_id)


async def test_a_git_switch_reaches_the_others_with_one_event(
    mesh: Mesh, settings: Settings, repo: Path
) -> None:
    agent = await mesh.start("dev", cwd=repo, **QUICK_CHECKS)
    you = (await agent.ok("mesh_status"))["you"]
    assert you["git_branch"] == "main"
    peer_id = you["peer_id"]
    assert await branch_events(settings, peer_id) == []  # nothing moved: nothing told

    git(repo, "switch", "-q", "-c", "feature-x")
    peer = await wait_branch(settings, peer_id, "feature-x")
    assert (peer["cwd"], peer["git_root"]) == (str(repo), str(repo))
    # Many checks later (each poll of the agent looks again), still the one event.
    for _ in range(3):
        assert (await agent.ok("mesh_status"))["you"]["git_branch"] == "feature-x"
    assert await branch_events(settings, peer_id) == [
        {
            "peer_id": peer_id,
            "name": "dev",
            "summary": "",
            "status": "active",
            "cwd": str(repo),
            "git_root": str(repo),
            "git_branch": "feature-x",
            "repo": peer["repo"],
        }
    ]

    git(repo, "switch", "-q", "main")  # and back
    await wait_branch(settings, peer_id, "main")
    assert [e["git_branch"] for e in await branch_events(settings, peer_id)] == [
        "feature-x",
        "main",
    ]


async def test_a_detached_head_shows_as_the_hooks_show_it(
    mesh: Mesh, settings: Settings, repo: Path
) -> None:
    agent = await mesh.start("dev", cwd=repo, **QUICK_CHECKS)
    peer_id = (await agent.ok("mesh_status"))["you"]["peer_id"]
    git(repo, "switch", "-q", "--detach", "HEAD")
    detached = "detached@" + git(repo, "rev-parse", "HEAD")[:12]
    await wait_branch(settings, peer_id, detached)
    assert (await agent.ok("mesh_status"))["you"]["git_branch"] == detached


async def test_mesh_peers_looks_at_once_and_shows_the_session_where_it_is_now(
    mesh: Mesh, settings: Settings, repo: Path
) -> None:
    agent = await mesh.start("dev", cwd=repo, **NO_TIMER)
    peer_id = (await agent.ok("mesh_status"))["you"]["peer_id"]
    git(repo, "switch", "-q", "-c", "feature-x")
    [me] = (await agent.ok("mesh_peers", include_self=True))["peers"]
    assert (me["peer_id"], me["git_branch"]) == (peer_id, "feature-x")
    await wait_branch(settings, peer_id, "feature-x")  # the broker is told at once too


async def test_with_the_timer_off_a_look_before_answering_still_tells_the_broker(
    mesh: Mesh, settings: Settings, repo: Path
) -> None:
    """``SLM_MESH_BRANCH_CHECK_S=0``: no periodic look, but ``mesh_status`` still looks
    (as the man page says), and what it shows the agent, the others see too."""
    agent = await mesh.start("dev", cwd=repo, SLM_MESH_BRANCH_CHECK_S="0")
    peer_id = (await agent.ok("mesh_status"))["you"]["peer_id"]
    git(repo, "switch", "-q", "-c", "feature-x")
    assert (await agent.ok("mesh_status"))["you"]["git_branch"] == "feature-x"
    await wait_branch(settings, peer_id, "feature-x")


async def test_mesh_status_looks_at_once_and_a_restart_resumes_on_the_new_branch(
    mesh: Mesh, settings: Settings, repo: Path
) -> None:
    agent = await mesh.start("dev", cwd=repo, **NO_TIMER)
    before = await agent.ok("mesh_status")
    peer_id = before["you"]["peer_id"]
    (repo / ".git" / "HEAD").write_text("ref: refs/heads/hotfix\n")  # as git writes it
    assert (await agent.ok("mesh_status"))["you"]["git_branch"] == "hotfix"
    await wait_branch(settings, peer_id, "hotfix")

    old_broker = before["broker"]["pid"]
    os.kill(old_broker, signal.SIGKILL)
    with trio.fail_after(5):
        await wait_gone(old_broker)
    # The server starts a broker and resumes; the resume must not take the session back
    # to the branch the server started on (no check runs meanwhile: NO_TIMER).
    with trio.fail_after(RESTART_BOUND_S):
        peer = await wait_connected(settings, peer_id)
    assert peer["git_branch"] == "hotfix"


async def test_an_older_broker_is_not_asked_again_and_learns_the_branch_at_the_resume(
    mesh: Mesh, settings: Settings, repo: Path
) -> None:
    with old_broker(settings) as old:
        agent = await mesh.start("dev", cwd=repo, SLM_MESH_MCP_LOG="INFO", **QUICK_CHECKS)
        peer_id = (await agent.ok("mesh_status"))["you"]["peer_id"]
        [log] = mesh.log_dir.glob("mcp-dev-*.log")
        git(repo, "switch", "-q", "-c", "feature-x")
        with trio.fail_after(FOLLOW_BOUND_S):
            while REFUSED not in log.read_text():  # noqa: ASYNC110 - a log line: no event
                await trio.sleep(POLL_S)
        assert (await agent.ok("mesh_status"))["you"]["git_branch"] == "feature-x"
        assert (await peer_at_broker(settings, peer_id))["git_branch"] == "main"
        old.kill()  # replaced by a current broker, which the server starts
        old.wait()
    with trio.fail_after(RESTART_BOUND_S):
        peer = await wait_connected(settings, peer_id)
    assert peer["git_branch"] == "feature-x"  # the resume carried it
    git(repo, "switch", "-q", "-c", "third")  # and the new broker is told of a switch
    await wait_branch(settings, peer_id, "third")
    assert log.read_text().count(REFUSED) == 1  # asked once, not at every check
