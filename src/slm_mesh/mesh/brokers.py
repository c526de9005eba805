"""Rules for brokers that share one store (PostgreSQL): leases, sessions a dead broker
left behind, and what another broker's events mean here.

Rules:
1. Each broker holds a lease in the store and renews it. A broker whose lease ran out is
   lapsed, once, by whichever broker sweeps first: the peers it carried are away from that
   moment (their grace starts), and the lock requests it waited on leave the queue.
2. Every broker sweeps: away peers whose grace is over are gone (their locks end), locks
   past their TTL end, whichever broker noticed first. A broker's own timers do the same
   on time; the sweep is for what a broker that died left behind.
3. When a broker gets its link to the store back (its lease may have lapsed meanwhile), it
   takes back the sessions its connections still carry, or that are tied to a process it
   still watches, if they are only away, and lets go of those that are gone or that
   another broker resumed meanwhile: their connections are detached, and their clients
   told. Its lock requests that the others took out of the queue (rule 1) queue again.
4. Another broker's event may concern this one: a message to a peer one of its
   connections carries, or to its person while connections follow it, is pushed there;
   a lock that ended, a peer that left or a request that left the queue may let one of
   its queued requests in; a peer that another broker resumed or ended is no longer
   carried here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from slm_mesh.mesh.context import ArmTimer, Context, Deliver
from slm_mesh.mesh.message_views import message_view

if TYPE_CHECKING:
    from slm_mesh.mesh.locks import Locks
    from slm_mesh.mesh.sessions import Sessions

_FREEING = frozenset({"lock_released", "lock_expired", "peer_left"})


class Brokers:
    def __init__(self, ctx: Context, sessions: Sessions, locks: Locks) -> None:
        self.ctx = ctx
        self.store = ctx.store
        self.sessions = sessions
        self.locks = locks

    def sweep(self, now: float) -> None:
        """Rules 1 and 2. Runs in the call scope (one serialised transaction)."""
        for broker_id in self.store.lapse_brokers():
            for row in self.store.peers_in(("live",)):
                if row["broker_id"] == broker_id:
                    self.sessions.record_away(row["id"], now)
            self.store.remove_waiters_of(broker_id)
        grace = self.ctx.grace_s
        for row in self.store.peers_in(("away",)):
            if (row["away_since"] or row["last_seen"] or now) + grace <= now:
                self.sessions.grace_over(row["id"], now)
        for lock in self.store.all_locks():
            if lock["expires_at"] <= now:
                self.locks.expire((lock["path"], lock["peer_id"]), now)
        self.locks.grant_waiters(now)

    def rejoin(self, now: float) -> list[str]:
        """Rule 3, after the link to the store came back. Returns the peers this broker
        carried that are gone (their connections are detached)."""
        gone: list[str] = []
        # Those a connection carries, and those tied to a process this broker watches.
        for peer_id in [*self.sessions.conn_of, *self.sessions.tied]:
            row = self.store.get_peer(peer_id)
            if row is None or row["state"] == "gone":
                gone.append(peer_id)
                # (Only another broker's sweep ends a session this one carries.)
                self.sessions.drop(peer_id, cause="grace_expired")
            elif not self.sessions.mine(row):
                # Resumed on another broker meanwhile: that one carries it now (its event
                # may have come while the store was out of reach, and been passed over).
                self.sessions.drop(peer_id, reason="resumed")
            elif row["state"] != "live":
                self.sessions.take_back(row, now)
        for row in self.store.peers_in(("live",)):
            if self.sessions.mine(row) and not self.sessions.is_live(row["id"]):
                # Dropped while the store was out of reach: away from now on.
                self.sessions.record_away(row["id"], now)
                self.ctx.effects.append(ArmTimer("grace", row["id"], now + self.ctx.grace_s))
        self.locks.requeue(self.sessions.is_live, now)
        self.locks.grant_waiters(now)
        return gone

    def remote_event(self, event: dict[str, Any], now: float) -> None:
        """Rule 4, for an event another broker wrote."""
        kind, data = event["type"], event["data"]
        if kind == "message_sent":
            conns_of = self.sessions.conns_of
            here = [peer_id for peer_id in data["recipients"] if conns_of(peer_id)]
            if here:
                for row in self.store.messages_for(data["ids"], here):
                    message = message_view(row)
                    for conn in conns_of(row["recipient_id"]):
                        self.ctx.effects.append(Deliver(conn, message))
        elif kind == "peer_left":
            self.sessions.drop(data["peer_id"], cause=data.get("reason"))
        elif kind == "peer_joined" and data.get("resumed"):
            self.sessions.drop(data["peer_id"], reason="resumed")
        if (kind in _FREEING or kind == "lock_acquired") and self.locks.mine:
            # (A lock taken again in shared mode may have been an exclusive one let go.)
            self.locks.grant_waiters(now)

    def queue_changed(self, now: float) -> None:
        """Another broker took a request out of the lock queue (rule 4)."""
        if self.locks.mine:
            self.locks.grant_waiters(now)
