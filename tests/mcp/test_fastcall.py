"""tools/call beside the SDK's dispatch: taken only when plain, answered exactly as the SDK
answers, cancellable by the peer, answered CONNECTION_CLOSED at shutdown."""

from __future__ import annotations

import inspect
import json
from typing import Any

import jsonschema
import pytest
import trio
from mcp_types import methods as mcp_methods
from mcp_types.jsonrpc import CONNECTION_CLOSED
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from slm_mesh.config import Settings
from slm_mesh.mcp_server.fastcall import MAX_IN_FLIGHT, METHOD, WIRE_VERSIONS, FastCalls
from slm_mesh.mcp_server.tools import ToolResult
from tests.mcp.raw import BOUND_S, raw_server


class Eager:
    def __init__(self) -> None:
        self.lines: list[dict[str, Any]] = []
        self.queued = 0
        self.high_water = 1024

    def write(self, line: bytes) -> None:
        assert line.endswith(b"\n") and line.count(b"\n") == 1
        self.lines.append(json.loads(line))

    async def wait_for_room(self) -> None:
        return None


class Out:
    def __init__(self) -> None:
        self.eager = Eager()


class Connection:
    def __init__(self, accepted: bool = True, version: str = "2025-11-25") -> None:
        self.initialize_accepted = accepted
        self.protocol_version = version


class Tools:
    """Stands in for the tool handlers: answers at once, or when released."""

    def __init__(self) -> None:
        self.release = trio.Event()
        self.hold = False
        self.started = trio.Event()

    def start(self, name: str, arguments: dict[str, Any] | None, done: Any) -> bool:
        return False  # every call in a task

    async def run(self, name: str, arguments: dict[str, Any] | None) -> ToolResult:
        self.started.set()
        if self.hold:
            await self.release.wait()
        if name == "boom":
            raise ValueError("a bug")
        text = json.dumps({"name": name, "arguments": arguments})
        return ToolResult([text], {"name": name})


class Box:
    def __init__(self) -> None:
        self.tools = Tools()


def line(message: dict[str, Any]) -> bytes:
    return json.dumps(message).encode()


def call(id_: Any = 1, **params: Any) -> dict[str, Any]:
    params = params or {"name": "mesh_status", "arguments": {}}
    return {"jsonrpc": "2.0", "id": id_, "method": "tools/call", "params": params}


def fast_calls(nursery: trio.Nursery, **connection: Any) -> tuple[FastCalls, Box, Out]:
    box, out = Box(), Out()
    fast = FastCalls(box, Connection(**connection), out, nursery)  # type: ignore[arg-type]
    return fast, box, out


@pytest.mark.parametrize(
    "message",
    [
        call(),
        call("req-7"),
        call(name="mesh_peers"),  # no arguments at all
        call(name="mesh_state", arguments={"action": "get", "key": "k"}),
    ],
)
async def test_a_plain_tools_call_is_taken_and_answered(message: dict[str, Any]) -> None:
    async with trio.open_nursery() as nursery:
        fast, _box, out = fast_calls(nursery)
        assert fast.intercept(line(message))
    [answer] = out.eager.lines
    assert answer["id"] == message["id"]
    assert answer["result"]["content"][0]["type"] == "text"


@pytest.mark.parametrize(
    "message",
    [
        call(name="x", arguments={}, _meta={"progressToken": 1}),  # progress: the SDK's
        call(name="x", arguments={}, task={"ttl": 1000}),  # a task-augmented call
        call(name="x", arguments=[1, 2]),  # invalid params: the SDK says so
        call(name=3, arguments={}),
        call(True),  # a bool is not an id
        call(None),
        {**call(), "jsonrpc": "1.0"},
        {**call(), "extra": 1},
        {**call(), "params": None},
        {"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
        {"jsonrpc": "2.0", "method": "tools/call", "params": {"name": "x"}},  # a notification
    ],
)
async def test_anything_out_of_the_ordinary_is_left_to_the_sdk(message: dict[str, Any]) -> None:
    async with trio.open_nursery() as nursery:
        fast, _box, out = fast_calls(nursery)
        assert not fast.intercept(line(message))
    assert out.eager.lines == []


@pytest.mark.parametrize("connection", [{"accepted": False}, {"version": "2026-07-28"}])
async def test_before_initialize_or_on_a_modern_connection_the_sdk_answers(
    connection: dict[str, Any],
) -> None:
    async with trio.open_nursery() as nursery:
        fast, _box, _out = fast_calls(nursery, **connection)
        assert not fast.intercept(line(call()))


async def test_past_its_limit_of_calls_in_flight_the_sdk_takes_the_rest() -> None:
    async with trio.open_nursery() as nursery:
        fast, box, out = fast_calls(nursery)
        box.tools.hold = True
        assert all(fast.intercept(line(call(i))) for i in range(MAX_IN_FLIGHT))
        assert not fast.intercept(line(call(MAX_IN_FLIGHT)))
        box.tools.release.set()
    assert len(out.eager.lines) == MAX_IN_FLIGHT


async def test_a_handler_bug_is_answered_as_the_sdk_answers_it() -> None:
    async with trio.open_nursery() as nursery:
        fast, _box, out = fast_calls(nursery)
        assert fast.intercept(line(call(name="boom", arguments={})))
    error = {"code": 0, "message": "a bug"}
    assert out.eager.lines == [{"jsonrpc": "2.0", "id": 1, "error": error}]


@pytest.mark.parametrize("request_id", [5, "5"])  # a stringified id still correlates
async def test_a_call_the_peer_cancels_is_stopped_and_never_answered(request_id: Any) -> None:
    async with trio.open_nursery() as nursery:
        fast, box, out = fast_calls(nursery)
        box.tools.hold = True
        assert fast.intercept(line(call(5)))
        await box.tools.started.wait()
        cancel = {
            "jsonrpc": "2.0",
            "method": "notifications/cancelled",
            "params": {"requestId": request_id, "reason": "user"},
        }
        assert not fast.intercept(line(cancel))  # the SDK gets it too
    assert out.eager.lines == []  # the held call ended (the nursery closed) unanswered


async def test_a_call_cut_off_by_shutdown_is_answered_connection_closed() -> None:
    out_lines: list[dict[str, Any]] = []
    async with trio.open_nursery() as nursery:
        fast, box, out = fast_calls(nursery)
        out_lines = out.eager.lines
        box.tools.hold = True
        assert fast.intercept(line(call(9)))
        await box.tools.started.wait()
        nursery.cancel_scope.cancel()
    error = {"code": CONNECTION_CLOSED, "message": "Connection closed"}
    assert out_lines == [{"jsonrpc": "2.0", "id": 9, "error": error}]


CALLS: list[tuple[str, dict[str, Any]]] = [
    ("mesh_state", {"action": "set", "key": "k", "value": {"a": [1, "é"]}}),
    ("mesh_state", {"action": "get", "key": "k"}),
    ("mesh_state", {"action": "get", "key": "missing"}),
    ("mesh_state", {}),  # a bad argument: an isError result
    ("no_such_tool", {}),
    ("mesh_lock", {"action": "query", "filePath": "src/a.py"}),
    ("mesh_inbox", {}),
    ("mesh_peers", {}),
    ("mesh_summary", {"summary": "testing"}),
]
# Every tool, every action: what an output schema promises must hold on both paths.
EVERY_CALL: list[tuple[str, dict[str, Any]]] = [
    *CALLS,
    ("mesh_peers", {"scope": "directory", "include_self": True}),
    ("mesh_send", {"to": "all", "message": "hi"}),
    ("mesh_send", {"to": "person", "message": "hi"}),
    ("mesh_inbox", {"filter": "all"}),
    ("mesh_state", {"action": "list"}),
    ("mesh_state", {"action": "delete", "key": "k"}),
    ("mesh_lock", {"action": "lock", "filePath": "src/a.py"}),
    ("mesh_lock", {"action": "unlock"}),
    ("mesh_events", {}),
    ("mesh_events", {"action": "subscribe"}),
    ("mesh_events", {"action": "unsubscribe"}),
    ("mesh_status", {}),
]


async def test_both_paths_answer_the_same(settings: Settings) -> None:
    async with raw_server(settings) as client:
        for i, (name, arguments) in enumerate(CALLS):
            fast_id, sdk_id = 100 + 2 * i, 101 + 2 * i
            await client.tool(fast_id, name, **arguments)
            with trio.fail_after(BOUND_S):
                fast = await client.answer(fast_id)
            # The same call with an empty _meta goes through the SDK (rule 1).
            params = {"name": name, "arguments": arguments, "_meta": {}}
            request = {"jsonrpc": "2.0", "id": sdk_id, "method": "tools/call", "params": params}
            await client.send(request)
            with trio.fail_after(BOUND_S):
                sdk = await client.answer(sdk_id)
            assert fast.keys() == sdk.keys() == {"jsonrpc", "id", "result"}, (name, fast, sdk)
            if name == "mesh_state" and arguments.get("action") == "set":
                # The second set bumped the version: the rest is the same.
                fast["result"]["structuredContent"].pop("version")
                sdk["result"]["structuredContent"].pop("version")
                fast["result"]["content"] = sdk["result"]["content"] = None
            assert fast["result"] == sdk["result"], name


async def test_structured_content_follows_each_tools_output_schema_on_both_paths(
    settings: Settings,
) -> None:
    async with raw_server(settings) as client:
        await client.send({"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
        with trio.fail_after(BOUND_S):
            listed = (await client.answer(1))["result"]["tools"]
        schemas = {tool["name"]: tool.get("outputSchema") for tool in listed}
        with_schema = {name for name, schema in schemas.items() if schema is not None}
        assert with_schema == {"mesh_peers", "mesh_inbox", "mesh_state", "mesh_status"}
        checked = set()
        for i, (name, arguments) in enumerate(EVERY_CALL):
            for via_sdk in (False, True):
                id_ = 1000 + 2 * i + via_sdk
                params: dict[str, Any] = {"name": name, "arguments": arguments}
                if via_sdk:
                    params["_meta"] = {}  # not plain: the SDK's dispatch answers (rule 1)
                request = {"jsonrpc": "2.0", "id": id_, "method": "tools/call", "params": params}
                await client.send(request)
                with trio.fail_after(BOUND_S):
                    result = (await client.answer(id_))["result"]
                assert isinstance(result["structuredContent"], dict), (name, result)
                if result["isError"] or schemas.get(name) is None:
                    continue
                jsonschema.validate(result["structuredContent"], schemas[name])
                checked.add(name)
        assert checked == {name for name, schema in schemas.items() if schema is not None}


RESULTS = [
    ToolResult(['{"peers":[]}'], {"peers": []}),
    ToolResult(["text", "You have 2 unread messages"], {"a": None, "b": [1.5, "é", {"c": True}]}),
    ToolResult(["it failed"], {"error": "locked", "message": "it failed", "code": -32003}, True),
    ToolResult([], {}),
]


@pytest.mark.parametrize("version", sorted(WIRE_VERSIONS))
@pytest.mark.parametrize("result", RESULTS)
def test_the_built_result_is_what_the_sdks_surface_makes_of_it(
    version: str, result: ToolResult
) -> None:
    dumped = result.model().model_dump(by_alias=True, mode="json", exclude_none=True)
    sdk = mcp_methods.serialize_server_result(METHOD, version, dumped)
    # The same JSON text: same members, same values, same order.
    assert json.dumps(result.wire()) == json.dumps(sdk)


def test_the_built_versions_are_handshake_era_versions_the_sdk_knows() -> None:
    known = {v for (method, v) in mcp_methods.SERVER_RESULTS if method == METHOD}
    assert WIRE_VERSIONS.issubset(known - set(MODERN_PROTOCOL_VERSIONS))


async def test_a_version_it_does_not_build_goes_through_the_sdks_surface(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[str] = []
    real = mcp_methods.serialize_server_result

    def spy(method: str, version: str, data: Any) -> dict[str, Any]:
        seen.append(version)
        return real(method, version, data)

    monkeypatch.setattr(mcp_methods, "serialize_server_result", spy)
    monkeypatch.setattr("slm_mesh.mcp_server.fastcall.WIRE_VERSIONS", frozenset())
    async with trio.open_nursery() as nursery:
        fast, _box, out = fast_calls(nursery, version="2025-06-18")
        assert fast.intercept(line(call()))
    assert seen == ["2025-06-18"]
    [answer] = out.eager.lines
    assert answer["result"]["structuredContent"] == {"name": "mesh_status"}


class LaterTools(Tools):
    """Every call untasked, its answer (an awaitable: the unread count to ask for first)
    handed over when the test says."""

    def __init__(self) -> None:
        super().__init__()
        self.done: list[Any] = []

    def start(self, name: str, arguments: dict[str, Any] | None, done: Any) -> bool:
        self.done.append(done)
        return True


@pytest.mark.parametrize("how", ["cancelled by the peer", "abandoned at shutdown"])
async def test_an_answer_to_await_that_nobody_wants_is_closed_not_left_unawaited(
    how: str,
) -> None:
    async def later() -> ToolResult:
        raise AssertionError("nobody awaits it")  # pragma: no cover

    async with trio.open_nursery() as nursery:
        fast, box, out = fast_calls(nursery)
        box.tools = tools = LaterTools()
        assert fast.intercept(line(call(5)))
        if how == "abandoned at shutdown":
            fast.abandon()
        else:
            cancel = {"method": "notifications/cancelled", "params": {"requestId": 5}}
            assert not fast.intercept(line({"jsonrpc": "2.0", **cancel}))
        answer = later()
        [done] = tools.done
        done(answer)
        # Else "coroutine ... was never awaited" on the server's stderr when it is freed.
        assert inspect.getcoroutinestate(answer) == inspect.CORO_CLOSED
    assert [a["id"] for a in out.eager.lines] == ([5] if how == "abandoned at shutdown" else [])
