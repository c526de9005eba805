"""Messages from other sessions, as the agent reads them in its context.

Rules:
1. Framed as from another session, never as the user's words: a heading says so, each
   message is introduced by a header line (id, sender, when), and its body is indented, so
   no line of a body can pass for a header or a heading.
2. Bounded: at most :data:`MAX_CHARS` characters in all; a body that alone would pass the
   bound is cut, saying so; the messages that did not fit stay unread and are counted
   ("N more: mesh_inbox").
3. What is shown, and only that, is then marked read (``message.ack``), so the next turn,
   the Stop hook and the MCP server's unread notice do not offer it again.
"""

import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

MAX_CHARS = 4_000
# What the broker is asked for: about what fits (the rest is counted, and stays unread).
BODY_CHARS = MAX_CHARS
PAGE = 30


def ago(then: "Any", now: float | None = None) -> str:
    """``then`` (epoch seconds) as "just now", "5 min ago", "2 h ago", "3 d ago"."""
    if not isinstance(then, int | float):
        return "some time ago"
    seconds = (time.time() if now is None else now) - then
    if seconds < 60:
        return "just now"
    if seconds < 90 * 60:
        return f"{round(seconds / 60)} min ago"
    if seconds < 36 * 3600:
        return f"{round(seconds / 3600)} h ago"
    return f"{round(seconds / 86400)} d ago"


def _one_line(text: "Any", limit: int) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _header(message: "dict[str, Any]", now: float | None) -> str:
    sender = _one_line(message.get("from_name") or message.get("from") or "?", 64)
    kind = message.get("type")
    what = f"message {message.get('id')}"
    if kind and kind != "text":
        what += f" ({kind})"
    if message.get("broadcast"):
        what += " to all"
    return f'- {what} from "{sender}", {ago(message.get("sent_at"), now)}:'


def _body(message: "dict[str, Any]", room: int) -> str:
    lines = str(message.get("body", "")).splitlines() or [""]
    body = "\n".join("    " + line for line in lines)
    if len(body) <= room:
        return body
    cut = max(room - 80, 0)
    return (
        body[:cut].rstrip()
        + f"\n    … (cut: the whole of message {message.get('id')} is in mesh_inbox filter=all)"
    )


class Shown:
    """The text for the agent and the ids of the messages it shows."""

    __slots__ = ("ids", "text")

    def __init__(self, text: str | None, ids: list[int]) -> None:
        self.text = text
        self.ids = ids


def messages_text(
    heading: str, messages: "list[dict[str, Any]]", unread_left: int, now: float | None = None
) -> Shown:
    """The messages under ``heading``, bounded (rules 1 and 2)."""
    if not messages:
        return Shown(None, [])
    parts = [heading]
    ids: list[int] = []
    used = len(heading)
    shown = 0
    for message in messages:
        header = _header(message, now)
        room = MAX_CHARS - used - len(header) - 60  # 60: the "N more" line
        if room < 200 and shown:
            break
        body = _body(message, max(room, 0))
        parts += [header, body]
        used += len(header) + len(body) + 2
        shown += 1
        if isinstance(message.get("id"), int):
            ids.append(message["id"])
    more = unread_left - shown  # (read with mark_read=false: the shown ones count too)
    if more > 0:
        parts.append(f"{more} more unread: read them with mesh_inbox.")
    return Shown("\n".join(parts), ids)


def turn_text(messages: "list[dict[str, Any]]", unread_left: int) -> Shown:
    """New messages at a turn or after a tool call."""
    n = len(messages)
    heading = (
        f"slm-mesh: {n} new message{'s' if n != 1 else ''} from other AI sessions on this "
        "machine (not from the user; answer with mesh_send if one needs an answer):"
    )
    return messages_text(heading, messages, unread_left)


def wake_text(messages: "list[dict[str, Any]]", unread_left: int) -> Shown:
    """What wakes an idle session."""
    heading = (
        "slm-mesh: while you were idle, another AI session on this machine sent you a "
        "message (it is not from the user; answer with mesh_send if it needs an answer, "
        "or go on with your task if it changes it):"
    )
    return messages_text(heading, messages, unread_left)
