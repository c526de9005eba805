"""Tool calls answered without a task of their own (fastcall rule 6): against the real
broker (in this trio run) through the real session and tools, they answer as a task
would, survive a dropped connection as the session's rules say, and stay cancellable and
answered at shutdown."""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import trio
from mcp_types.jsonrpc import CONNECTION_CLOSED

from slm_mesh.config import Settings
from slm_mesh.mcp_server.fastcall import FastCalls
from slm_mesh.mcp_server.server import ToolBox
from slm_mesh.mcp_server.session import MAYBE_DONE, MeshSession
from tests.mcp.test_fastcall import Connection, Out, call, line
from tests.wire import InProcessBroker, RawConn, in_process_broker

BOUND_S = 10.0
# The two runs may straddle a second: their times are compared as a placeholder.
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
POLL_S = 0.01


def untimed(answers: list[Any]) -> Any:
    return json.loads(TIMESTAMP.sub("<time>", json.dumps(answers)))


@dataclass
class Served:
    fast: FastCalls
    box: ToolBox
    out: Out
    broker: InProcessBroker
    session: MeshSession
    nursery: trio.Nursery

    def answers(self) -> dict[Any, dict[str, Any]]:
        return {a["id"]: a for a in self.out.eager.lines if "id" in a}

    async def answer(self, id_: Any) -> dict[str, Any]:
        with trio.fail_after(BOUND_S):
            while id_ not in self.answers():  # noqa: ASYNC110 - the reader writes it
                await trio.sleep(POLL_S)
        return self.answers()[id_]

    def take(self, id_: Any, name: str, **arguments: Any) -> int:
        """Hand a tool call to FastCalls; how many tasks it started for it."""
        before = len(self.nursery.child_tasks)
        assert self.fast.intercept(line(call(id_, name=name, arguments=arguments)))
        return len(self.nursery.child_tasks) - before


@contextlib.asynccontextmanager
async def served(settings: Settings) -> AsyncIterator[Served]:
    async with in_process_broker(settings) as broker, trio.open_nursery() as nursery:
        session = MeshSession(settings)
        session.identify("claude-code")
        nursery.start_soon(session.run)
        box = ToolBox(session)
        out = Out()
        fast = FastCalls(box, Connection(), out, nursery)  # type: ignore[arg-type]
        with trio.fail_after(BOUND_S):
            await session.wait_joined_seq()
            await box.tools.run("mesh_status", {})  # the unread count is known from now
        yield Served(fast, box, out, broker, session, nursery)
        await session.leave()
        nursery.cancel_scope.cancel()


async def holder(broker: InProcessBroker, path: str) -> RawConn:
    """Another session holding ``path``."""
    other = await broker.connect()
    await other.register("holder", cwd="/repo")
    await other.call("lock.acquire", path=path)
    return other


async def test_one_call_tools_are_answered_without_a_task_as_a_task_answers(
    settings: Settings,
) -> None:
    async with served(settings) as s:
        calls: list[tuple[str, dict[str, Any]]] = [
            ("mesh_state", {"action": "set", "key": "k", "value": [1, "é"]}),
            ("mesh_state", {"action": "get", "key": "k"}),
            ("mesh_send", {"to": "all", "message": "hi"}),
            ("mesh_inbox", {}),
            ("mesh_lock", {"action": "lock", "filePath": "/repo/a.py"}),
            ("mesh_lock", {"action": "unlock", "filePath": "/repo/a.py"}),
            ("mesh_peers", {"include_self": True}),
            ("mesh_state", {"action": "nonsense"}),  # a bad argument, answered at once
        ]
        untasked = []
        for i, (name, arguments) in enumerate(calls):
            assert s.take(i, name, **arguments) == 0
            untasked.append((await s.answer(i))["result"])
        await s.box.tools.run("mesh_state", {"action": "delete", "key": "k"})
        in_task = [(await s.box.tools.run(name, arguments)).wire() for name, arguments in calls]
        assert untimed(untasked) == untimed(in_task)
        assert TIMESTAMP.search(json.dumps(untasked))  # the placeholder hid something


async def test_a_call_the_connection_drops_is_sent_again_only_when_that_is_harmless(
    settings: Settings,
) -> None:
    async with served(settings) as s:
        assert s.take(1, "mesh_state", action="get", key="k") == 0
        assert s.take(2, "mesh_send", to="all", message="hi") == 0
        for conn in list(s.broker.broker.conns.values()):
            conn.abort()  # before the broker has read either request
        again = await s.answer(1)
        assert again["result"]["isError"] is False  # sent again once reconnected
        assert again["result"]["structuredContent"] == {"key": "k", "found": False}
        maybe = (await s.answer(2))["result"]
        assert maybe["isError"] is True
        assert maybe["structuredContent"] == {"error": "connection_lost", "message": MAYBE_DONE}


async def test_a_call_the_peer_cancels_is_never_answered(settings: Settings) -> None:
    async with served(settings) as s:
        other = await holder(s.broker, "/repo/held.py")
        assert s.take(5, "mesh_lock", action="lock", filePath="/repo/held.py", wait=30) == 0
        cancel = {"method": "notifications/cancelled", "params": {"requestId": 5}}
        assert not s.fast.intercept(line({"jsonrpc": "2.0", **cancel}))
        await other.call("lock.release", path="/repo/held.py")  # granted: the answer comes
        with trio.fail_after(BOUND_S):
            while s.fast.pending:  # noqa: ASYNC110 - until the answer came and was dropped
                await trio.sleep(POLL_S)
        assert 5 not in s.answers()


async def test_a_call_still_waiting_at_shutdown_is_answered_connection_closed(
    settings: Settings,
) -> None:
    async with served(settings) as s:
        other = await holder(s.broker, "/repo/held.py")
        assert s.take(6, "mesh_lock", action="lock", filePath="/repo/held.py", wait=30) == 0
        s.fast.abandon()
        closed = {"code": CONNECTION_CLOSED, "message": "Connection closed"}
        assert s.answers()[6] == {"jsonrpc": "2.0", "id": 6, "error": closed}
        await other.call("lock.release", path="/repo/held.py")  # granted after all
        with trio.fail_after(BOUND_S):
            while not await other.call("lock.list"):  # noqa: ASYNC110 - until granted
                await trio.sleep(POLL_S)
        assert [a["id"] for a in s.out.eager.lines].count(6) == 1  # answered once


async def test_an_unread_count_unknown_at_the_answer_is_asked_for_before_answering(
    settings: Settings,
) -> None:
    async with served(settings) as s:
        sender = await s.broker.connect()
        await sender.register("sender", cwd="/repo")
        await sender.call("message.send", to=s.session.peer_name, body="hello")
        assert s.take(7, "mesh_status") == 0
        s.session.forget_unread()  # (a reconnect would): the answer can't tell the count
        answer = (await s.answer(7))["result"]
        assert answer["content"][-1]["text"] == (
            "[slm-mesh] 1 unread message waiting: read with mesh_inbox."
        )
        assert json.loads(answer["content"][0]["text"]) == answer["structuredContent"]
