"""Messages between peers.

Rules:
1. A message is committed to the store before ``message.send`` answers: a send that got a
   response is never lost, even if the broker is killed right after.
2. Each recipient has its own row (and id) moving ``queued → pushed → read``. ``pushed``
   means the broker wrote it to the recipient's connection; only ``message.inbox`` (with
   ``mark_read``) or ``message.ack`` make it ``read``. Pushing never marks read.
3. ``to: "all"`` reaches every live peer (connected, or tied to a running process) but
   the sender (optionally only those in ``scope``); with nobody there the result is empty,
   not an error. A peer that is away is
   sent to by id or name and gets the message queued; a gone or unknown one is -32002.
4. A connection without a peer is the person at this machine's shell
   (:mod:`slm_mesh.mesh.persons`): it sends as the person and reads the person's inbox.
   Messages to the person wait in that inbox, and are pushed to the connections that
   follow it (``message.subscribe``). An answer (``reply_to``) sent to ``person`` or
   ``cli`` goes to the person who wrote the message answered, which, where several
   machines share the store, may be another machine's.
5. Messages read by a connection that acts as a peer without carrying it (a hook attached
   to the agent's session) are told to the connection that carries the peer (``message.read``),
   whose count of unread messages would otherwise stay too high.
6. A ``message_sent`` event shows the message's first line (``preview``) to whoever reads
   events. Where several machines share the store it also names the machines the message
   is between (``hosts``: its sender's and its recipients'), and only their brokers show a
   direct message's preview: the other machines' readers (a team's other people and their
   agents) see that it was sent, by whom to whom, but not what it says. A broadcast's
   preview is everyone's, as its body is.
"""

from __future__ import annotations

import contextlib
import json
from typing import TYPE_CHECKING, Any

from slm_mesh.config import MAX_RESPONSE_BODY_BYTES
from slm_mesh.mesh.context import CLI_NAME, ConnId, Context, Deliver, ReadElsewhere, in_scope
from slm_mesh.mesh.message_views import message_view, within_budget
from slm_mesh.person import PERSON_ID, is_person_id
from slm_mesh.protocol.errors import InvalidParams, PeerNotFound, TooLarge
from slm_mesh.store import Row

if TYPE_CHECKING:
    from slm_mesh.mesh.sessions import Sessions


PREVIEW_CHARS = 80


def shown_on(event: dict[str, Any], host: str) -> dict[str, Any]:
    """``event`` as this machine's readers see it (rule 6): a direct message between other
    machines without its preview."""
    if event["type"] != "message_sent":
        return event
    data = event["data"]
    hosts = data.get("hosts")
    if hosts is None or host in hosts or data.get("to") == "all" or "preview" not in data:
        return event
    return {**event, "data": {k: v for k, v in data.items() if k != "preview"}}


def preview(body: str) -> str:
    """The first non-blank line of ``body``, cut to :data:`PREVIEW_CHARS` (with "…"), for
    the ``message_sent`` event: enough for a person watching the mesh to see what was said,
    never the whole body (that stays in the recipient's inbox)."""
    line = next((ln.strip() for ln in body.splitlines() if ln.strip()), "")
    return line if len(line) <= PREVIEW_CHARS else line[: PREVIEW_CHARS - 1] + "…"


class Messages:
    def __init__(self, ctx: Context, sessions: Sessions) -> None:
        self.ctx = ctx
        self.store = ctx.store
        self.sessions = sessions

    def send(self, sender_id: str | None, params: dict[str, Any], now: float) -> dict[str, Any]:
        body: str = params["body"]
        limit = self.ctx.limits.max_body_bytes
        if len(body) > limit or len(body.encode("utf-8")) > limit:
            raise TooLarge("body", limit)
        if params["type"] == "json":
            try:
                json.loads(body)
            except ValueError:
                raise InvalidParams("body", 'type "json" needs a body that is JSON') from None
        reply_to = params.get("reply_to")
        answered = None if reply_to is None else self.store.get_message(reply_to)
        if reply_to is not None and answered is None:
            raise InvalidParams("reply_to", f"no message {reply_to}")
        sender = self.sessions.row(sender_id) if sender_id else self.sessions.person()
        sender_id = sender["id"]
        to = params["to"]
        broadcast = to == "all"
        if broadcast:
            recipients = self._everyone_but(sender, params.get("scope"))
        else:
            recipients = [self._recipient(to, answered)]
        sender_name = sender["name"]
        with self.ctx.transaction():
            rows: list[Row] = [
                {
                    "sender_id": sender_id,
                    "sender_name": sender_name,
                    "recipient_id": peer["id"],
                    "body": body,
                    "type": params["type"],
                    "reply_to": reply_to,
                    "broadcast": int(broadcast),
                    "sent_at": now,
                    "status": "queued",
                }
                for peer in recipients
            ]
            for row, message_id in zip(rows, self.store.insert_messages(rows), strict=True):
                row["id"] = message_id
            sent = list(zip(recipients, rows, strict=True))
            if sent:
                data = {
                    "ids": [row["id"] for _, row in sent],
                    "from": sender_id,
                    "from_name": sender_name,
                    "to": "all" if broadcast else recipients[0]["id"],
                    "to_name": "all" if broadcast else recipients[0]["name"],
                    "recipients": [peer["id"] for peer, _ in sent],
                    "type": params["type"],
                    "preview": preview(body),
                }
                if self.store.shared:  # rule 6
                    here = self.ctx.host
                    data["hosts"] = sorted({p["host"] or here for p in (sender, *recipients)})
                self.ctx.emit("message_sent", data, now)
        for peer, row in sent:
            for conn in self.sessions.conns_of(peer["id"]):
                self.ctx.effects.append(Deliver(conn, message_view(row)))
        return {
            "ids": [row["id"] for _, row in sent],
            "recipients": [
                {
                    "peer_id": peer["id"],
                    "name": peer["name"],
                    "id": row["id"],
                    "connected": (
                        bool(self.sessions.conns_of(peer["id"]))
                        if is_person_id(peer["id"])
                        else self.sessions.connected(peer)
                    ),
                }
                for peer, row in sent
            ],
        }

    def _recipient(self, to: str, answered: Row | None) -> Row:
        """Whom ``to`` names; ``person`` or ``cli`` answering a person's message is that
        person, whichever machine's (rule 4)."""
        if to in (PERSON_ID, CLI_NAME) and answered is not None:
            author = answered["sender_id"]
            if is_person_id(author) and author != self.sessions.persons.id:
                with contextlib.suppress(PeerNotFound):
                    return self.sessions.resolve(author)
        return self.sessions.resolve(to)

    def _everyone_but(self, sender: Row, scope: str | None) -> list[Row]:
        rows = [
            r
            for r in self.store.peers_in(("live",))
            if self.sessions.connected(r) and r["id"] != sender["id"]
        ]
        if scope in ("directory", "repo"):
            field = "cwd" if scope == "directory" else "git_root"
            if not (sender[field] or (scope == "repo" and sender["repo"])):
                raise InvalidParams("scope", f"scope={scope} needs a sender with a {field}")
        if scope not in (None, "mesh"):
            host = self.ctx.host
            rows = [r for r in rows if in_scope(r, scope, sender, host)]
        return rows

    def pushed(self, ids: list[int], now: float) -> None:
        """The broker wrote these messages to their recipients' connections."""
        self.store.note_pushed(ids, now)

    def inbox(
        self, peer_id: str, params: dict[str, Any], now: float, by: ConnId | None = None
    ) -> dict[str, Any]:
        """The peer's messages (``by``: the connection asking, for rule 5)."""
        sender_filter = params.get("from")
        kwargs: dict[str, Any] = {"unread_only": params["unread_only"], "limit": params["limit"]}
        if sender_filter is None:
            rows = self.store.inbox(peer_id, sender_id=None, filter_sender=False, **kwargs)
        else:
            sender_id = self._sender_id(sender_filter)
            rows = self.store.inbox(peer_id, sender_id=sender_id, filter_sender=True, **kwargs)
        budget = MAX_RESPONSE_BODY_BYTES
        if params.get("max_chars") is not None:
            budget = min(budget, params["max_chars"])
        rows = within_budget(rows, budget)
        if params["mark_read"]:
            unread = [r["id"] for r in rows if r["status"] != "read"]
            if unread:
                with self.ctx.transaction():
                    self.store.mark_read(peer_id, unread, now)
                for r in rows:
                    r["status"] = "read"
        left = self.store.unread_count(peer_id)
        if params["mark_read"] and unread:
            self._read_elsewhere(peer_id, unread, left, by)
        return {"messages": [message_view(r) for r in rows], "unread_left": left}

    def _read_elsewhere(self, peer_id: str, ids: list[int], left: int, by: ConnId | None) -> None:
        """Rule 5: reads by a connection that does not carry the peer are told to the one
        that does."""
        carrier = self.sessions.conn_of.get(peer_id)
        if carrier is not None and carrier != by:
            self.ctx.effects.append(ReadElsewhere(carrier, peer_id, tuple(ids), left))

    def _sender_id(self, who: str) -> str:
        if self.sessions.persons.means_me(who):
            return self.sessions.persons.id
        row = self.store.get_peer(who)  # a gone sender's id still filters its messages
        found = row if row is not None else self.sessions.resolve(who)
        return str(found["id"])

    def ack(
        self, peer_id: str, ids: list[int], now: float, by: ConnId | None = None
    ) -> dict[str, Any]:
        with self.ctx.transaction():
            marked = self.store.mark_read(peer_id, ids, now)
        if marked:
            self._read_elsewhere(peer_id, marked, self.store.unread_count(peer_id), by)
        return {"acked": len(marked), "ids": sorted(marked)}

    def unread(self, peer_id: str) -> int:
        return self.store.unread_count(peer_id)
