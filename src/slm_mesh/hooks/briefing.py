"""The briefing at session start: who else works here, what they hold, what waits.

Rules:
1. At most :data:`MAX_CHARS` characters: the other sessions on this machine (those in this
   repository first) with agent, branch, summary and since when; the locks other sessions
   hold under this repository (or directory); the unread messages by their first lines;
   one line on the mesh tools.
2. Nothing at all when there is nothing to say: no other session, no lock, no message.
3. Lines that do not fit are dropped whole, from the end of each part, and counted (the
   "… N more" line that counts them has its room kept from the start).
"""

from slm_mesh.hooks.delivery import ago

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

MAX_CHARS = 1_500
LINE_CHARS = 160
TOOLS_LINE = (
    "Mesh tools: mesh_peers (who works here), mesh_send / mesh_inbox (messages), "
    "mesh_lock (lock a shared file before editing it), mesh_summary (say what you work on)."
)


def _cut(text: str, limit: int = LINE_CHARS) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _peer_line(p: "dict[str, Any]", now: float | None) -> str:
    what = [str(p.get("agent") or "agent")]
    if p.get("git_branch"):
        what.append(f"branch {p['git_branch']}")
    if p.get("status") == "away":
        what.append("away")
    what.append(f"joined {ago(p.get('joined_at'), now)}")
    line = f'- "{p.get("name")}" ({", ".join(what)})'
    if p.get("summary"):
        line += f": {p['summary']}"
    return _cut(line)


def _lock_line(lock: "dict[str, Any]", root: str | None) -> str:
    path = str(lock.get("path"))
    if root and path.startswith(root.rstrip("/") + "/"):
        path = path[len(root.rstrip("/")) + 1 :]
    line = f'- {path}: "{lock.get("holder")}", {lock.get("mode")}'
    if lock.get("reason"):
        line += f" ({lock['reason']})"
    return _cut(line)


def _message_line(m: "dict[str, Any]") -> str:
    first = (str(m.get("body", "")).strip().splitlines() or [""])[0]
    return _cut(f'- from "{m.get("from_name") or m.get("from")}": {first}')


def _more(n: int) -> str:
    return f"- … {n} more (mesh_peers, mesh_lock query, mesh_inbox)"


def briefing(
    me: "dict[str, Any]",
    peers: "list[dict[str, Any]]",
    locks: "list[dict[str, Any]]",
    inbox: "dict[str, Any]",
    now: float | None = None,
) -> str | None:
    """The briefing for session ``me`` (a peer view with ``peer_id``, ``name``, ``cwd``,
    ``git_root``), or None when there is nothing to say."""
    mine = me.get("peer_id")
    root = me.get("git_root")
    others = [p for p in peers if p.get("peer_id") != mine]
    others.sort(key=lambda p: (not root or p.get("git_root") != root, p.get("joined_at") or 0))
    held = [lk for lk in locks if lk.get("peer_id") != mine]
    messages = inbox.get("messages") or []
    unread = max(len(messages), int(inbox.get("unread_left") or 0))  # (not marked read)
    if not others and not held and not unread:
        return None
    where = "this repository" if root else "this directory"
    parts: list[tuple[str, list[str]]] = []
    if others:
        parts.append(("Other AI sessions on this machine:", [_peer_line(p, now) for p in others]))
    if held:
        parts.append(
            (f"Locks other sessions hold in {where}:", [_lock_line(lk, root) for lk in held])
        )
    if unread:
        parts.append((f"Unread messages for you ({unread}):", [_message_line(m) for m in messages]))
    head = f'slm-mesh: you are "{me.get("name")}" in a mesh of the AI sessions on this machine.'
    budget = MAX_CHARS - len(head) - len(TOOLS_LINE) - 2
    # Every part keeps its title, and room for its "… N more" line should it need one;
    # lines are given out in turn, so no part starves another.
    kept: list[list[str]] = [[] for _ in parts]
    budget -= sum(len(title) + 1 + len(_more(len(lines))) + 1 for title, lines in parts)
    for depth in range(max(len(lines) for _, lines in parts)):
        for i, (_, lines) in enumerate(parts):
            if depth < len(lines) and len(lines[depth]) + 1 <= budget:
                kept[i].append(lines[depth])
                budget -= len(lines[depth]) + 1
    out = [head]
    for (title, lines), shown in zip(parts, kept, strict=True):
        out.append(title)
        out.extend(shown)
        if len(shown) < len(lines):
            out.append(_more(len(lines) - len(shown)))
    out.append(TOOLS_LINE)
    return "\n".join(out)
