"""The edit guard: what to say about an edit, from ``lock.check``'s answer.

Rules:
1. Refuse only on positive knowledge: a file that another *live* session (connected, or
   its agent's process running) holds exclusively, or that a glob of theirs covers. The
   reason names the holder, what it works on, the lock's reason and expiry, and says what
   to do instead (queue for the lock, or ask the holder).
2. A holder that is away (its connection dropped, inside its grace period) does not
   refuse: the edit goes on with a warning line.
3. A file another session edited lately without a lock: the edit goes on, with one line.
4. Otherwise: nothing at all.
"""

import time

from slm_mesh.hooks.delivery import ago

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

DENY = "deny"
WARN = "warn"
QUEUE_WAIT_S = 300


def relative(path: str, cwd: str | None) -> str:
    """``path`` relative to ``cwd`` when it lies under it, as the agent names it."""
    if cwd and path.startswith(cwd.rstrip("/") + "/"):
        return path[len(cwd.rstrip("/")) + 1 :]
    return path


def left(expires_at: "Any", now: float) -> str:
    if not isinstance(expires_at, int | float):
        return "for a while"
    seconds = max(expires_at - now, 0)
    if seconds < 90:
        return f"for {round(seconds)} more s"
    if seconds < 90 * 60:
        return f"for {round(seconds / 60)} more min"
    return f"for {seconds / 3600:.1f} more h"


def holder(h: "dict[str, Any]") -> str:
    who = f'"{h.get("holder") or h.get("peer_id")}"'
    if h.get("agent"):
        who += f" ({h['agent']})"
    return who


def decide(
    check: "dict[str, Any]", cwd: str | None, now: float | None = None
) -> tuple[str, str] | None:
    """``(DENY, reason)``, ``(WARN, line)`` or None for ``lock.check``'s answer."""
    now = time.time() if now is None else now
    warnings = []
    for conflict in check.get("conflicts") or []:
        path = relative(str(conflict.get("path")), cwd)
        holders = [h for h in conflict.get("holders") or [] if isinstance(h, dict)]
        live = [h for h in holders if h.get("live") and h.get("mode") == "exclusive"]
        if live:
            h = live[0]
            reason = (
                f"slm-mesh: {path} is locked by another session, {holder(h)}, "
                f"{left(h.get('expires_at'), now)}"
            )
            if h.get("reason"):
                reason += f' (lock reason: "{h["reason"]}")'
            if h.get("summary"):
                reason += f'; it is working on: "{h["summary"]}"'
            name = h.get("holder") or h.get("peer_id")
            reason += (
                f". Do not edit it now. Queue for it with mesh_lock action=lock "
                f"filePath={path} wait={QUEUE_WAIT_S}, or ask with mesh_send to={name}, "
                "or work on something else first."
            )
            return DENY, reason
        for h in holders:
            warnings.append(
                f"slm-mesh: {path} is locked by {holder(h)}, whose session is away "
                "(disconnected); edit with care, it may come back."
            )
    for edit in check.get("edits") or []:
        path = relative(str(edit.get("path")), cwd)
        warnings.append(
            f'slm-mesh: "{edit.get("name")}" edited {path} {ago(edit.get("at"), now)} without '
            f"a lock; check with mesh_send to={edit.get('name')} before changing the same "
            "lines."
        )
    if warnings:
        return WARN, "\n".join(dict.fromkeys(warnings))
    return None
