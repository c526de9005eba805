"""The broker's answers as an agent reads them: compact, times as ISO 8601, no empty fields.

Every token in a tool result costs the agent context, so fields that say nothing (null,
empty strings, the peer's own id echoed back) are left out, and epoch seconds become
readable times.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any


def iso_time(ts: Any) -> str:
    """Epoch seconds as ``2025-01-31T10:42:07Z`` (UTC); "" for a missing time."""
    if not isinstance(ts, int | float):
        return ""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def clock_time(ts: Any) -> str:
    """Epoch seconds as local ``HH:MM`` for a sentence ("locked until 10:42")."""
    if not isinstance(ts, int | float):
        return "?"
    return time.strftime("%H:%M", time.localtime(ts))


def compact(value: dict[str, Any]) -> dict[str, Any]:
    """``value`` without the keys whose value is None or ""."""
    return {k: v for k, v in value.items() if v is not None and v != ""}


def peer(row: dict[str, Any]) -> dict[str, Any]:
    return compact(
        {
            "peer_id": row.get("peer_id"),
            "name": row.get("name"),
            "agent": row.get("agent"),
            "status": row.get("status"),
            "summary": row.get("summary"),
            "cwd": row.get("cwd"),
            "git_root": row.get("git_root"),
            "git_branch": row.get("git_branch"),
            "last_seen": iso_time(row.get("last_seen")),
        }
    )


def message(row: dict[str, Any]) -> dict[str, Any]:
    return compact(
        {
            "id": row.get("id"),
            "from": row.get("from"),
            "from_name": row.get("from_name"),
            "type": row.get("type"),
            "body": row.get("body"),
            "reply_to": row.get("reply_to"),
            "broadcast": row.get("broadcast") or None,
            "sent_at": iso_time(row.get("sent_at")),
            "status": row.get("status"),
        }
    )


def lock(row: dict[str, Any]) -> dict[str, Any]:
    return compact(
        {
            "path": row.get("path"),
            "mode": row.get("mode"),
            "holder": row.get("holder"),
            "peer_id": row.get("peer_id"),
            "agent": row.get("agent"),
            "reason": row.get("reason"),
            "expires_at": iso_time(row.get("expires_at")),
        }
    )


def event(row: dict[str, Any]) -> dict[str, Any]:
    view: dict[str, Any] = {"seq": row.get("seq"), "type": row.get("type")}
    view["ts"] = iso_time(row.get("ts"))
    if row.get("data"):
        view["data"] = with_iso_times(row["data"])
    return view


def with_iso_times(data: Any) -> Any:
    """``data`` with every time in it (a number under a key ``ts`` or ``*_at``, as the
    broker's events carry them: a lock's ``acquired_at``, ``expires_at``...) as ISO 8601,
    so an agent reads one format for every time."""
    if isinstance(data, dict):
        return {
            key: iso_time(value)
            if (key == "ts" or key.endswith("_at"))
            and isinstance(value, int | float)
            and not isinstance(value, bool)
            else with_iso_times(value)
            for key, value in data.items()
        }
    if isinstance(data, list):
        return [with_iso_times(item) for item in data]
    return data


def state_entry(row: dict[str, Any]) -> dict[str, Any]:
    """A key; its ``value`` is kept even when it is null or "" (that is the value)."""
    view = compact(
        {
            "key": row.get("key"),
            "version": row.get("version"),
            "updated_by": row.get("updated_by"),
            "updated_at": iso_time(row.get("updated_at")),
            "expires_at": iso_time(row.get("expires_at")),
        }
    )
    return {"key": view.pop("key", None), "value": row.get("value"), **view}
