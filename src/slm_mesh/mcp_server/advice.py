"""Broker errors as sentences an agent can act on.

A tool that fails returns ``isError`` with one of these texts: what happened, in the agent's
terms (paths relative to its cwd, peers by name, local clock times), and what to do next
("try later or ask them with mesh_send"). The error code stays available in the structured
content for programs.
"""

from __future__ import annotations

import os
from typing import Any

from slm_mesh.mcp_server.views import clock_time
from slm_mesh.protocol import errors


def for_error(error: errors.MeshError, cwd: str | None = None) -> str:
    """The message for a broker error, given the caller's ``cwd`` for shorter paths."""
    data = error.data if isinstance(error.data, dict) else {}
    if isinstance(error, errors.LockConflict):
        return _lock_conflict(data, cwd)
    if isinstance(error, errors.VersionConflict):
        current = data.get("version")
        return (
            f"{error.message}: someone changed it meanwhile. Read it again (action=get) and "
            f"retry with if_version={current}."
        )
    if isinstance(error, errors.PeerNotFound):
        return f"{error.message}. See who is here with mesh_peers."
    if isinstance(error, errors.TooLarge):
        return f"{error.message}; send less (split it, or share a file path instead)."
    if isinstance(error, errors.RateLimited):
        return f"too many calls; retry in {data.get('retry_after', 1)} s."
    if isinstance(error, errors.InvalidParams):
        return error.message.removeprefix("invalid params: ")
    if isinstance(error, errors.StoreUnavailable) and data.get("maybe_done"):
        return (
            "the mesh's shared store (PostgreSQL) did not answer this machine's broker in "
            "time, so this may or may not have been done: check (mesh_state get, mesh_lock query, "
            f"mesh_events) before doing it again; retry in {data.get('retry_after', 1):g} s."
        )
    if isinstance(error, errors.StoreUnavailable):
        return (
            "the mesh's shared store (PostgreSQL) can't be reached from this machine's "
            f"broker, so nothing was done; retry in {data.get('retry_after', 1):g} s. Locks "
            "you hold stay yours unless it stays out of reach past the grace period."
        )
    if isinstance(error, errors.NotRegistered | errors.ShuttingDown):
        return f"{error.message} (the mesh is reconnecting; retry in a moment)."
    return error.message


def _lock_conflict(data: dict[str, Any], cwd: str | None) -> str:
    path = short_path(str(data.get("path", "?")), cwd)
    holders = [h for h in data.get("holders") or [] if isinstance(h, dict)]
    if not holders:
        return (
            f"{path} is promised to a session queued before you; try later, or pass wait "
            "(seconds) to queue for it."
        )
    first = holders[0]
    who = str(first.get("holder") or first.get("peer_id") or "another session")
    text = f"{path} is locked by {who}"
    if first.get("agent"):
        text += f" ({first['agent']})"
    if first.get("mode") == "shared":
        text += ", shared"
    text += f" until {clock_time(first.get('expires_at'))}"
    if first.get("reason"):
        text += f": {first['reason']}"
    if len(holders) > 1:
        text += f" (and {len(holders) - 1} more)"
    return f"{text}. Try later, pass wait (seconds) to queue, or ask them with mesh_send to={who}."


def short_path(path: str, cwd: str | None) -> str:
    """``path`` relative to ``cwd`` when it lies inside it."""
    if cwd and path.startswith(cwd.rstrip(os.sep) + os.sep):
        return path[len(cwd.rstrip(os.sep)) + 1 :]
    return path
