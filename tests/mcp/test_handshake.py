"""What an agent learns at ``initialize`` and ``tools/list``: the channel capability, short
instructions, and the eight tools within their budget."""

from __future__ import annotations

import json

import trio

from tests.mcp.harness import CALL_BOUND_S, Mesh

TOOLS = [
    "mesh_peers",
    "mesh_summary",
    "mesh_send",
    "mesh_inbox",
    "mesh_state",
    "mesh_lock",
    "mesh_events",
    "mesh_status",
]
TOOLS_LIST_BUDGET_BYTES = 6_000  # ≈ 1,500 tokens
INSTRUCTIONS_BUDGET_CHARS = 1_000


async def test_initialize_declares_the_channel_and_short_instructions(mesh: Mesh) -> None:
    agent = await mesh.start()
    capabilities = agent.init.capabilities
    assert capabilities.experimental == {"claude/channel": {}}
    assert capabilities.tools is not None
    assert agent.init.server_info.name == "slm-mesh"
    instructions = agent.init.instructions or ""
    assert len(instructions) <= INSTRUCTIONS_BUDGET_CHARS
    assert len(instructions.splitlines()) <= 8
    for tool in ("mesh_summary", "mesh_lock", "mesh_send", "mesh_inbox", "mesh_peers"):
        assert tool in instructions


async def test_tools_list_has_exactly_the_eight_tools_within_six_kilobytes(mesh: Mesh) -> None:
    agent = await mesh.start()
    with trio.fail_after(CALL_BOUND_S):
        listed = await agent.session.list_tools()
    assert [tool.name for tool in listed.tools] == TOOLS
    wire = listed.model_dump_json(by_alias=True, exclude_none=True)
    assert len(wire.encode()) < TOOLS_LIST_BUDGET_BYTES, len(wire.encode())
    for tool in listed.tools:
        assert tool.description and len(tool.description) < 200
        assert tool.input_schema["type"] == "object"
    # slm-mesh's own parameter names carry over.
    schemas = {tool.name: tool.input_schema for tool in listed.tools}
    assert schemas["mesh_lock"]["required"] == ["action"]
    assert {"filePath", "reason", "ttlMinutes"} <= set(schemas["mesh_lock"]["properties"])
    assert schemas["mesh_send"]["required"] == ["to", "message"]
    assert schemas["mesh_state"]["properties"]["action"]["enum"] == ["get", "set", "list", "delete"]
    json.dumps(schemas)  # plain JSON, nothing the client could not show


# What each tool's actions warrant (issue 13, item 11): nothing here reaches beyond the
# local mesh; only mesh_state overwrites or deletes what others rely on.
READ_ONLY = {"mesh_peers", "mesh_events", "mesh_status"}
NOT_DESTRUCTIVE = {"mesh_summary", "mesh_send", "mesh_inbox", "mesh_lock"}
IDEMPOTENT = {"mesh_summary", "mesh_lock"}
# What an agent reads; the acknowledgements of writes (send, summary, lock) carry
# structuredContent without a schema (schemas.py, _ACK).
STRUCTURED = {"mesh_peers", "mesh_inbox", "mesh_state", "mesh_status"}


async def test_every_tool_has_a_title_annotations_and_where_structured_an_output_schema(
    mesh: Mesh,
) -> None:
    agent = await mesh.start()
    with trio.fail_after(CALL_BOUND_S):
        listed = await agent.session.list_tools()
    for tool in listed.tools:
        assert tool.title, tool.name
        hints = tool.annotations
        assert hints is not None, tool.name
        assert hints.open_world_hint is False, tool.name
        assert bool(hints.read_only_hint) is (tool.name in READ_ONLY), tool.name
        if tool.name not in READ_ONLY:
            # MCP's default destructiveHint is true: said false wherever it is not.
            destructive = hints.destructive_hint is not False
            assert destructive is (tool.name not in NOT_DESTRUCTIVE), tool.name
            assert bool(hints.idempotent_hint) is (tool.name in IDEMPOTENT), tool.name
        if tool.name in STRUCTURED:
            assert tool.output_schema is not None, tool.name
            assert tool.output_schema["type"] == "object"
        else:
            assert tool.output_schema is None, tool.name
    # tools/list is built from constants: the same bytes every time (bench/ and the
    # launcher's prebuilt answers rely on it).
    again = await agent.session.list_tools()
    assert again.model_dump_json() == listed.model_dump_json()
