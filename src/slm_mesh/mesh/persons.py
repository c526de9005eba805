"""The people at the shells: this machine's person (:mod:`slm_mesh.person`), and, where
several machines share the store, the other machines' persons.

Rules:
1. A broker speaks for one person: the user it runs for, on its machine. A connection
   without a peer session acts as that person: it sends as the person, writes as the
   person and reads the person's inbox.
2. On one machine (SQLite) the person's id is ``person``, it is shown by its name, and it
   has no row in the store: it is never away or gone.
3. Where several machines share the store, each machine's person is one of its own: id
   ``person:<login>@<host>``, shown as ``<name>@<host>``. Its row (state ``person``) is
   written when its broker starts, so the other brokers find it by id or name: an agent
   on another machine answering it reaches it there. It is never live, away or gone, and
   never listed among peers or sent a broadcast.
4. ``person``, ``cli`` and this person's name (with or without its host) name this
   machine's person. Another machine's person is found by its id, its name, or its bare
   name when exactly one person has that.
5. Anonymous connections that call ``message.subscribe`` follow this machine's person: a
   message to it is pushed to each of them, whichever broker wrote it.
6. No session takes a person's name; where several machines share the store, no session
   name has an ``@`` (it is the persons' mark).
"""

from __future__ import annotations

import secrets
from typing import Any

from slm_mesh.mesh.context import CLI_NAME, ConnId, Context, person_row
from slm_mesh.person import PERSON_ID, bare
from slm_mesh.protocol.errors import PeerNotFound
from slm_mesh.store import Row

PERSON_STATE = "person"  # a person's row in a shared store (rule 3)


class Persons:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.store = ctx.store
        self.id = ctx.person_id
        self.name = ctx.person_name
        self.bare = bare(ctx.person_name)
        self.conns: set[ConnId] = set()  # anonymous connections following the person (rule 5)

    def row(self) -> Row:
        """This machine's person as a peer row."""
        host = self.ctx.host if self.store.shared else None
        return person_row(self.name, self.id, host)

    def enroll(self, now: float) -> None:
        """Write this machine's person into a shared store, or its new name (rule 3)."""
        if not self.store.shared:
            return
        found = self.store.get_peer(self.id)
        if found is None:
            token = "person-" + secrets.token_urlsafe(24)  # never handed out: no resume
            extra = {"resume_token": token, "joined_at": now, "last_seen": now, "away_since": None}
            self.store.insert_peer({**self.row(), **extra})
        elif (found["name"], found["host"], found["state"]) != (
            self.name,
            self.ctx.host,
            PERSON_STATE,
        ):
            self.store.update_peer(self.id, name=self.name, host=self.ctx.host, state=PERSON_STATE)

    def view(self, *, unread: bool = True) -> dict[str, Any]:
        """This machine's person as ``mesh.status`` shows it (``unread``: count its unread
        messages in the store; else that count is None)."""
        return {
            "peer_id": self.id,
            "name": self.name,
            "unread": self.store.unread_count(self.id) if unread else None,
            "following": len(self.conns),
        }

    def means_me(self, who: str) -> bool:
        """Whether ``who`` names this machine's person (rule 4)."""
        return who in (PERSON_ID, CLI_NAME, self.id, self.name, self.bare)

    def follow(self, conn_id: ConnId) -> dict[str, Any]:
        self.conns.add(conn_id)
        return {"person": self.name, "peer_id": self.id}

    def conns_of(self, peer_id: str) -> list[ConnId]:
        """The connections a message to ``peer_id`` is pushed to, if it is this person."""
        return sorted(self.conns) if peer_id == self.id else []

    def by_bare_name(self, who: str, rows: list[Row]) -> Row | None:
        """The one person among ``rows`` whose name without its host is ``who`` (rule 4).

        Raises:
            PeerNotFound: several persons have that name; the error lists them.
        """
        found = [r for r in rows if r["state"] == PERSON_STATE and bare(r["name"]) == who]
        if len(found) > 1:
            names = sorted(r["name"] for r in found)
            raise PeerNotFound(
                f"{len(found)} people are named {who!r} ({', '.join(names)}): say which",
                {"peer": who, "candidates": names},
            )
        return found[0] if found else None

    def taken(self, rows: list[Row]) -> set[str]:
        """The names no session may take (rule 6): every person's, bare and whole."""
        names = {self.name, self.bare}
        for row in rows:
            if row["state"] == PERSON_STATE:
                names.update((row["name"], bare(row["name"])))
        return names

    def peer_name(self, wanted: str) -> str:
        """``wanted`` as a session's name may read (rule 6)."""
        return wanted.replace("@", "-") if self.store.shared else wanted
