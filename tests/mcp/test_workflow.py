"""The seed workflow of the issue, end to end, through three real MCP servers.

Session 1 says it is refactoring auth and locks ``src/auth.ts``; session 2 sees that, finds
the lock held by session 1 and locks ``src/db.ts`` instead; session 3 broadcasts a schema
change and records ``db_version = 2.1``; sessions 1 and 2 both get the broadcast and read
the new version.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from tests.mcp.harness import Agent, Mesh

PUSH_BOUND_S = 5.0


@pytest.fixture
def repo(tmp_short: Path) -> Path:
    """A git checkout of branch ``feature-x`` (just what the server reads: ``.git/HEAD``)."""
    root = tmp_short / "repo"
    (root / ".git").mkdir(parents=True)
    (root / ".git" / "HEAD").write_text("ref: refs/heads/feature-x\n")
    (root / "src").mkdir()
    return root


async def wait_for_peer(agent: Agent, name: str) -> dict[str, object]:
    """Ask ``agent`` for the peers until ``name`` is among them (it registers after its
    ``initialize``, without calling a tool)."""
    with trio.fail_after(PUSH_BOUND_S):
        while True:
            peers = (await agent.ok("mesh_peers"))["peers"]
            for peer in peers:
                if peer["name"] == name:
                    return dict(peer)
            await trio.sleep(0.05)


async def test_the_seed_workflow(mesh: Mesh, repo: Path) -> None:
    s1, s2, s3 = await mesh.start_all("session1", "session2", "session3", cwd=repo)

    await s1.ok("mesh_summary", summary="refactoring the auth module")
    locked = await s1.ok("mesh_lock", action="lock", filePath="src/auth.ts")
    assert locked["lock"]["path"] == str(repo / "src" / "auth.ts")

    peer = await wait_for_peer(s2, "session1")
    assert peer["summary"] == "refactoring the auth module"
    assert peer["agent"] == "claude-code"
    assert peer["git_root"] == str(repo)
    assert peer["git_branch"] == "feature-x"
    query = await s2.ok("mesh_lock", action="query", filePath="src/auth.ts")
    assert query["locked"] is True
    assert [h["holder"] for h in query["holders"]] == ["session1"]
    await s2.ok("mesh_lock", action="lock", filePath="src/db.ts")

    await wait_for_peer(s3, "session2")
    sent = await s3.ok("mesh_send", to="all", message="database schema changing to v2.1")
    assert sorted(r["name"] for r in sent["recipients"]) == ["session1", "session2"]
    await s3.ok("mesh_state", action="set", key="db_version", value="2.1")

    for session in (s1, s2):
        with trio.fail_after(PUSH_BOUND_S):
            pushed = await session.next_channel()
        assert pushed.content == "database schema changing to v2.1"
        assert pushed.meta["from_name"] == "session3"
        inbox = await session.ok("mesh_inbox")
        assert [m["body"] for m in inbox["messages"]] == ["database schema changing to v2.1"]
        assert inbox["messages"][0]["from_name"] == "session3"
        state = await session.ok("mesh_state", action="get", key="db_version")
        assert state["value"] == "2.1"
        assert state["updated_by"] == "session3"

    locks = (await s3.ok("mesh_lock", action="query"))["locks"]
    assert {(Path(lock["path"]).name, lock["holder"]) for lock in locks} == {
        ("auth.ts", "session1"),
        ("db.ts", "session2"),
    }


async def test_state_writes_are_compare_and_set_with_if_version(mesh: Mesh) -> None:
    agent = await mesh.start("writer")
    first = await agent.ok("mesh_state", action="set", key="port", value=8080, if_version=0)
    assert first == {"key": "port", "version": 1}
    refused = await agent.error("mesh_state", action="set", key="port", value=1, if_version=0)
    assert "if_version=1" in refused
    listed = await agent.ok("mesh_state", action="list")
    assert [(e["key"], e["value"], e["version"]) for e in listed["entries"]] == [("port", 8080, 1)]
    assert await agent.ok("mesh_state", action="delete", key="port") == {
        "key": "port",
        "deleted": True,
    }
    assert await agent.ok("mesh_state", action="get", key="port") == {"key": "port", "found": False}


async def test_state_list_is_paged_with_after_and_next_after(mesh: Mesh) -> None:
    agent = await mesh.start("lister")
    for key in ("a", "b", "c"):
        await agent.ok("mesh_state", action="set", key=key, value=key)
    first = await agent.ok("mesh_state", action="list", limit=2)
    assert [e["key"] for e in first["entries"]] == ["a", "b"]
    assert first["next_after"] == "b"
    rest = await agent.ok("mesh_state", action="list", limit=2, after=first["next_after"])
    assert [e["key"] for e in rest["entries"]] == ["c"]
    assert "next_after" not in rest  # the last page says nothing more
    assert "limit must be at least 1" in await agent.error("mesh_state", action="list", limit=0)
    for i in range(25):
        await agent.ok("mesh_state", action="set", key=f"n{i:02}", value=i, namespace="many")
    default = await agent.ok("mesh_state", action="list", namespace="many")
    assert len(default["entries"]) == 20  # a page an agent's context can afford
    assert default["next_after"] == "n19"


async def test_events_read_returns_what_happened_since_the_last_read(mesh: Mesh) -> None:
    agent = await mesh.start("reader")
    await agent.ok("mesh_events")  # the cursor now stands at the head of the log
    await agent.ok("mesh_state", action="set", key="k", value=1)
    later = await agent.ok("mesh_events", types=["state_changed"])
    assert [e["type"] for e in later["events"]] == ["state_changed"]
    assert later["events"][0]["data"]["key"] == "k"
    again = await agent.ok("mesh_events")
    assert again["events"] == []


async def test_the_first_events_read_starts_at_the_sessions_join_unless_it_asks_for_history(
    mesh: Mesh,
) -> None:
    early = await mesh.start("early")
    await early.ok("mesh_state", action="set", key="before", value=1)
    late = await mesh.start("late")
    await late.ok("mesh_status")  # it has joined once it answers a tool call
    await early.ok("mesh_state", action="set", key="after", value=2)
    first = await late.ok("mesh_events")
    assert [e["data"].get("key") for e in first["events"]] == ["after"]
    history = await late.ok("mesh_events", after=0, types=["state_changed"])
    assert [e["data"]["key"] for e in history["events"]] == ["before", "after"]


async def test_a_bad_argument_is_an_error_result_that_names_it(mesh: Mesh) -> None:
    agent = await mesh.start()
    assert "action" in await agent.error("mesh_lock")
    assert "ttlMinutes" in await agent.error(
        "mesh_lock", action="lock", filePath="a", ttlMinutes="soon"
    )
    assert "mesh_status" in await agent.error("mesh_nonexistent")
