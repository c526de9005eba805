"""The launcher's prebuilt answers (slm_mesh.zygote.prebuilt) are the server's own, byte for
byte: current with the code, equal to a real server process's lines, and right for every
``initialize`` the launcher takes (slm_mesh.zygote.early)."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import hypothesis.strategies as st
import trio
from hypothesis import HealthCheck, event, example, given
from hypothesis import settings as hypothesis_settings
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS

from slm_mesh.config import Settings
from slm_mesh.mcp_server import prebuild
from slm_mesh.zygote import prebuilt
from slm_mesh.zygote.early import plain_initialize
from tests.mcp.harness import SERVER_ARGV, server_env, stop_pid
from tests.mcp.raw import BOUND_S, RawClient
from tests.wire import processes_in


def line_of(table: dict[str, tuple[bytes, bytes]], version: str, request_id: int) -> bytes:
    head, tail = table[version]
    return head + str(request_id).encode() + tail


async def test_the_prebuilt_answers_are_current() -> None:
    """If this fails: python -m slm_mesh.mcp_server.prebuild (and commit the file)."""
    assert prebuild.TARGET.read_text() == prebuild.render(await prebuild.build())


def test_every_handshake_version_has_its_answers() -> None:
    assert set(prebuilt.INITIALIZE) == set(HANDSHAKE_PROTOCOL_VERSIONS)
    assert set(prebuilt.TOOLS_LIST) == set(HANDSHAKE_PROTOCOL_VERSIONS)
    for version in HANDSHAKE_PROTOCOL_VERSIONS:
        init = json.loads(line_of(prebuilt.INITIALIZE, version, 3))
        assert init["id"] == 3
        assert init["result"]["protocolVersion"] == version
        tools = json.loads(line_of(prebuilt.TOOLS_LIST, version, 4))
        assert next(t["name"] for t in tools["result"]["tools"]) == "mesh_peers"


async def test_a_server_process_writes_exactly_the_prebuilt_lines(settings: Settings) -> None:
    """Over real pipes, one server process per protocol version (the launcher's answers
    stand in for exactly these)."""

    async def one(version: str, index: int) -> None:
        process = await trio.lowlevel.open_process(
            SERVER_ARGV,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=server_env(settings, f"v{index}"),
        )
        try:
            client = RawClient(process)
            params = {
                "protocolVersion": version,
                "capabilities": {"roots": {}, "elicitation": {}},
                "clientInfo": {"name": "claude-code", "version": "2.1.197"},
            }
            with trio.fail_after(BOUND_S):
                await client.send(
                    {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": params}
                )
                assert await read_line(client) == line_of(prebuilt.INITIALIZE, version, 0)
                await client.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
                await client.send({"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
                assert await read_line(client) == line_of(prebuilt.TOOLS_LIST, version, 1)
                # "params": {} is answered by the launcher too (slm_mesh.zygote.early).
                tools_list = {"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {}}
                await client.send(tools_list)
                assert await read_line(client) == line_of(prebuilt.TOOLS_LIST, version, 2)
        finally:
            with trio.CancelScope(shield=True):
                await stop_pid(process.pid)
                await process.wait()

    try:
        async with trio.open_nursery() as nursery:
            for index, version in enumerate(HANDSHAKE_PROTOCOL_VERSIONS):
                nursery.start_soon(one, version, index)
    finally:
        with trio.CancelScope(shield=True):
            for pid in processes_in(settings.data_dir):  # the broker they started
                await stop_pid(pid)


async def read_line(client: RawClient) -> bytes:
    """The next whole line the server wrote, as written (newline included)."""
    while not client.pending:
        chunk = await client.stdout.receive_some(1 << 20)
        assert chunk, "the server closed stdout"
        client.pending += [
            line for line in client.lines.feed(bytes(chunk)) if isinstance(line, bytes)
        ]
    return client.pending.pop(0) + b"\n"


# -- every initialize the launcher takes is answered so by the server ----------------------

_leaf = st.none() | st.booleans() | st.integers(-3, 3) | st.text(max_size=4)
_json = st.recursive(
    _leaf,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)
_flags = st.dictionaries(
    st.sampled_from(["listChanged", "list", "x"]), st.booleans() | _leaf, max_size=2
)
_capability: st.SearchStrategy[Any] = (
    st.just({}) | _flags | st.dictionaries(st.text(max_size=3), _json, max_size=2) | _json
)
_capabilities = st.dictionaries(
    st.sampled_from(
        ["roots", "sampling", "elicitation", "experimental", "tasks", "extensions", "other"]
    ),
    _capability,
    max_size=4,
)
_client_info = st.fixed_dictionaries(
    {"name": st.text(max_size=6), "version": st.text(max_size=6)},
    optional={"title": st.text(max_size=6) | _leaf, "icons": _json, "websiteUrl": _leaf},
)
_version = st.sampled_from([*HANDSHAKE_PROTOCOL_VERSIONS, "2026-07-28", "1.0"]) | _leaf
_anything = st.fixed_dictionaries(
    {},
    optional={
        "protocolVersion": _version,
        "capabilities": _capabilities | _json,
        "clientInfo": _client_info | _json,
        "_meta": _json,
    },
)

# The shapes the launcher takes...
_plain = st.fixed_dictionaries(
    {
        "protocolVersion": st.sampled_from(HANDSHAKE_PROTOCOL_VERSIONS),
        "capabilities": st.fixed_dictionaries(
            {},
            optional={
                "roots": st.fixed_dictionaries({}, optional={"listChanged": st.booleans()}),
                "sampling": st.just({}),
                "elicitation": st.just({}),
                "experimental": st.dictionaries(
                    st.text(max_size=8),
                    st.dictionaries(st.text(max_size=3), _json, max_size=2),
                    max_size=2,
                ),
            },
        ),
        "clientInfo": st.fixed_dictionaries(
            {"name": st.text(max_size=6), "version": st.text(max_size=6)},
            optional={"title": st.text(max_size=6)},
        ),
    }
)


@st.composite
def _step_off(draw: st.DrawFn) -> dict[str, Any]:
    """...and shapes one step off them."""
    params: dict[str, Any] = draw(_plain)
    caps, info = params["capabilities"], params["clientInfo"]
    step = draw(
        st.sampled_from(
            ["version", "capability", "new capability", "info", "no info key", "meta", "whole"]
        )
    )
    if step == "version":
        params["protocolVersion"] = draw(_version)
    elif step == "capability":
        key = draw(st.sampled_from(["roots", "sampling", "elicitation", "experimental"]))
        caps[key] = draw(_leaf | _flags | st.dictionaries(st.text(max_size=2), _leaf, max_size=2))
    elif step == "new capability":
        caps[draw(st.sampled_from(["tasks", "extensions", "other"]))] = draw(_capability)
    elif step == "info":
        info[draw(st.sampled_from(["name", "version", "title", "icons", "websiteUrl"]))] = draw(
            _leaf
        )
    elif step == "no info key":
        del info[draw(st.sampled_from(sorted(info)))]
    elif step == "meta":
        params["_meta"] = draw(_json)
    else:
        key = draw(st.sampled_from(sorted(params)))
        if draw(st.booleans()):
            del params[key]
        else:
            params[key] = draw(_json)
    return params


_params = _plain | _step_off() | _step_off() | _anything

CLAUDE_CODE = {
    "protocolVersion": "2025-06-18",
    "capabilities": {"roots": {}, "elicitation": {}},
    "clientInfo": {"name": "claude-code", "version": "2.1.197"},
}
CODEX = {
    "protocolVersion": "2025-06-18",
    "capabilities": {"elicitation": {}},
    "clientInfo": {"name": "codex-mcp-client", "title": "Codex", "version": "0.171.0"},
}


@hypothesis_settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@example(params=CLAUDE_CODE)
@example(params=CODEX)
@example(params={**CODEX, "capabilities": {"experimental": {"a": {"b": [1, None]}}}})
# Near misses the server refuses: were the launcher to take one, this would fail.
@example(params={**CODEX, "clientInfo": {"name": "codex"}})
@example(params={**CODEX, "clientInfo": {"name": "codex", "version": 1}})
@example(params={**CODEX, "capabilities": {"sampling": 5}})
@example(params={**CODEX, "capabilities": {"roots": 3}})
@example(params={**CODEX, "capabilities": {"roots": {"listChanged": "x"}}})
@example(params={**CODEX, "capabilities": {"experimental": {"a": 1}}})
@example(params={**CODEX, "protocolVersion": 5})
@example(params={k: v for k, v in CODEX.items() if k != "capabilities"})
@given(params=_params)
def test_an_initialize_the_launcher_takes_gets_the_same_answers_from_the_server(
    params: dict[str, Any],
) -> None:
    version = plain_initialize(params, prebuilt.INITIALIZE)
    event("taken by the launcher" if version else "left to the server")
    if version is None:
        return  # left to the server: nothing to compare
    request = {"jsonrpc": "2.0", "id": 11, "method": "initialize", "params": params}
    lines = [
        json.dumps(request).encode(),
        prebuild.INITIALIZED_LINE,
        prebuild.tools_list_line(12),
    ]
    answers = trio.run(prebuild.serve_lines, lines)
    assert answers == [
        line_of(prebuilt.INITIALIZE, version, 11),
        line_of(prebuilt.TOOLS_LIST, version, 12),
    ]
