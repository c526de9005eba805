"""An MCP server behind a broker of a shared store (PostgreSQL) that goes away: the agent is
told while it is out and when it is back, and its tools keep working afterwards; a session
that ended while its broker was cut off is joined again under its name, and the agent is
told its locks went. A session that the agent's own hook ended on purpose is not."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import mcp_types
import pytest
import trio

from slm_mesh.config import Settings
from slm_mesh.protocol import errors
from tests import pg
from tests.mcp.harness import Agent, open_mesh, texts
from tests.pg_link import link
from tests.wire import LineClient, broker_process, make_settings

pytestmark = pytest.mark.needs("postgresql")

LEASE_S = 1.5
GRACE_S = 2.0
SWEEP_S = "0.2"
BOUND_S = 30.0
POLL_S = 0.05
OUT_OF_REACH = "can't be reached from this machine's broker, so nothing was done; retry in 1 s"
STILL_OUT = "the mesh's shared store is out of reach from this machine's broker since"
BACK = "the mesh's shared store is reachable again"
JOINED_AGAIN = "your mesh session ended while this machine's broker was cut off"


def shared(settings: Settings, url: str, mesh_name: str, host: str) -> Settings:
    return replace(
        settings, store_url=url, mesh_name=mesh_name, host=host, lease_s=LEASE_S, grace_s=GRACE_S
    )


async def until(what: str, check: Callable[[], bool | Awaitable[bool]]) -> None:
    """Ask ``check`` until it holds (bounded)."""
    with trio.fail_after(BOUND_S):
        while True:
            held = check()
            if held if isinstance(held, bool) else await held:
                return
            await trio.sleep(POLL_S)


def peer_named(watcher: LineClient, name: str) -> dict[str, Any] | None:
    peers = watcher.call("peer.list", include_away=True)["peers"]
    return next((p for p in peers if p["name"] == name), None)


def error_code(result: mcp_types.CallToolResult) -> int | None:
    code = (result.structured_content or {}).get("code")
    return code if isinstance(code, int) else None


async def refused_for_the_store(agent: Agent) -> bool:
    result = await agent.call("mesh_state", action="set", key="k", value="v")
    return error_code(result) == errors.STORE_UNAVAILABLE


@contextlib.contextmanager
def line_client(path: Path) -> Iterator[LineClient]:
    client = LineClient(path)
    try:
        yield client
    finally:
        client.close()


async def test_the_agent_is_told_while_the_store_is_out_and_its_tools_work_once_it_is_back(
    own_cluster: pg.Cluster, tmp_short: Path
) -> None:
    settings = shared(make_settings(tmp_short), own_cluster.url, pg.mesh_name(), "laptop")
    with broker_process(settings, SLM_MESH_SWEEP_S=SWEEP_S):
        async with open_mesh(settings, tmp_short) as mesh:
            agent = await mesh.start(cwd=tmp_short)
            await _told_while_out_and_working_once_back(own_cluster, agent)


async def _told_while_out_and_working_once_back(cluster: pg.Cluster, agent: Agent) -> None:
    before = (await agent.ok("mesh_status"))["you"]
    await agent.ok("mesh_lock", action="lock", filePath="src/a.py")

    cluster.stop()
    results: list[mcp_types.CallToolResult] = []

    async def refused() -> bool:
        result = await agent.call("mesh_state", action="set", key="k", value="v")
        results.append(result)
        return error_code(result) == errors.STORE_UNAVAILABLE

    await until("a call refused for the store", refused)
    said = texts(results[-1])
    assert OUT_OF_REACH in said[0]
    assert not any(STILL_OUT in line for line in said)  # the error says it once
    status = await agent.call("mesh_status")  # needs no store: answers, with the notice
    assert not status.is_error
    assert STILL_OUT in texts(status)[-1]

    cluster.start()
    results.clear()

    async def told_it_is_back() -> bool:
        result = await agent.call("mesh_state", action="set", key="k", value="v")
        results.append(result)
        return any(BACK in line for line in texts(result))

    await until("told the store is back", told_it_is_back)
    assert not results[-1].is_error
    assert json.loads(texts(results[-1])[0])["version"] >= 1
    after = await agent.call("mesh_status")
    assert not any(BACK in line or STILL_OUT in line for line in texts(after))  # once
    you = (await agent.ok("mesh_status"))["you"]
    assert you["peer_id"] == before["peer_id"]  # the same session, within its grace
    held = await agent.ok("mesh_lock", action="query", filePath="src/a.py")
    assert held["yours"]["peer_id"] == before["peer_id"], held  # still held


async def test_a_session_that_ended_while_its_broker_was_cut_off_joins_again_under_its_name(
    pg_cluster: pg.Cluster, tmp_short: Path
) -> None:
    mesh_name = pg.mesh_name()
    async with contextlib.AsyncExitStack() as stack:
        way = stack.enter_context(link(pg_cluster, tmp_short / "link"))
        (tmp_short / "island").mkdir()
        (tmp_short / "main").mkdir()
        island = shared(make_settings(tmp_short / "island"), way.url, mesh_name, "island")
        main = shared(make_settings(tmp_short / "main"), pg_cluster.url, mesh_name, "main")
        stack.enter_context(broker_process(island, SLM_MESH_SWEEP_S=SWEEP_S))
        stack.enter_context(broker_process(main, SLM_MESH_SWEEP_S=SWEEP_S))
        watcher = stack.enter_context(line_client(main.socket_path))
        # Another agent of the same kind was first: this one is claude-code-2 from now on.
        first = stack.enter_context(line_client(main.socket_path))
        first.call("peer.register", agent="claude-code", cwd="/elsewhere")
        mesh = await stack.enter_async_context(open_mesh(island, tmp_short))
        agent = await mesh.start(cwd=tmp_short)
        before = (await agent.ok("mesh_status"))["you"]
        assert before["name"] == "claude-code-2"
        await agent.ok("mesh_lock", action="lock", filePath="src/a.py")
        first.call("peer.unregister")

        way.cut()
        await until("a call refused for the store", lambda: refused_for_the_store(agent))
        await until(
            "gone at the other broker", lambda: peer_named(watcher, "claude-code-2") is None
        )
        way.mend()

        results: list[mcp_types.CallToolResult] = []

        async def joined_again() -> bool:
            result = await agent.call("mesh_status")
            results.append(result)
            return any(JOINED_AGAIN in line for line in texts(result))

        await until("told it joined again", joined_again)
        told = next(line for line in texts(results[-1]) if JOINED_AGAIN in line)
        assert "You are in the mesh again as claude-code-2" in told
        assert "locks you held were released" in told
        you = json.loads(texts(results[-1])[0])["you"]
        assert you["name"] == "claude-code-2"  # the name it had, not the free claude-code
        assert you["peer_id"] != before["peer_id"]  # a new session
        # Its tools work as before, and the other broker sees it again.
        await agent.ok("mesh_lock", action="lock", filePath="src/a.py")
        seen = peer_named(watcher, "claude-code-2")
        assert seen is not None and (seen["status"], seen["host"]) == ("active", "island")
        held = watcher.call("lock.list")["locks"]
        assert [(lk["holder"], lk["peer_id"]) for lk in held] == [("claude-code-2", you["peer_id"])]
        assert not any(JOINED_AGAIN in line for line in texts(await agent.call("mesh_status")))
