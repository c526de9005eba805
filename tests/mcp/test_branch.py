"""A session its MCP server carries follows its repository's branch (rule 7 of
mcp_server/link.py): after a ``git switch`` the others see the new branch in ``peer.list``
and one ``peer_updated`` carrying it, a detached HEAD as the hooks show it, and a broker
restart resumes the session on the branch it is on now, not the one it started on."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest
import trio

from slm_mesh.client.address import BrokerUnreachable
from slm_mesh.client.aio import MeshClient
from slm_mesh.config import Settings
from tests.mcp.harness import Mesh, wait_gone

FOLLOW_BOUND_S = 10.0
RESTART_BOUND_S = 30.0
POLL_S = 0.02
QUICK_CHECKS = {"SLM_MESH_BRANCH_CHECK_S": "0.02"}
NO_TIMER = {"SLM_MESH_BRANCH_CHECK_S": "3600"}  # only mesh_status looks


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(cwd), *args],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A real repository on ``main`` with one commit."""
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    git(root, "commit", "-q", "--allow-empty", "-m", "first")
    return root


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
        while True:  # no event to wait on before the new broker is up
            with contextlib.suppress(BrokerUnreachable):
                peer = await peer_at_broker(settings, peer_id)
                if peer["connected"]:
                    break
            await trio.sleep(POLL_S)
    assert peer["git_branch"] == "hotfix"
