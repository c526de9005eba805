"""The broker's side of the hooks: message.wait, sessions tied to a real process, batches
that attach and call in one write."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections.abc import Iterator

import pytest
import trio

from slm_mesh.config import Settings
from slm_mesh.protocol import errors
from tests.wire import in_process_broker


@pytest.fixture
def agent() -> Iterator[subprocess.Popen[bytes]]:
    """A process standing in for an agent (stopped by its pid at the end)."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


async def test_wait_answers_at_once_when_messages_are_unread(settings: Settings) -> None:
    async with in_process_broker(settings) as b:
        me, other = await b.connect(), await b.connect()
        await me.register("me")
        await other.call("message.send", to="me", body="already here")
        with trio.fail_after(5):
            got = await me.call("message.wait", timeout=60)
        assert got["reason"] == "message"
        assert [m["body"] for m in got["messages"]] == ["already here"]
        assert (await me.call("message.inbox"))["messages"] == []  # marked read


async def test_wait_answers_when_a_message_arrives(settings: Settings) -> None:
    async with in_process_broker(settings) as b:
        me, other = await b.connect(), await b.connect()
        await me.register("me")
        got: list[dict[str, object]] = []

        async def wait() -> None:
            got.append(await me.call("message.wait", timeout=60, mark_read=False))

        with trio.fail_after(5):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(wait)
                while not len(b.broker.message_waits):  # noqa: ASYNC110 (no event to wait on)
                    await trio.sleep(0.001)
                await other.call("message.send", to="me", body="wake up")
        [answer] = got
        assert answer["reason"] == "message"
        assert [m["body"] for m in answer["messages"]] == ["wake up"]  # type: ignore[attr-defined]
        assert answer["unread_left"] == 1  # mark_read=False: still unread


async def test_a_newer_waiter_ends_the_older_one(settings: Settings) -> None:
    async with in_process_broker(settings) as b:
        mcp, first, second = await b.connect(), await b.connect(), await b.connect()
        await mcp.register("me", pid=4242)
        for hook in (first, second):
            await hook.call("peer.attach", pid=4242)
        with trio.fail_after(5):
            await first.send_line(
                json.dumps({"jsonrpc": "2.0", "id": 1, "method": "message.wait", "params": {}})
            )
            while not len(b.broker.message_waits):  # noqa: ASYNC110 (no event to wait on)
                await trio.sleep(0.001)
            await second.send_line(
                json.dumps({"jsonrpc": "2.0", "id": 1, "method": "message.wait", "params": {}})
            )
            replaced = await first.answer()
            assert replaced["result"]["reason"] == "replaced"
            await mcp.call("peer.unregister")
            gone = await second.answer()
            assert gone["result"] == {"messages": [], "unread_left": 0, "reason": "gone"}


async def test_wait_ends_at_its_timeout(settings: Settings) -> None:
    async with in_process_broker(settings) as b:
        me = await b.connect()
        await me.register("me")
        with trio.fail_after(5):
            got = await me.call("message.wait", timeout=0.05)
        assert got == {"messages": [], "unread_left": 0, "reason": "timeout"}


async def test_wait_needs_a_session(settings: Settings) -> None:
    async with in_process_broker(settings) as b:
        conn = await b.connect()
        assert (await conn.error("message.wait"))["code"] == errors.NOT_REGISTERED
        assert (await conn.error("file.edited", paths=["/a"]))["code"] == errors.NOT_REGISTERED


async def test_a_batch_attaches_and_calls_in_one_write(settings: Settings) -> None:
    async with in_process_broker(settings) as b:
        mcp, other, hook = await b.connect(), await b.connect(), await b.connect()
        await mcp.register("backend", pid=4242)
        await other.call("message.send", to="backend", body="hi")
        batch = [
            {"jsonrpc": "2.0", "id": 1, "method": "peer.attach", "params": {"pid": 4242}},
            {"jsonrpc": "2.0", "id": 2, "method": "message.inbox", "params": {}},
        ]
        await hook.send_line(json.dumps(batch))
        with trio.fail_after(5):
            attached, inbox = await hook.answer()
        assert attached["result"]["name"] == "backend"
        assert [m["body"] for m in inbox["result"]["messages"]] == ["hi"]


async def test_a_session_tied_to_a_process_ends_when_the_process_exits(
    settings: Settings, agent: subprocess.Popen[bytes]
) -> None:
    async with in_process_broker(settings, idle_exit_s=3600) as b:
        watcher, hook = await b.connect(), await b.connect()
        await watcher.call("event.subscribe", types=["peer_left"])
        out = await hook.call(
            "peer.register", name="codex", cwd="/r", pid=agent.pid, lifetime="process"
        )
        assert out["attached"] is True
        await hook.call("lock.acquire", path="/r/a.py")
        await hook.aclose()
        b.opened.remove(hook)
        with trio.fail_after(5):
            while len(b.broker.conns) > 1:  # noqa: ASYNC110 (no event to wait on)
                await trio.sleep(0.001)
        assert b.broker.idle_scope.deadline == math.inf  # the session keeps the broker up
        agent.kill()
        with trio.fail_after(5):
            left = await watcher.notification("event")
        assert left["params"]["data"] == {
            "peer_id": out["peer_id"],
            "name": "codex",
            "reason": "process_exited",
        }
        assert (await watcher.call("lock.list"))["locks"] == []
        await watcher.aclose()
        b.opened.remove(watcher)
        with trio.fail_after(5):
            while b.broker.conns:  # noqa: ASYNC110 (no event to wait on)
                await trio.sleep(0.001)
        assert b.broker.idle_scope.deadline < math.inf  # now the idle exit may come


@pytest.fixture
def dead_pid() -> int:
    """The pid of a process that has exited (and was reaped)."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


async def test_a_session_for_a_process_that_is_not_running_is_refused(
    settings: Settings, dead_pid: int
) -> None:
    async with in_process_broker(settings) as b:
        conn = await b.connect()
        err = await conn.error("peer.register", cwd="/r", pid=dead_pid, lifetime="process")
        assert (err["code"], err["data"]["field"]) == (errors.INVALID_PARAMS, "pid")
