"""The eight tools as the agent sees them: names, descriptions and input schemas.

The names and parameters are slm-mesh's (``mesh_lock`` takes ``action`` and ``filePath``,
``mesh_send`` takes ``to`` and ``message``…), so prompts and habits carry over; what the
broker adds comes only as optional parameters. The whole ``tools/list`` answer is a budget
(under 6,000 bytes of JSON, tested), so descriptions are short and say when to use the
tool. Each tool has a title and annotations; the tools whose results an agent reads
(peers, inbox, state, status) have an output schema that their ``structuredContent``
follows (tested on both the SDK's path and the fast one); see ``_ACK`` for the others.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from slm_mesh.protocol.table import EVENT_TYPES, LOCK_MODES, MESSAGE_TYPES, SCOPES, STATUSES


def _schema(*required: str, **props: dict[str, Any]) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": props}
    if required:
        schema["required"] = list(required)
    return schema


def _enum(values: tuple[str, ...], description: str = "") -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string", "enum": list(values)}
    return {**schema, "description": description} if description else schema


def _text(description: str = "", **extra: Any) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string", **extra}
    return {**schema, "description": description} if description else schema


def _int(description: str, **extra: Any) -> dict[str, Any]:
    return {"type": "integer", "description": description, **extra}


def _number(description: str, **extra: Any) -> dict[str, Any]:
    return {"type": "number", "description": description, **extra}


def _flag(description: str) -> dict[str, Any]:
    return {"type": "boolean", "description": description}


def _out(*required: str, **props: str | dict[str, Any]) -> dict[str, Any]:
    """An output schema: top-level members and their JSON types ("" for any value)."""
    properties = {
        name: kind if isinstance(kind, dict) else ({"type": kind} if kind else {})
        for name, kind in props.items()
    }
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = list(required)
    return schema


# Annotations say only what differs from MCP's defaults (readOnlyHint false, destructiveHint
# true, idempotentHint false, openWorldHint true). Every tool acts inside the local mesh
# only, so openWorldHint is false throughout; destructiveHint means overwriting or deleting
# what others rely on (mesh_state set/delete), which no other tool does.
_LOCAL = {"openWorldHint": False}
# _ACK: the tools whose result only acknowledges a write (mesh_send, mesh_summary, like
# mesh_lock) carry structuredContent but declare no output schema. A schema there tells an
# agent nothing it acts on, and every client that knows one validates each result against
# it: ~60-80 us of the mcp SDK client's CPU per call (jsonschema, measured here), on the
# calls an agent makes most. The results an agent reads (peers, inbox, state, status)
# keep theirs.
_READS = {"readOnlyHint": True, **_LOCAL}
_ADDS = {"destructiveHint": False, **_LOCAL}


@dataclass(frozen=True, slots=True)
class ToolSpec:
    name: str
    title: str
    description: str
    input_schema: dict[str, Any]
    output_schema: dict[str, Any] | None
    annotations: dict[str, bool]


TOOL_SPECS: tuple[ToolSpec, ...] = (
    ToolSpec(
        "mesh_peers",
        "Peers",
        "List the other sessions: name, agent, summary, directory, branch.",
        _schema(
            scope=_enum(SCOPES, "default mesh (every machine); machine; directory: your cwd; repo"),
            include_self=_flag("also list yourself"),
        ),
        _out("peers", peers="array"),
        _READS,
    ),
    ToolSpec(
        "mesh_summary",
        "Set summary",
        "Tell the other sessions what you are working on.",
        _schema(
            "summary",
            summary=_text("what you are doing", maxLength=2500),
            status=_enum(STATUSES),
        ),
        None,  # a write's acknowledgement: see _ACK
        {"idempotentHint": True, **_ADDS},
    ),
    ToolSpec(
        "mesh_send",
        "Send message",
        'Message a peer (name or peer_id), "person" (the human at the shell) or "all". '
        "Body ≤ 64 KiB; an away peer gets it when it reconnects.",
        _schema(
            "to",
            "message",
            to=_text("recipient"),
            message=_text("the message"),
            type=_enum(MESSAGE_TYPES, "default text"),
            reply_to=_int("message id you answer", minimum=1),
            scope=_enum(SCOPES, 'limits to="all"'),
        ),
        None,  # a write's acknowledgement: see _ACK
        _ADDS,
    ),
    ToolSpec(
        "mesh_inbox",
        "Inbox",
        "Read messages sent to you (marks them read).",
        _schema(
            filter=_enum(("unread", "all"), "default unread"),
            **{"from": _text("only from this peer")},
            limit=_int("default 20", minimum=1, maximum=500),
            mark_read=_flag("default true"),
        ),
        _out("messages", "unread_left", messages="array", unread_left="integer"),
        _ADDS,
    ),
    ToolSpec(
        "mesh_state",
        "Shared state",
        "Shared key-value state: get, set, list or delete a key.",
        _schema(
            "action",
            action=_enum(("get", "set", "list", "delete")),
            key=_text(),
            value={"description": "any JSON value (set)"},
            namespace=_text('default "default"'),
            if_version=_int("write only at this version (0: absent)", minimum=0),
            ttl=_number("expiry, seconds (set)", exclusiveMinimum=0),
            prefix=_text("key prefix (list)"),
            after=_text("next page: the last next_after (list)"),
            limit=_int("list, default 20", minimum=1, maximum=1000),
        ),
        _out(key="string", value="", version="integer", entries="array"),
        _LOCAL,
    ),
    ToolSpec(
        "mesh_lock",
        "File locks",
        "Advisory file locks: lock before editing a shared file, unlock after, query to check. "
        "Locking again renews; a lock ends at unlock, when you leave, or at its TTL (default "
        "10 min) even while you work.",
        _schema(
            "action",
            action=_enum(("lock", "unlock", "query")),
            filePath=_text(
                "file or glob (src/auth/**); needed to lock. Without it: unlock all yours, "
                "query all locks"
            ),
            reason=_text("why, shown to others"),
            ttlMinutes=_number("default 10", exclusiveMinimum=0, maximum=1440),
            mode=_enum(LOCK_MODES, "default exclusive"),
            wait=_number("seconds to queue if held", minimum=0, maximum=3600),
        ),
        None,  # its result's shape depends on the action: no schema to promise
        {"idempotentHint": True, **_ADDS},
    ),
    ToolSpec(
        "mesh_events",
        "Mesh events",
        "Mesh events (joins, messages, locks, state). read: those since your last read "
        "(first: since you joined); subscribe: pushed to you as channel notifications.",
        _schema(
            action=_enum(("read", "subscribe", "unsubscribe"), "default read"),
            types={
                "type": "array",
                "items": {"type": "string", "enum": list(EVENT_TYPES)},
                "description": "only these types (default all)",
            },
            after=_int("events after this seq (0: all history)", minimum=0),
            since=_text("events after this ISO 8601 time"),
            limit=_int("default 50", minimum=1, maximum=1000),
        ),
        None,  # as mesh_lock
        _READS,
    ),
    ToolSpec(
        "mesh_status",
        "Mesh status",
        "Broker health and counts, your peer id and name, and the person's.",
        _schema(),
        _out("you", "broker", you="object", person="object", broker="object"),
        _READS,
    ),
)

TOOL_NAMES: tuple[str, ...] = tuple(spec.name for spec in TOOL_SPECS)
