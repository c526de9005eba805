"""Namespaced key-value state shared by every peer.

Rules:
1. Each key has its own ``version``: 1 when created, +1 on every write. Deleting a key and
   writing it again starts at 1.
2. ``if_version`` makes a write or delete a compare-and-set: it must equal the current
   version, and 0 means "must not exist". A mismatch is -32004 with the current version in
   ``data.version`` (0 when there is none).
3. A key with ``ttl`` expires at ``now + ttl``: from then on it reads as absent, and the
   broker's upkeep deletes it and emits ``state_deleted`` (reason ``expired``).
4. Values are any JSON; the key is at most ``max_key_bytes`` and the encoded value at most
   ``max_value_bytes`` (-32005).
5. ``state.list`` answers a page: keys in order, at most ``limit`` of them and about
   :data:`PAGE_BYTES` of keys and encoded values (always at least one key), so no namespace
   makes an answer too long for a line or a stall for the broker. ``next_after`` is the
   last key of the page when more follow (pass it back as ``after``), else null.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

from slm_mesh.mesh.context import Context
from slm_mesh.protocol.errors import InvalidParams, TooLarge, VersionConflict
from slm_mesh.store import Row

PAGE_BYTES = 512 * 1024


def _entry(row: Row) -> dict[str, Any]:
    return {
        "key": row["key"],
        "namespace": row["namespace"],
        "value": json.loads(row["value"]),
        "version": row["version"],
        "updated_by": row["updated_by"],
        "updated_at": row["updated_at"],
        "expires_at": row["expires_at"],
    }


class SharedState:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.store = ctx.store

    def _check_key(self, key: str) -> None:
        if not key:
            raise InvalidParams("key", "must not be empty")
        limit = self.ctx.limits.max_key_bytes
        if len(key.encode("utf-8")) > limit:
            raise TooLarge("key", limit)

    def _current(self, namespace: str, key: str, now: float) -> Row | None:
        row = self.store.state_get(namespace, key)
        if row is not None and row["expires_at"] is not None and row["expires_at"] <= now:
            return None
        return row

    @staticmethod
    def _check_version(if_version: int | None, row: Row | None) -> None:
        if if_version is None:
            return
        current = row["version"] if row is not None else 0
        if current != if_version:
            raise VersionConflict(f"version is {current}, not {if_version}", {"version": current})

    def get(self, params: dict[str, Any], now: float) -> dict[str, Any] | None:
        self._check_key(params["key"])
        row = self._current(params["namespace"], params["key"], now)
        return _entry(row) if row is not None else None

    def set(self, author: str, params: dict[str, Any], now: float) -> dict[str, Any]:
        namespace, key = params["namespace"], params["key"]
        self._check_key(key)
        value = json.dumps(params["value"], separators=(",", ":"))
        limit = self.ctx.limits.max_value_bytes
        if len(value) > limit:
            raise TooLarge("value", limit)
        ttl = params.get("ttl")
        with self.ctx.transaction():
            row = self._current(namespace, key, now)
            self._check_version(params.get("if_version"), row)
            version = row["version"] + 1 if row is not None else 1
            self.store.state_put(
                {
                    "namespace": namespace,
                    "key": key,
                    "value": value,
                    "version": version,
                    "updated_by": author,
                    "updated_at": now,
                    "expires_at": now + ttl if ttl is not None else None,
                }
            )
            self.ctx.emit(
                "state_changed",
                {"namespace": namespace, "key": key, "version": version, "updated_by": author},
                now,
            )
        return {"version": version}

    def delete(self, author: str, params: dict[str, Any], now: float) -> dict[str, Any]:
        namespace, key = params["namespace"], params["key"]
        self._check_key(key)
        with self.ctx.transaction():
            row = self._current(namespace, key, now)
            self._check_version(params.get("if_version"), row)
            if row is None:
                return {"deleted": False}
            self.store.state_delete(namespace, key)
            self.ctx.emit(
                "state_deleted",
                {"namespace": namespace, "key": key, "deleted_by": author, "reason": "deleted"},
                now,
            )
        return {"deleted": True}

    def list(self, params: dict[str, Any], now: float) -> dict[str, Any]:
        """One page of keys (rule 5)."""
        entries: list[dict[str, Any]] = []
        size = 0
        rows = self.store.state_list(
            params["namespace"], params.get("prefix"), params.get("after"), now
        )
        with contextlib.closing(rows):
            for row in rows:
                size += len(row["key"]) + len(row["value"])
                if len(entries) == params["limit"] or (entries and size > PAGE_BYTES):
                    return {"entries": entries, "next_after": entries[-1]["key"]}
                entries.append(_entry(row))
        return {"entries": entries, "next_after": None}

    def expire(self, now: float) -> int:
        """Delete keys whose TTL has passed; emit ``state_deleted`` for each."""
        rows = self.store.state_expired(now)
        if not rows:
            return 0
        with self.ctx.transaction():
            for row in rows:
                self.store.state_delete(row["namespace"], row["key"])
                self.ctx.emit(
                    "state_deleted",
                    {
                        "namespace": row["namespace"],
                        "key": row["key"],
                        "deleted_by": None,
                        "reason": "expired",
                    },
                    now,
                )
        return len(rows)
