"""Locks through the tools: a conflict names the holder in words an agent can act on, and a
killed holder's lock is released once the broker's grace has passed."""

from __future__ import annotations

import signal

import trio

from slm_mesh.protocol.errors import LOCK_CONFLICT
from tests.mcp.harness import Mesh

GRACE_S = 2.0
RELEASE_BOUND_S = 15.0


async def test_a_lock_held_by_one_session_is_refused_to_another_naming_the_holder(
    mesh: Mesh,
) -> None:
    alice, bob = await mesh.start_all("alice", "bob")
    await alice.ok("mesh_lock", action="lock", filePath="src/auth.ts", reason="refactoring login")
    own = await alice.ok("mesh_lock", action="query", filePath="src/auth.ts")
    assert (own["locked"], own["yours"]["reason"]) == (False, "refactoring login")

    result = await bob.call("mesh_lock", action="lock", filePath="src/auth.ts")
    assert result.is_error
    assert result.structured_content is not None
    assert result.structured_content["code"] == LOCK_CONFLICT
    message = result.structured_content["message"]
    assert message.startswith("src/auth.ts is locked by alice (claude-code) until ")
    assert "refactoring login" in message
    assert "mesh_send to=alice" in message

    # A shared lock does not stop readers; and the holder may release it.
    await alice.ok("mesh_lock", action="unlock", filePath="src/auth.ts")
    await bob.ok("mesh_lock", action="lock", filePath="src/auth.ts", mode="shared")
    await alice.ok("mesh_lock", action="lock", filePath="src/auth.ts", mode="shared")


async def test_a_lock_is_released_after_its_killed_holder_s_grace(mesh: Mesh) -> None:
    grace = {"SLM_MESH_GRACE_S": str(GRACE_S)}  # read by the broker the first server starts
    alice, bob = await mesh.start_all("alice", "bob", env=grace)
    await alice.ok("mesh_lock", action="lock", filePath="src/auth.ts")

    alice.kill()
    assert await alice.wait_exit() == -signal.SIGKILL
    killed_at = trio.current_time()
    refused = await bob.call("mesh_lock", action="lock", filePath="src/auth.ts")
    assert refused.is_error  # alice is away, not gone: her lock holds through the grace

    with trio.fail_after(RELEASE_BOUND_S):
        # Retrying is what an agent does; the broker pushes it nothing when a lock frees.
        while (await bob.call("mesh_lock", action="lock", filePath="src/auth.ts")).is_error:  # noqa: ASYNC110
            await trio.sleep(0.1)
    assert trio.current_time() - killed_at >= GRACE_S * 0.75
    peers = (await bob.ok("mesh_peers"))["peers"]
    assert "alice" not in [p["name"] for p in peers]


async def test_unlock_without_a_path_releases_all_of_a_session_s_locks(mesh: Mesh) -> None:
    agent = await mesh.start("many")
    for path in ("a.py", "b.py", "src/**"):
        await agent.ok("mesh_lock", action="lock", filePath=path)
    assert await agent.ok("mesh_lock", action="unlock") == {"released": 3}
    assert (await agent.ok("mesh_lock", action="query"))["locks"] == []
