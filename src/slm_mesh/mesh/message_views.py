"""Messages as the wire shows them, and how many fit in one answer: what both the message
rules and the session rules (a resumed peer's queued messages) need."""

from __future__ import annotations

from typing import Any

from slm_mesh.person import PERSON_ID
from slm_mesh.store import Row


def message_view(row: Row) -> dict[str, Any]:
    """A message as the wire shows it (inbox entries and ``message`` notifications)."""
    return {
        "id": row["id"],
        "from": row["sender_id"] or PERSON_ID,  # no sender id: the shell, before 0.x
        "from_name": row["sender_name"],
        "to": row["recipient_id"],
        "body": row["body"],
        "type": row["type"],
        "reply_to": row["reply_to"],
        "broadcast": bool(row["broadcast"]),
        "sent_at": row["sent_at"],
        "status": row["status"],
    }


def within_budget(rows: list[Row], budget: int) -> list[Row]:
    """The first rows whose bodies fit in ``budget`` bytes (always at least one), so an
    answer stays well under the line cap however large the messages; the rest wait for
    the next call (``unread_left`` says how many)."""
    total = 0
    for i, row in enumerate(rows):
        total += len(row["body"])  # characters: a cheap bound, ASCII-escaped on the wire
        if total > budget and i > 0:
            return rows[:i]
    return rows
