"""Files the sessions edited: what ``file.edited`` records and the edit guard asks about.

Rules:
1. ``file.edited`` says a session edited some files: each gets a ``file_edited`` event, and
   the session's own locks covering it are renewed (never shortened). With ``lock_ttl``
   (auto-lock) an edited file that no lock of the session covers is locked exclusively for
   that long, unless another session holds it; a lock taken so is renewed by later edits
   for ``lock_ttl`` again.
2. The latest edit of each file by each session is kept in memory for
   :data:`~slm_mesh.config.EDIT_MEMORY_S`, so ``lock.check`` can tell who edited a file
   lately without holding a lock on it. It is a hint for a warning, not a rule: a broker
   restart forgets it, and the ``file_edited`` events stay in the log.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from slm_mesh.config import EDIT_MEMORY_S
from slm_mesh.mesh.context import Context

if TYPE_CHECKING:
    from slm_mesh.mesh.locks import Locks
    from slm_mesh.mesh.sessions import Sessions


class Edits:
    def __init__(self, ctx: Context, sessions: Sessions, locks: Locks) -> None:
        self.ctx = ctx
        self.sessions = sessions
        self.locks = locks
        self.latest: dict[str, dict[str, float]] = {}  # path → {peer id: when}

    def edited(self, peer_id: str, params: dict[str, Any], now: float) -> dict[str, Any]:
        row = self.sessions.row(peer_id)
        auto_ttl: float | None = params.get("lock_ttl")
        renewed: list[str] = []
        locked: list[str] = []
        for path in dict.fromkeys(self.locks.checked_paths(peer_id, params)):
            own = self.locks.own_covering(peer_id, path, now)
            if own is not None:
                ttl = auto_ttl if auto_ttl is not None else self.ctx.lock_ttl_s
                if self.locks.extend(own, now + ttl):
                    renewed.append(own["path"])
            elif auto_ttl is not None and not self.locks.holders_against(
                peer_id, path, "exclusive", now
            ):
                self.locks.acquire(
                    peer_id,
                    {
                        "path": path,
                        "mode": "exclusive",
                        "ttl": auto_ttl,
                        "wait": 0,
                        "reason": "auto-locked at its first edit",
                    },
                    now,
                )
                locked.append(path)
            with self.ctx.transaction():
                self.ctx.emit(
                    "file_edited", {"peer_id": peer_id, "name": row["name"], "path": path}, now
                )
            self.latest.setdefault(path, {})[peer_id] = now
        return {"renewed": renewed, "locked": locked}

    def recent(
        self, peer_id: str | None, path: str, within_s: float, now: float
    ) -> list[dict[str, Any]]:
        """Edits of ``path`` by other sessions still in the mesh, ``within_s`` back."""
        out = []
        for other, at in (self.latest.get(path) or {}).items():
            if other == peer_id or at < now - within_s:
                continue
            row = self.ctx.store.get_peer(other)
            if row is None or row["state"] == "gone":
                continue
            out.append({"path": path, "peer_id": other, "name": row["name"], "at": at})
        return out

    def prune(self, now: float) -> None:
        """Forget edits older than the memory (upkeep)."""
        before = now - EDIT_MEMORY_S
        for path in list(self.latest):
            kept = {p: at for p, at in self.latest[path].items() if at >= before}
            if kept:
                self.latest[path] = kept
            else:
                del self.latest[path]
