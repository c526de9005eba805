"""Advisory locks on paths and globs.

Rules:
1. Paths are normalised against the caller's cwd (see :mod:`slm_mesh.mesh.paths`).
2. Two locks conflict when their patterns overlap, they belong to different sessions, and
   either is exclusive. Shared with shared never conflicts; a session never conflicts with
   itself (acquiring again renews, and may change the mode).
3. ``wait > 0`` queues the request FIFO. A request is granted only if it conflicts with no
   holder and with no earlier waiter of another session, so a stream of shared requests can't
   starve an exclusive one. Waiters are granted in order as locks end.
4. A lock ends at the first of: ``lock.release``, its TTL (the broker's timer calls
   :meth:`Locks.expire`), or its session being gone. Each grant, release and expiry emits an
   event. A lock past its TTL whose timer has not fired yet already counts as ended.
5. Invariant, checked under contention by the tests: never two overlapping exclusive
   holders, never an exclusive and a shared holder overlapping.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from slm_mesh.mesh import paths
from slm_mesh.mesh.context import (
    STORAGE_RETRY_S,
    ArmTimer,
    Context,
    DisarmTimer,
    Granted,
    Waiter,
)
from slm_mesh.protocol.errors import InvalidParams, LockConflict
from slm_mesh.store import Row

if TYPE_CHECKING:
    from slm_mesh.mesh.sessions import Sessions

Key = tuple[str, str]  # (path, peer_id)


def _incompatible(mode_a: str, mode_b: str) -> bool:
    return mode_a == "exclusive" or mode_b == "exclusive"


def _in(seconds: float) -> str:
    if seconds < 90:
        return f"{max(0, round(seconds))} s"
    if seconds < 90 * 60:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"


class Locks:
    def __init__(self, ctx: Context, sessions: Sessions) -> None:
        self.ctx = ctx
        self.store = ctx.store
        self.sessions = sessions
        self.held: dict[Key, Row] = {}
        self.waiters: list[Waiter] = []

    def recover(self, now: float) -> None:
        """Load the stored locks after a (re)start; end those whose time ran out."""
        for row in self.store.all_locks():
            self.held[(row["path"], row["peer_id"])] = row
        with self.ctx.transaction():
            for key, row in list(self.held.items()):
                peer = self.store.get_peer(row["peer_id"])
                if peer is None or peer["state"] == "gone":
                    self._end(key, "lock_released", "session_gone", now)
                elif row["expires_at"] <= now:
                    self._end(key, "lock_expired", "ttl", now)
                else:
                    self.ctx.effects.append(ArmTimer("lock", key, row["expires_at"]))

    def reload(self) -> None:
        """Mirror the store's locks again, after a transaction that rolled back."""
        rows = self.store.all_locks()
        self.held.clear()
        self.held.update({(row["path"], row["peer_id"]): row for row in rows})

    # -- views -------------------------------------------------------------------------

    def view(self, row: Row) -> dict[str, Any]:
        peer = self.store.get_peer(row["peer_id"])
        return {
            "path": row["path"],
            "mode": row["mode"],
            "peer_id": row["peer_id"],
            "holder": peer["name"] if peer else None,
            "agent": peer["agent"] if peer else None,
            "summary": peer["summary"] if peer else None,
            "reason": row["reason"],
            "acquired_at": row["acquired_at"],
            "expires_at": row["expires_at"],
        }

    def _live_rows(self, now: float) -> list[Row]:
        return [r for r in self.held.values() if r["expires_at"] > now]

    def holders_against(self, peer_id: str | None, path: str, mode: str, now: float) -> list[Row]:
        """Locks of other sessions that a ``mode`` lock on ``path`` would conflict with."""
        return [
            r
            for r in self._live_rows(now)
            if r["peer_id"] != peer_id
            and _incompatible(r["mode"], mode)
            and paths.overlaps(r["path"], path)
        ]

    def _queued_against(self, peer_id: str, path: str, mode: str, ahead: list[Waiter]) -> bool:
        return any(
            w.peer_id != peer_id and _incompatible(w.mode, mode) and paths.overlaps(w.path, path)
            for w in ahead
        )

    def _conflict(self, path: str, holders: list[Row], queued: bool, now: float) -> LockConflict:
        views = [self.view(r) for r in holders]
        if views:
            first = views[0]
            what = f"{path} is locked by {first['holder']}"
            if first["agent"]:
                what += f" ({first['agent']})"
            what += f", {first['mode']}, expires in {_in(first['expires_at'] - now)}"
            if first["reason"]:
                what += f": {first['reason']}"
            if len(views) > 1:
                what += f" (and {len(views) - 1} more)"
        else:
            what = f"{path} is promised to a session queued before you"
        return LockConflict(what, {"path": path, "holders": views, "queued": queued})

    # -- calls -------------------------------------------------------------------------

    def _path(self, peer_id: str | None, raw: str, cwd: str | None = None) -> str:
        if cwd is None and peer_id is not None:
            cwd = self.sessions.row(peer_id)["cwd"]
        try:
            return paths.normalise(raw, cwd)
        except ValueError as exc:
            raise InvalidParams("path", str(exc)) from None

    def acquire(self, peer_id: str, params: dict[str, Any], now: float) -> dict[str, Any] | Waiter:
        """Grant at once (the result), queue (a :class:`Waiter` the broker waits on), or
        raise :class:`LockConflict`."""
        path = self._path(peer_id, params["path"])
        mode = params["mode"]
        ttl = params.get("ttl") or self.ctx.lock_ttl_s
        holders = self.holders_against(peer_id, path, mode, now)
        # A request that the session's own lock on this path already covers is a renewal:
        # it never queues, since every waiter it could conflict with waits for that lock.
        own = self.held.get((path, peer_id))
        renewal = own is not None and own["expires_at"] > now and own["mode"] in (mode, "exclusive")
        queued = not renewal and self._queued_against(peer_id, path, mode, self.waiters)
        if not holders and not queued:
            lock = self._grant(peer_id, path, mode, ttl, params.get("reason"), now)
            if renewal and own is not None and own["mode"] != mode:
                self.grant_waiters(now)  # a downgrade to shared may let shared waiters in
            return {"granted": True, "lock": lock}
        if params["wait"] > 0:
            waiter = Waiter(peer_id, path, mode, ttl, params.get("reason"))
            self.waiters.append(waiter)
            return waiter
        raise self._conflict(path, holders, queued, now)

    def conflict_for(self, waiter: Waiter, now: float) -> LockConflict:
        """The error for a waiter whose wait ran out."""
        holders = self.holders_against(waiter.peer_id, waiter.path, waiter.mode, now)
        return self._conflict(waiter.path, holders, not holders, now)

    def cancel_wait(self, waiter: Waiter, now: float) -> None:
        """The waiter gave up (its wait ran out, or its caller left)."""
        if waiter in self.waiters:
            self.waiters.remove(waiter)
            # Someone queued behind this waiter may be grantable now.
            self.grant_waiters(now)

    def _grant(
        self, peer_id: str, path: str, mode: str, ttl: float, reason: str | None, now: float
    ) -> dict[str, Any]:
        key = (path, peer_id)
        with self.ctx.transaction():
            old = self.held.get(key)
            if old is not None and old["expires_at"] <= now:
                # Its timer has not fired yet, but it has ended (rule 4): say so, and grant
                # a new lock rather than renew one that no longer exists.
                self._end(key, "lock_expired", "ttl", now)
                old = None
            row: Row = {
                "path": path,
                "peer_id": peer_id,
                "mode": mode,
                "reason": reason if reason is not None else (old["reason"] if old else None),
                "acquired_at": old["acquired_at"] if old else now,
                "expires_at": now + ttl,
            }
            self.store.put_lock(row)
            view = self.view(row)
            self.ctx.emit("lock_acquired", {**view, "renewed": old is not None}, now)
        self.held[key] = row  # only once committed: a refused write leaves no lock behind
        self.ctx.effects.append(ArmTimer("lock", key, row["expires_at"]))
        return view

    def grant_waiters(self, now: float) -> None:
        """Grant, in FIFO order, every waiter that no longer conflicts."""
        still: list[Waiter] = []
        for i, w in enumerate(self.waiters):
            if self.holders_against(w.peer_id, w.path, w.mode, now) or self._queued_against(
                w.peer_id, w.path, w.mode, still
            ):
                still.append(w)
                continue
            try:
                w.lock = self._grant(w.peer_id, w.path, w.mode, w.ttl, w.reason, now)
            except BaseException:
                self.waiters = still + self.waiters[i:]  # the ungranted keep their turn
                raise
            self.ctx.effects.append(Granted(w))
        self.waiters = still

    def release(self, peer_id: str, params: dict[str, Any], now: float) -> dict[str, Any]:
        if params["all"]:
            keys = [k for k in self.held if k[1] == peer_id]
        elif params.get("path"):
            key = (self._path(peer_id, params["path"]), peer_id)
            keys = [key] if key in self.held else []
        else:
            raise InvalidParams("path", "give a path, or all: true")
        with self.ctx.transaction():
            for key in keys:
                self._end(key, "lock_released", "released", now)
        self.grant_waiters(now)
        return {"released": len(keys)}

    def renew(self, peer_id: str, params: dict[str, Any], now: float) -> dict[str, Any]:
        key = (self._path(peer_id, params["path"]), peer_id)
        row = self.held.get(key)
        if row is None or row["expires_at"] <= now:
            raise InvalidParams("path", f"you hold no lock on {key[0]}")
        row = {**row, "expires_at": now + (params.get("ttl") or self.ctx.lock_ttl_s)}
        with self.ctx.transaction():
            self.store.put_lock(row)
        self.held[key] = row
        self.ctx.effects.append(ArmTimer("lock", key, row["expires_at"]))
        return {"lock": self.view(row)}

    def expire(self, key: Key, now: float) -> None:
        """A lock's timer fired: end it if its time really is up (renew may have moved it)."""
        row = self.held.get(key)
        if row is None or row["expires_at"] > now:
            return
        try:
            with self.ctx.transaction():
                self._end(key, "lock_expired", "ttl", now)
        except Exception:
            self.ctx.effects.append(ArmTimer("lock", key, now + STORAGE_RETRY_S))
            raise
        self.grant_waiters(now)

    def session_gone(self, peer_id: str, now: float) -> None:
        """Release every lock and drop every waiter of a session that is gone."""
        self.waiters = [w for w in self.waiters if w.peer_id != peer_id]
        for key in [k for k in self.held if k[1] == peer_id]:
            self._end(key, "lock_released", "session_gone", now)
        self.grant_waiters(now)

    def _end(self, key: Key, event: str, reason: str, now: float) -> None:
        row = self.held.pop(key)
        self.store.delete_lock(*key)
        self.ctx.emit(event, {**self.view(row), "reason": reason}, now)
        self.ctx.effects.append(DisarmTimer("lock", key))

    def list_locks(self, params: dict[str, Any], now: float) -> dict[str, Any]:
        prefix = params.get("prefix")
        rows = sorted(self._live_rows(now), key=lambda r: (r["path"], r["acquired_at"]))
        return {"locks": [self.view(r) for r in rows if not prefix or r["path"].startswith(prefix)]}

    def own_covering(self, peer_id: str, path: str, now: float) -> Row | None:
        """This session's live lock on ``path`` or on a glob covering it, if any."""
        for (locked, holder), row in self.held.items():
            if holder == peer_id and row["expires_at"] > now and paths.matches(locked, path):
                return row
        return None

    def extend(self, row: Row, until: float) -> bool:
        """Move a held lock's expiry to ``until`` if that is later; whether it moved."""
        if until <= row["expires_at"]:
            return False
        key = (row["path"], row["peer_id"])
        row = {**row, "expires_at": until}
        with self.ctx.transaction():
            self.store.put_lock(row)
        self.held[key] = row
        self.ctx.effects.append(ArmTimer("lock", key, until))
        return True

    def check(self, peer_id: str | None, params: dict[str, Any], now: float) -> dict[str, Any]:
        """Which ``paths`` overlap a lock held by another session, as a lock of ``mode``
        would see them (exclusive, the default: any holder, since a commit guard must not
        write what someone else is reading or editing; shared: exclusive holders only).
        Each holder says whether its session is ``live`` (connected, or its process
        running) or away in its grace period."""
        mode = params.get("mode", "exclusive")
        conflicts = []
        for path in self.checked_paths(peer_id, params):
            holders = self.holders_against(peer_id, path, mode, now)
            if holders:
                views = [
                    {**self.view(r), "live": self.sessions.is_live(r["peer_id"])} for r in holders
                ]
                conflicts.append({"path": path, "holders": views})
        return {"conflicts": conflicts}

    def checked_paths(self, peer_id: str | None, params: dict[str, Any]) -> list[str]:
        """The ``paths`` of a ``lock.check``, normalised against its ``cwd`` or the
        caller's."""
        cwd = params.get("cwd")
        if not cwd and peer_id is not None:
            cwd = self.sessions.row(peer_id)["cwd"]
        out = []
        for raw in params["paths"]:
            try:
                out.append(paths.normalise(raw, cwd))
            except ValueError as exc:
                raise InvalidParams("paths", f"{raw}: {exc}") from None
        return out

    def invariant_violations(self, now: float) -> list[tuple[Row, Row]]:
        """Pairs of live holders that must never coexist (for tests)."""
        rows = self._live_rows(now)
        return [
            (a, b)
            for i, a in enumerate(rows)
            for b in rows[i + 1 :]
            if a["peer_id"] != b["peer_id"]
            and _incompatible(a["mode"], b["mode"])
            and paths.overlaps(a["path"], b["path"])
        ]
