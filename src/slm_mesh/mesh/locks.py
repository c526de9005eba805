"""Advisory locks on paths and globs.

Rules:
1. Paths are normalised against the caller's cwd (see :mod:`slm_mesh.mesh.paths`). A lock
   is where its path is: on its holder's host, and, when the path lies inside the
   holder's git repository and the repository's identity is known, at the path relative
   to the repository's root too, so that clones of one repository on several machines
   lock the same files.
2. Two locks conflict when they overlap (same host and overlapping paths, or same
   repository and overlapping paths inside it), they belong to different sessions, and
   either is exclusive. Shared with shared never conflicts; a session never conflicts
   with itself (acquiring again renews, and may change the mode).
3. ``wait > 0`` queues the request FIFO in the store. A request is granted only if it
   conflicts with no holder and with no earlier waiter of another session, so a stream of
   shared requests can't starve an exclusive one. Waiters are granted in order as locks
   end; each broker grants the requests of its own callers (:attr:`Locks.mine`), while
   the others' still hold their place in the queue.
4. A lock ends at the first of: ``lock.release`` (by its session, or forced for it by
   someone else: the person at the shell freeing a lock an agent left behind), its TTL (the
   broker's timer calls :meth:`Locks.expire`), or its session being gone. Each grant,
   release and expiry emits an event; a forced release says by whom (``released_by``).
   A lock past its TTL whose timer has not fired yet already counts as ended.
5. Invariant, checked under contention by the tests: never two overlapping exclusive
   holders, never an exclusive and a shared holder overlapping.
6. The store holds the locks and the queue; nothing here keeps a copy, so every broker
   sharing a store applies these rules to the same locks.
"""

from __future__ import annotations

import posixpath
from typing import TYPE_CHECKING, Any

from slm_mesh.mesh import paths
from slm_mesh.mesh.context import ArmTimer, Context, DisarmTimer, Granted, Waiter
from slm_mesh.protocol.errors import InvalidParams, LockConflict
from slm_mesh.store import Row

if TYPE_CHECKING:
    from collections.abc import Callable

    from slm_mesh.mesh.sessions import Sessions

Key = tuple[str, str]  # (path, peer_id)


def _incompatible(mode_a: str, mode_b: str) -> bool:
    return mode_a == "exclusive" or mode_b == "exclusive"


def overlap(a: Row, b: Row) -> bool:
    """Whether locks (or requests) ``a`` and ``b`` can name the same file (rule 2)."""
    same_repo = a["repo"] and a["repo"] == b["repo"] and a["rel"] and b["rel"]
    if same_repo and paths.overlaps(a["rel"], b["rel"]):
        return True
    return (a["host"] or "") == (b["host"] or "") and paths.overlaps(a["path"], b["path"])


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
        self.mine: dict[int, Waiter] = {}  # this broker's queued callers, by store id

    def recover(self, now: float) -> None:
        """After a (re)start: end the locks whose session is gone or whose time ran out,
        arm a timer for the others."""
        with self.ctx.transaction():
            for row in self.store.all_locks():
                peer = self.store.get_peer(row["peer_id"])
                if peer is None or peer["state"] == "gone":
                    self._end(row, "lock_released", "session_gone", now)
                elif row["expires_at"] <= now:
                    self._end(row, "lock_expired", "ttl", now)
                else:
                    key = (row["path"], row["peer_id"])
                    self.ctx.effects.append(ArmTimer("lock", key, row["expires_at"]))

    # -- for tests and status ------------------------------------------------------------

    @property
    def held(self) -> dict[Key, Row]:
        """Every lock in the store, by (path, peer_id)."""
        return {(r["path"], r["peer_id"]): r for r in self.store.all_locks()}

    @property
    def waiters(self) -> list[Waiter]:
        """This broker's queued callers, in queue order (ids grow with the queue)."""
        return [self.mine[i] for i in sorted(self.mine)]

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
            "host": row["host"],
        }

    def _live_rows(self, now: float) -> list[Row]:
        return [r for r in self.store.all_locks() if r["expires_at"] > now]

    def holders_against(
        self, peer_id: str | None, where: Row | str, mode: str, now: float
    ) -> list[Row]:
        """Locks of other sessions that a ``mode`` lock at ``where`` (or on that
        normalised path) would conflict with."""
        if isinstance(where, str):
            where = self.where_at(peer_id, where)
        return [
            r
            for r in self._live_rows(now)
            if r["peer_id"] != peer_id and _incompatible(r["mode"], mode) and overlap(r, where)
        ]

    @staticmethod
    def _queued_against(peer_id: str, where: Row, mode: str, ahead: list[Row]) -> bool:
        return any(
            w["peer_id"] != peer_id and _incompatible(w["mode"], mode) and overlap(w, where)
            for w in ahead
        )

    def _conflict(self, path: str, holders: list[Row], queued: bool, now: float) -> LockConflict:
        views = [self.view(r) for r in holders]
        if views:
            first = views[0]
            what = f"{path} is locked by {first['holder']}"
            if first["agent"]:
                what += f" ({first['agent']})"
            if first["host"] and first["host"] != self.ctx.host:
                what += f" on {first['host']}"
            what += f", {first['mode']}, expires in {_in(first['expires_at'] - now)}"
            if first["reason"]:
                what += f": {first['reason']}"
            if len(views) > 1:
                what += f" (and {len(views) - 1} more)"
        else:
            what = f"{path} is promised to a session queued before you"
        return LockConflict(what, {"path": path, "holders": views, "queued": queued})

    # -- where a lock is -----------------------------------------------------------------

    def _where(
        self, peer_id: str | None, raw: str, cwd: str | None = None, field: str = "path"
    ) -> Row:
        """The lock ``raw`` names for ``peer_id`` (rule 1): path, host, repo, rel."""
        if not cwd and peer_id is not None:
            cwd = self.sessions.row(peer_id)["cwd"]
        try:
            path = paths.normalise(raw, cwd)
        except ValueError as exc:
            raise InvalidParams(field, str(exc) if field == "path" else f"{raw}: {exc}") from None
        return self.where_at(peer_id, path)

    def where_at(self, peer_id: str | None, path: str) -> Row:
        """Where a lock on the normalised ``path`` of ``peer_id`` is (rule 1)."""
        where: Row = {"path": path, "host": self.ctx.host, "repo": None, "rel": None}
        peer = self.sessions.row(peer_id) if peer_id is not None else None
        if peer is not None:
            where["host"] = peer["host"] or self.ctx.host
            root, repo = peer["git_root"], peer["repo"]
            if repo and root and posixpath.isabs(root):
                root = posixpath.normpath(root)
                if path == root or path.startswith(root.rstrip("/") + "/"):
                    where.update(repo=repo, rel="/" + path[len(root) :].lstrip("/"))
        return where

    # -- calls -------------------------------------------------------------------------

    def acquire(self, peer_id: str, params: dict[str, Any], now: float) -> dict[str, Any] | Waiter:
        """Grant at once (the result), queue (a :class:`Waiter` the broker waits on), or
        raise :class:`LockConflict`."""
        where = self._where(peer_id, params["path"])
        path = where["path"]
        mode = params["mode"]
        ttl = params.get("ttl") or self.ctx.lock_ttl_s
        holders = self.holders_against(peer_id, where, mode, now)
        # A request that the session's own lock on this path already covers is a renewal:
        # it never queues, since every waiter it could conflict with waits for that lock.
        own = self.store.get_lock(path, peer_id)
        renewal = own is not None and own["expires_at"] > now and own["mode"] in (mode, "exclusive")
        queued = not renewal and self._queued_against(peer_id, where, mode, self.store.waiters())
        if not holders and not queued:
            lock = self._grant(peer_id, where, mode, ttl, params.get("reason"), now)
            if renewal and own is not None and own["mode"] != mode:
                self.grant_waiters(now)  # a downgrade to shared may let shared waiters in
            return {"granted": True, "lock": lock}
        if params["wait"] > 0:
            waiter = Waiter(peer_id, path, mode, ttl, params.get("reason"), where=where)
            self._enqueue(waiter, now)
            return waiter
        raise self._conflict(path, holders, queued, now)

    def _enqueue(self, waiter: Waiter, now: float) -> None:
        """Put ``waiter`` at the end of the store's queue, as this broker's."""
        waiter.id = self.store.add_waiter(
            {
                **waiter.where,
                "peer_id": waiter.peer_id,
                "mode": waiter.mode,
                "ttl": waiter.ttl,
                "reason": waiter.reason,
                "broker_id": self.ctx.broker_id,
                "queued_at": now,
            }
        )
        self.mine[waiter.id] = waiter

    def requeue(self, carried: Callable[[str], bool], now: float) -> None:
        """This broker's waiters that another broker took out of the queue while our lease
        had lapsed (mesh/brokers.py): back in it, at its end, while this broker still
        carries their session; the others are let go (their callers' waits run out)."""
        queued = {row["id"] for row in self.store.waiters()}
        for waiter in self.waiters:
            if waiter.id in queued:
                continue
            del self.mine[waiter.id]
            if carried(waiter.peer_id):
                self._enqueue(waiter, now)

    def conflict_for(self, waiter: Waiter, now: float) -> LockConflict:
        """The error for a waiter whose wait ran out."""
        holders = self.holders_against(waiter.peer_id, waiter.where, waiter.mode, now)
        return self._conflict(waiter.path, holders, not holders, now)

    def cancel_wait(self, waiter: Waiter, now: float) -> None:
        """The waiter gave up (its wait ran out, or its caller left)."""
        if self.mine.pop(waiter.id, None) is None:
            return
        if self.store.remove_waiter(waiter.id):
            # Someone queued behind this waiter may be grantable now.
            self.grant_waiters(now)

    def _grant(
        self, peer_id: str, where: Row, mode: str, ttl: float, reason: str | None, now: float
    ) -> dict[str, Any]:
        path = where["path"]
        key = (path, peer_id)
        with self.ctx.transaction():
            old = self.store.get_lock(path, peer_id)
            if old is not None and old["expires_at"] <= now:
                # Its timer has not fired yet, but it has ended (rule 4): say so, and grant
                # a new lock rather than renew one that no longer exists.
                self._end(old, "lock_expired", "ttl", now)
                old = None
            row: Row = {
                **where,
                "peer_id": peer_id,
                "mode": mode,
                "reason": reason if reason is not None else (old["reason"] if old else None),
                "acquired_at": old["acquired_at"] if old else now,
                "expires_at": now + ttl,
            }
            self.store.put_lock(row)
            view = self.view(row)
            self.ctx.emit("lock_acquired", {**view, "renewed": old is not None}, now)
        self.ctx.effects.append(ArmTimer("lock", key, row["expires_at"]))
        return view

    def grant_waiters(self, now: float) -> None:
        """Grant, in FIFO order, every waiter of this broker that no longer conflicts."""
        if not self.mine:
            return
        granted: list[Waiter] = []
        try:
            with self.ctx.transaction():
                still: list[Row] = []
                for row in self.store.waiters():
                    waiter = self.mine.get(row["id"])
                    if (
                        waiter is None  # another broker's: it grants its own
                        or self.holders_against(row["peer_id"], row, row["mode"], now)
                        or self._queued_against(row["peer_id"], row, row["mode"], still)
                    ):
                        still.append(row)
                        continue
                    waiter.lock = self._grant(
                        row["peer_id"], row, row["mode"], row["ttl"], row["reason"], now
                    )
                    self.store.remove_waiter(row["id"])
                    granted.append(waiter)
                    # In order, right after its grant's event (rolled back with it).
                    self.ctx.effects.append(Granted(waiter))
        except BaseException:
            for waiter in granted:
                waiter.lock = None  # rolled back: they keep their turn
            raise
        for waiter in granted:
            del self.mine[waiter.id]

    def release(self, peer_id: str, params: dict[str, Any], now: float) -> dict[str, Any]:
        if params["all"]:
            rows = self.store.locks_of(peer_id)
        elif params.get("path"):
            row = self.store.get_lock(self._where(peer_id, params["path"])["path"], peer_id)
            rows = [row] if row is not None else []
        else:
            raise InvalidParams("path", "give a path, or all: true")
        with self.ctx.transaction():
            for row in rows:
                self._end(row, "lock_released", "released", now)
        self.grant_waiters(now)
        return {"released": len(rows)}

    def release_forced(
        self, caller: str | None, holder_id: str, raw_path: str, by: str, now: float
    ) -> dict[str, Any] | None:
        """End ``holder_id``'s lock on ``raw_path`` (taken against the caller's cwd) for
        ``by``; the view of the lock, or None when it holds none there. The caller grants
        the waiters once its transaction is over."""
        row = self.store.get_lock(self._where(caller, raw_path)["path"], holder_id)
        if row is None:
            return None
        view = self.view(row)
        self._end(row, "lock_released", "forced", now, released_by=by)
        return view

    def renew(self, peer_id: str, params: dict[str, Any], now: float) -> dict[str, Any]:
        path = self._where(peer_id, params["path"])["path"]
        row = self.store.get_lock(path, peer_id)
        if row is None or row["expires_at"] <= now:
            raise InvalidParams("path", f"you hold no lock on {path}")
        row = {**row, "expires_at": now + (params.get("ttl") or self.ctx.lock_ttl_s)}
        with self.ctx.transaction():
            self.store.put_lock(row)
        self.ctx.effects.append(ArmTimer("lock", (path, peer_id), row["expires_at"]))
        return {"lock": self.view(row)}

    def expire(self, key: Key, now: float) -> None:
        """A lock's timer fired: end it if its time really is up (renew may have moved it)."""
        row = self.store.get_lock(*key)
        if row is None or row["expires_at"] > now:
            return
        with self.ctx.transaction():
            self._end(row, "lock_expired", "ttl", now)
        self.grant_waiters(now)

    def session_gone(self, peer_id: str, now: float) -> None:
        """Release every lock and drop every waiter of a session that is gone."""
        for row in self.store.waiters():
            if row["peer_id"] == peer_id:
                self.store.remove_waiter(row["id"])
                self.mine.pop(row["id"], None)
        for row in self.store.locks_of(peer_id):
            self._end(row, "lock_released", "session_gone", now)
        self.grant_waiters(now)

    def _end(self, row: Row, event: str, reason: str, now: float, **extra: Any) -> None:
        self.store.delete_lock(row["path"], row["peer_id"])
        self.ctx.emit(event, {**self.view(row), "reason": reason, **extra}, now)
        self.ctx.effects.append(DisarmTimer("lock", (row["path"], row["peer_id"])))

    def list_locks(self, params: dict[str, Any], now: float) -> dict[str, Any]:
        prefix = params.get("prefix")
        rows = sorted(self._live_rows(now), key=lambda r: (r["path"], r["acquired_at"]))
        waiters = self.store.waiters() if rows else []
        return {
            "locks": [
                {**self.view(r), "waiters": self._waiting_on(r, waiters)}
                for r in rows
                if not prefix or r["path"].startswith(prefix)
            ]
        }

    def _waiting_on(self, row: Row, waiters: list[Row]) -> int:
        """How many queued requests of other sessions this lock stands in the way of."""
        return sum(
            1
            for w in waiters
            if w["peer_id"] != row["peer_id"]
            and _incompatible(w["mode"], row["mode"])
            and overlap(w, row)
        )

    def own_covering(self, peer_id: str, path: str, now: float) -> Row | None:
        """This session's live lock on ``path`` or on a glob covering it, if any."""
        for row in self.store.locks_of(peer_id):
            if row["expires_at"] > now and paths.matches(row["path"], path):
                return row
        return None

    def extend(self, row: Row, until: float) -> bool:
        """Move a held lock's expiry to ``until`` if that is later; whether it moved."""
        if until <= row["expires_at"]:
            return False
        row = {**row, "expires_at": until}
        with self.ctx.transaction():
            self.store.put_lock(row)
        self.ctx.effects.append(ArmTimer("lock", (row["path"], row["peer_id"]), until))
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
                live = self.sessions.live
                views = [{**self.view(r), "live": live(r["peer_id"])} for r in holders]
                conflicts.append({"path": path, "holders": views})
        return {"conflicts": conflicts}

    def checked_paths(self, peer_id: str | None, params: dict[str, Any]) -> list[str]:
        """The ``paths`` of a ``lock.check``, normalised against its ``cwd`` or the
        caller's."""
        cwd = params.get("cwd")
        return [self._where(peer_id, raw, cwd, field="paths")["path"] for raw in params["paths"]]

    def invariant_violations(self, now: float) -> list[tuple[Row, Row]]:
        """Pairs of live holders that must never coexist (for tests)."""
        rows = self._live_rows(now)
        return [
            (a, b)
            for i, a in enumerate(rows)
            for b in rows[i + 1 :]
            if a["peer_id"] != b["peer_id"]
            and _incompatible(a["mode"], b["mode"])
            and overlap(a, b)
        ]
