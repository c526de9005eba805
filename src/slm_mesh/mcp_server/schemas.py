"""The eight tools as the agent sees them: names, descriptions and input schemas.

The names and parameters are slm-mesh's (``mesh_lock`` takes ``action`` and ``filePath``,
``mesh_send`` takes ``to`` and ``message``…), so prompts and habits carry over; what the
broker adds comes only as optional parameters. The whole ``tools/list`` answer is a budget
(under 10 KB of JSON, tested), so descriptions are one line and say when to use the tool.
"""

from __future__ import annotations

from typing import Any

from slm_mesh.protocol.table import EVENT_TYPES, LOCK_MODES, MESSAGE_TYPES, SCOPES, STATUSES


def _schema(*required: str, **props: dict[str, Any]) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": props}
    if required:
        schema["required"] = list(required)
    return schema


def _enum(values: tuple[str, ...], description: str) -> dict[str, Any]:
    return {"type": "string", "enum": list(values), "description": description}


def _text(description: str, **extra: Any) -> dict[str, Any]:
    return {"type": "string", "description": description, **extra}


def _int(description: str, **extra: Any) -> dict[str, Any]:
    return {"type": "integer", "description": description, **extra}


def _number(description: str, **extra: Any) -> dict[str, Any]:
    return {"type": "number", "description": description, **extra}


def _flag(description: str) -> dict[str, Any]:
    return {"type": "boolean", "description": description}


TOOLS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    (
        "mesh_peers",
        "List the other sessions: name, agent, summary, directory, branch.",
        _schema(
            scope=_enum(SCOPES, "machine (default), directory (your cwd) or repo (your git repo)"),
            include_self=_flag("also list yourself"),
        ),
    ),
    (
        "mesh_summary",
        "Tell the other sessions what you are working on.",
        _schema(
            "summary",
            summary=_text("what you are doing, in a sentence", maxLength=2500),
            status=_enum(STATUSES, "your availability"),
        ),
    ),
    (
        "mesh_send",
        'Send a message to a peer (name or peer_id) or to everyone (to="all").',
        _schema(
            "to",
            "message",
            to=_text('peer name, peer_id, or "all"'),
            message=_text("the message"),
            type=_enum(MESSAGE_TYPES, "default text"),
            reply_to=_int("id of the message you answer", minimum=1),
            scope=_enum(SCOPES, 'limit to="all" to this scope'),
        ),
    ),
    (
        "mesh_inbox",
        "Read messages sent to you (marks them read).",
        _schema(
            filter=_enum(("unread", "all"), "default unread"),
            **{"from": _text("only from this peer (name or peer_id)")},
            limit=_int("at most this many (default 20)", minimum=1, maximum=500),
            mark_read=_flag("mark them read (default true)"),
        ),
    ),
    (
        "mesh_state",
        "Shared key-value state: get, set, list or delete a key.",
        _schema(
            "action",
            action=_enum(("get", "set", "list", "delete"), "what to do"),
            key=_text("the key (get, set, delete)"),
            value={"description": "any JSON value (set)"},
            namespace=_text('default "default"'),
            if_version=_int("write only if the key is at this version (0: absent)", minimum=0),
            ttl=_number("seconds until the key expires (set)", exclusiveMinimum=0),
            prefix=_text("only keys starting with this (list)"),
            after=_text("list keys after this one: the next_after of the previous page (list)"),
            limit=_int("at most this many keys (list, default 20)", minimum=1, maximum=1000),
        ),
    ),
    (
        "mesh_lock",
        "Advisory file locks: lock before editing a shared file, unlock after, query to check.",
        _schema(
            "action",
            action=_enum(("lock", "unlock", "query"), "what to do"),
            filePath=_text(
                "file or glob (src/auth/**), relative to your cwd. Unlock without it releases "
                "all yours; query without it lists all locks"
            ),
            reason=_text("why (shown to others)"),
            ttlMinutes=_number("lock lifetime (default 10)", exclusiveMinimum=0, maximum=1440),
            mode=_enum(LOCK_MODES, "exclusive (default) or shared (readers)"),
            wait=_number("seconds to queue if it is held (default 0)", minimum=0, maximum=3600),
        ),
    ),
    (
        "mesh_events",
        "What happened in the mesh (joins, messages, locks, state). read returns the events "
        "since your last read; subscribe pushes them to you.",
        _schema(
            action=_enum(("read", "subscribe", "unsubscribe"), "default read"),
            types={"type": "array", "items": {"type": "string", "enum": list(EVENT_TYPES)}},
            after=_int("read events after this seq instead", minimum=0),
            since=_text("read events after this ISO 8601 time instead"),
            limit=_int("at most this many (default 50)", minimum=1, maximum=1000),
        ),
    ),
    (
        "mesh_status",
        "Broker health and counts, and your own peer id and name.",
        _schema(),
    ),
)

TOOL_NAMES: tuple[str, ...] = tuple(name for name, _, _ in TOOLS)
