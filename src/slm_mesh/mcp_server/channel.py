"""What the agent is told without asking: channel notifications and the unread notice.

Rules:
1. Every broker ``message`` push becomes one ``notifications/claude/channel`` with the body as
   ``content`` and ``meta: {from, from_name, message_id, type, sent_at}``, all strings.
2. A client shows ``meta`` as attributes of a tag around ``content`` (Claude Code:
   ``<channel source="slm-mesh" from="…">…</channel>``). So every ``meta`` value is escaped
   for an XML attribute (no quote, ``<``, ``>``, ``&`` or line break survives) and the body
   cannot open or close a ``<channel`` tag of its own: a message can't forge its sender.
3. Tool results end with :func:`unread_notice` while unread messages wait, for agents that
   do not show channel notifications. Pushing never marks a message read.
"""

from __future__ import annotations

import html
import json
import re
from typing import Any

from slm_mesh.mcp_server.views import iso_time, with_iso_times

CHANNEL_METHOD = "notifications/claude/channel"
CHANNEL_CAPABILITY = "claude/channel"
MAX_HEADER_CHARS = 200
EVENT_SENDER = "slm-mesh"

# Control characters and the Unicode line breaks: a header value stays on one line.
_NOT_ON_ONE_LINE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# `<channel`, `</channel`, `< / channel` in any case: the start of a tag that could pass for
# the client's own wrapper.
_CHANNEL_TAG = re.compile(r"<(?=\s*/?\s*channel\b)", re.IGNORECASE)


def escape_header(value: object) -> str:
    """``value`` as a safe, one-line XML attribute value (rule 2)."""
    text = _NOT_ON_ONE_LINE.sub(" ", str(value))[:MAX_HEADER_CHARS]
    return html.escape(text, quote=True)


def defuse_content(body: str) -> str:
    """``body`` with every ``<`` that would start a ``channel`` tag written as ``&lt;``."""
    return _CHANNEL_TAG.sub("&lt;", body)


def message_notification(message: dict[str, Any]) -> dict[str, Any]:
    """The params of the channel notification for one broker ``message`` push."""
    return {
        "content": defuse_content(str(message.get("body", ""))),
        "meta": {
            "from": escape_header(message.get("from") or ""),
            "from_name": escape_header(message.get("from_name") or ""),
            "message_id": escape_header(message.get("id") or ""),
            "type": escape_header(message.get("type") or "text"),
            "sent_at": escape_header(iso_time(message.get("sent_at"))),
        },
    }


def notification_line(params: dict[str, Any]) -> bytes:
    """The channel notification with ``params`` as the line the SDK writes for it (its
    ``JSONRPCNotification`` dumped by alias; tests/mcp/test_channel.py compares them)."""
    message = {"jsonrpc": "2.0", "method": CHANNEL_METHOD, "params": params}
    return _ENCODER.encode(message).encode() + b"\n"


_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def event_notification(event: dict[str, Any]) -> dict[str, Any]:
    """The params of the channel notification for one event the agent subscribed to."""
    data = json.dumps(
        with_iso_times(event.get("data", {})), separators=(",", ":"), ensure_ascii=False
    )
    return {
        "content": defuse_content(f"{event.get('type')}: {data}"),
        "meta": {
            "from": EVENT_SENDER,
            "from_name": EVENT_SENDER,
            "message_id": escape_header(f"event-{event.get('seq')}"),
            "type": "event",
            "sent_at": escape_header(iso_time(event.get("ts"))),
        },
    }


def unread_notice(count: int) -> str | None:
    """The one line that ends a tool result while ``count`` messages are unread."""
    if count <= 0:
        return None
    noun = "message" if count == 1 else "messages"
    return f"[slm-mesh] {count} unread {noun} waiting: read with mesh_inbox."
