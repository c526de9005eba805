"""Files the sessions edited: what ``file.edited`` records and the edit guard asks about.

Rules:
1. ``file.edited`` says a session edited some files: each gets a ``file_edited`` event, and
   the session's own locks covering it are renewed (never shortened). With ``lock_ttl``
   (auto-lock) an edited file that no lock of the session covers is locked exclusively for
   that long, unless another session holds it; a lock taken so is renewed by later edits
   for ``lock_ttl`` again.
2. An edit is where a lock on the file would be (:meth:`Locks.where_at`): on its host at
   its path, and in its repository at its path from the root. The event says both
   (``host``, ``repo``, ``rel``), so an edit in one clone is an edit of the same file in
   every clone of the repository, on any machine.
3. The latest edit of each file by each session is remembered for
   :data:`~slm_mesh.config.EDIT_MEMORY_S`, so ``lock.check`` can tell who edited a file
   lately without holding a lock on it: this broker's edits as they are made, the other
   brokers' as their events arrive (:meth:`Edits.heard`), and at start the log's
   (:meth:`Edits.recover`). It is a hint for a warning, not a rule.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from slm_mesh.config import EDIT_MEMORY_S
from slm_mesh.mesh.context import Context

if TYPE_CHECKING:
    from slm_mesh.mesh.locks import Locks
    from slm_mesh.mesh.sessions import Sessions

EDITED = "file_edited"
Place = tuple[str, str | None, str]  # ("host", host, path) or ("repo", repo, rel)


def places(where: dict[str, Any]) -> list[Place]:
    """Where an edit (or a lock) at ``where`` is (rule 2)."""
    found: list[Place] = [("host", where.get("host"), where["path"])]
    if where.get("repo") and where.get("rel"):
        found.append(("repo", where["repo"], where["rel"]))
    return found


class Edits:
    def __init__(self, ctx: Context, sessions: Sessions, locks: Locks) -> None:
        self.ctx = ctx
        self.sessions = sessions
        self.locks = locks
        self.latest: dict[Place, dict[str, float]] = {}  # place → {peer id: when}

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
            where = self.locks.where_at(peer_id, path)
            data = {"peer_id": peer_id, "name": row["name"], **where}
            with self.ctx.transaction():
                self.ctx.emit(EDITED, data, now)
            self._remember(data, now)
        return {"renewed": renewed, "locked": locked}

    def heard(self, event: dict[str, Any]) -> None:
        """Another broker's event: remembered if it is an edit (rule 3)."""
        if event["type"] == EDITED:
            self._remember(event["data"], event["ts"])

    def recover(self, now: float) -> None:
        """At start: the edits of the last :data:`EDIT_MEMORY_S`, from the log (rule 3)."""
        for event in self.ctx.store.events_since(now - EDIT_MEMORY_S, [EDITED]):
            self._remember(event["data"], event["ts"])

    def _remember(self, data: dict[str, Any], at: float) -> None:
        peer_id, path = data.get("peer_id"), data.get("path")
        if not isinstance(peer_id, str) or not isinstance(path, str):
            return
        for place in places(data):
            seen = self.latest.setdefault(place, {})
            seen[peer_id] = max(at, seen.get(peer_id, at))

    def recent(
        self, peer_id: str | None, path: str, within_s: float, now: float
    ) -> list[dict[str, Any]]:
        """Edits of ``path`` (wherever it is: rule 2) by other sessions still in the mesh,
        ``within_s`` back, the latest of each session."""
        latest: dict[str, float] = {}
        for place in places(self.locks.where_at(peer_id, path)):
            for other, at in (self.latest.get(place) or {}).items():
                if other != peer_id and at >= now - within_s:
                    latest[other] = max(at, latest.get(other, at))
        out = []
        for other, at in latest.items():
            row = self.ctx.store.get_peer(other)
            if row is None or row["state"] == "gone":
                continue
            out.append(
                {"path": path, "peer_id": other, "name": row["name"], "host": row["host"], "at": at}
            )
        return out

    def prune(self, now: float) -> None:
        """Forget edits older than the memory (upkeep)."""
        before = now - EDIT_MEMORY_S
        for place in list(self.latest):
            kept = {p: at for p, at in self.latest[place].items() if at >= before}
            if kept:
                self.latest[place] = kept
            else:
                del self.latest[place]
