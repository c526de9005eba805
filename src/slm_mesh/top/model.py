"""What ``slm-mesh top`` knows of the mesh, kept up to date from the broker's events.

Pure and synchronous: the feed (:mod:`slm_mesh.top.feed`) hands it snapshots and events,
the screen (:mod:`slm_mesh.top.app`) reads it. Nothing here does I/O or reads a clock.

Rules:
1. Events are the live source. Each is applied at once with what it carries (a peer that
   joins, a summary, a lock taken or released, a message), so the screen follows the mesh
   within one event. Snapshots (``peer.list``, ``lock.list``, ``mesh.status``) fill in
   what events do not carry (a peer's branch and pid, unread counts once messages are read,
   lock waiters, the broker's figures): the feed asks for them at start, after a peer
   joins, and on a slow timer.
2. Applying is idempotent and order-tolerant: a snapshot may already contain what a
   replayed event says (a lock acquired twice is one lock; releasing a lock that is not
   there changes nothing), since the feed subscribes with ``after`` set to the snapshot's
   sequence number and the broker replays what came in between.
3. Every change says which panes it touched (:attr:`MeshView.dirty`), so the screen redraws
   only those.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from slm_mesh.protocol.table import WORKSPACE_FIELDS

PANES = ("peers", "locks", "messages", "events")
KEEP_MESSAGES = 200
KEEP_EVENTS = 500
RATE_WINDOW_S = 10.0  # calls/s is the mean over this long

LockKey = tuple[str, str]  # (path, peer_id)


@dataclass
class MeshView:
    """The mesh as the screen shows it."""

    peers: dict[str, dict[str, Any]] = field(default_factory=dict)
    locks: dict[LockKey, dict[str, Any]] = field(default_factory=dict)
    messages: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=KEEP_MESSAGES))
    events: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=KEEP_EVENTS))
    status: dict[str, Any] | None = None
    connected: bool = False
    problem: str | None = None  # why there is no broker right now, for the header
    last_seq: int = 0
    dirty: set[str] = field(default_factory=lambda: {*PANES, "header"})
    samples: deque[tuple[float, int, int]] = field(default_factory=lambda: deque(maxlen=64))
    status_at: float = 0.0  # when the status was read (the feed's monotonic clock)

    # -- the connection ------------------------------------------------------------------

    def set_connected(
        self, status: dict[str, Any], at: float | None = None, own_calls: int = 0
    ) -> None:
        """A connection (again): a log that went backwards is another broker's (its
        database was replaced), so what is listed from the old one goes."""
        if status["counts"]["last_seq"] < self.last_seq:
            self.messages.clear()
            self.events.clear()
            self.last_seq = 0
            self.dirty.update(PANES)
        self.connected = True
        self.problem = None
        self.set_status(status, at, own_calls)

    def set_disconnected(self, problem: str) -> None:
        self.connected = False
        self.problem = problem
        self.dirty.add("header")

    def store_changed(self, params: dict[str, Any]) -> None:
        """``mesh.store``: the broker lost its shared store, or has it again; the header
        says so at once, not at the next status read."""
        if self.status is None:
            return
        store = {**(self.status.get("store") or {}), "available": bool(params.get("available"))}
        store["reason"] = params.get("reason")
        self.status = {**self.status, "store": store}
        self.dirty.add("header")

    def set_status(
        self, status: dict[str, Any], at: float | None = None, own_calls: int = 0
    ) -> None:
        """The broker's status, read at ``at`` (a monotonic clock's seconds): successive
        samples of its activity counters give the rates of the header, less ``own_calls``
        (the calls top itself has made so far: its polling is not the mesh's traffic)."""
        self.status = status
        self.dirty.add("header")
        if at is None:
            return
        self.status_at = at
        activity = status.get("activity")
        if not activity:
            return
        calls = activity["calls"] - own_calls
        if self.samples and calls < self.samples[-1][1]:
            self.samples.clear()  # another broker: its counters started again
        self.samples.append((at, calls, activity["messages"]))

    def rate(self, which: int, window_s: float) -> float | None:
        """Per second over the last ``window_s`` of samples (1: calls, 2: messages); None
        until there are two samples."""
        if len(self.samples) < 2:
            return None
        last = self.samples[-1]
        first = next(s for s in self.samples if s[0] >= last[0] - window_s)
        if first is last:
            first = self.samples[-2]
        elapsed = last[0] - first[0]
        return (last[which] - first[which]) / elapsed if elapsed > 0 else None

    def calls_per_s(self) -> float | None:
        return self.rate(1, RATE_WINDOW_S)

    def messages_per_min(self, now: float) -> float | None:
        """Messages sent in the last minute: counted from the messages listed while they
        cover that minute (the backlog and everything since), else from the counters."""
        since = now - 60.0
        complete = len(self.messages) < KEEP_MESSAGES or self.messages[-1]["sent_at"] < since
        if complete:
            return float(sum(1 for m in self.messages if m["sent_at"] >= since))
        rate = self.rate(2, 60.0)
        return None if rate is None else rate * 60

    # -- snapshots -----------------------------------------------------------------------

    def set_peers(self, peers: Iterable[dict[str, Any]]) -> None:
        fresh = {p["peer_id"]: dict(p) for p in peers}
        for peer_id, peer in fresh.items():
            old = self.peers.get(peer_id)
            if old is not None and "unread" not in peer and "unread" in old:
                peer["unread"] = old["unread"]
        self.peers = fresh
        self.dirty.update(("peers", "header"))

    def set_locks(self, locks: Iterable[dict[str, Any]]) -> None:
        self.locks = {(lk["path"], lk["peer_id"]): dict(lk) for lk in locks}
        self.dirty.update(("locks", "header"))

    def add_backlog(self, events: Iterable[dict[str, Any]]) -> None:
        """Events from before the view started: listed, but not applied to the snapshots
        (which are newer than they are)."""
        for event in events:
            self._record(event)

    # -- events --------------------------------------------------------------------------

    def apply(self, event: dict[str, Any]) -> bool:
        """Apply one event; True when it asks for a fresh ``peer.list`` (rule 1)."""
        if event["seq"] <= self.last_seq:
            return False  # seen already (a replay overlapping what was read)
        self._record(event)
        kind = event["type"]
        data: dict[str, Any] = event.get("data") or {}
        ts = event["ts"]
        if kind == "peer_joined" and data.get("peer_id"):
            self._peer_joined(data, ts)
            return True
        if kind == "peer_updated":
            self._peer_updated(data, ts)
        elif kind == "peer_left":
            if self.peers.pop(data.get("peer_id", ""), None) is not None:
                self.dirty.update(("peers", "header"))
        elif kind == "lock_acquired" and data.get("path") and data.get("peer_id"):
            key = (data["path"], data["peer_id"])
            waiters = self.locks.get(key, {}).get("waiters", 0)
            self.locks[key] = {**data, "waiters": waiters}
            self.dirty.update(("locks", "header"))
        elif kind == "message_sent":
            self._count_unread(data)
        elif kind in ("lock_released", "lock_expired"):
            ended = self.locks.pop((data.get("path", ""), data.get("peer_id", "")), None)
            if ended is not None:
                self.dirty.update(("locks", "header"))
        return False

    def _record(self, event: dict[str, Any]) -> None:
        self.last_seq = max(self.last_seq, event["seq"])
        self.events.appendleft(event)
        self.dirty.add("events")
        if event["type"] == "message_sent":
            self._message_sent(event)

    def _peer_joined(self, data: dict[str, Any], ts: float) -> None:
        peer_id = data["peer_id"]
        old = self.peers.get(peer_id, {})
        peer = {**old, **{k: v for k, v in data.items() if k != "resumed"}}
        peer.update(status="active", connected=True, last_seen=ts)
        if not data.get("resumed") or "joined_at" not in peer:
            peer["joined_at"] = ts
        peer.setdefault("unread", 0)
        self.peers[peer_id] = peer
        self.dirty.update(("peers", "header"))

    def _peer_updated(self, data: dict[str, Any], ts: float) -> None:
        peer = self.peers.get(data.get("peer_id", ""))
        if peer is None:
            return
        status = data.get("status", peer.get("status"))
        if status == "away" and peer.get("status") != "away":
            peer["last_seen"] = ts  # the moment it went away
        peer.update(summary=data.get("summary", peer.get("summary")), status=status)
        peer.update({k: data[k] for k in WORKSPACE_FIELDS if k in data})  # it moved
        peer["connected"] = status != "away"
        self.dirty.update(("peers", "header"))

    def _message_sent(self, event: dict[str, Any]) -> None:
        data: dict[str, Any] = event.get("data") or {}
        self.messages.appendleft({**data, "sent_at": event["ts"], "seq": event["seq"]})
        self.dirty.add("messages")

    def _count_unread(self, data: dict[str, Any]) -> None:
        # A message sent after the snapshot may already be in its counts: then this is one
        # too many until the next snapshot, a second away. Reads send no event at all.
        for peer_id in data.get("recipients") or []:
            peer = self.peers.get(peer_id)
            if peer is not None:
                peer["unread"] = int(peer.get("unread") or 0) + 1
                self.dirty.add("peers")

    # -- reading -------------------------------------------------------------------------

    def name_of(self, peer_id: str | None) -> str:
        if not peer_id:
            return "?"
        peer = self.peers.get(peer_id)
        return str(peer["name"]) if peer else peer_id

    def take_dirty(self) -> set[str]:
        out, self.dirty = self.dirty, set()
        return out
